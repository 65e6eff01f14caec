"""What the server holds: its configuration and the one store handle, with the locks that guard it."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from kg import GraphStore, open_store

MAX_CYPHER_ROWS = 10_000
MAX_CYPHER_SECONDS = 60.0


@dataclass(frozen=True)
class ServeConfig:
    """The server's settings; ``token`` empty means every write is refused."""

    store_uri: str
    token: str = ""
    reports_dir: Path = Path(".kgraft/reports")
    probes_dir: Path = Path(".kgraft/probes")
    cypher_rows: int = 1000
    """Default row limit of ``POST /api/cypher`` (a request may ask for up to ``MAX_CYPHER_ROWS``)."""
    cypher_seconds: float = 10.0
    """Default time limit of ``POST /api/cypher`` (a request may ask for up to ``MAX_CYPHER_SECONDS``)."""
    scoring_refresh_s: float = 5.0
    """How stale the shared scoring context may get after a write (``transfer.serve.scoring``)."""


@dataclass
class GraphHandle:
    """The server's single store handle.

    LadybugDB allows one read-write process per file and one connection is not safe to share between
    threads, so on the embedded store every use (read or write) holds ``lock``. On Neo4j the driver
    pools sessions, so reads run concurrently and only writes are serialised (one writer at a time
    keeps a batch's existence checks and its upserts consistent).
    """

    store: GraphStore
    lock: threading.RLock = field(default_factory=threading.RLock)
    generation: int = 0
    """Writes through this handle so far (caches compare it)."""

    @classmethod
    def open(cls, uri: str) -> GraphHandle:
        """Open the store read-write (it creates the schema if needed)."""
        return cls(open_store(uri))

    @property
    def serialised(self) -> bool:
        """True when reads must take the lock too (the embedded store)."""
        return self.store.dialect == "ladybug"

    @contextmanager
    def read(self) -> Iterator[GraphStore]:
        """The store for reading."""
        if self.serialised:
            with self.lock:
                yield self.store
        else:
            yield self.store

    @contextmanager
    def write(self) -> Iterator[GraphStore]:
        """The store for writing: one writer at a time."""
        with self.lock:
            try:
                yield self.store
            finally:
                self.generation += 1

    def close(self) -> None:
        """Release the file lock or the driver."""
        with self.lock:
            self.store.close()

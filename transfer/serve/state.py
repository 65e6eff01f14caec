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

    LadybugDB allows one read-write process per file, and one connection must not be shared between
    threads. On the embedded store the server therefore writes through the store's own connection
    under ``lock`` and reads through a second, read-only connection to the same database
    (``LadybugStore.reader``) under ``read_lock``: reads take turns with each other but do not wait for
    a write's commit. On Neo4j the driver pools sessions, so reads run concurrently and only writes
    are serialised (one writer at a time keeps a batch's existence checks and its upserts consistent).
    """

    store: GraphStore
    lock: threading.RLock = field(default_factory=threading.RLock)
    read_lock: threading.Lock = field(default_factory=threading.Lock)
    reader: GraphStore | None = None
    generation: int = 0
    """Writes through this handle so far (caches compare it)."""

    @classmethod
    def open(cls, uri: str) -> GraphHandle:
        """Open the store read-write (it creates the schema if needed), with its reader."""
        store = open_store(uri)
        reader = store.reader() if store.dialect == "ladybug" else None  # type: ignore[attr-defined]
        return cls(store, reader=reader)

    @contextmanager
    def read(self) -> Iterator[GraphStore]:
        """The store for reading."""
        if self.reader is not None:
            with self.read_lock:
                yield self.reader
        elif self.store.dialect == "ladybug":  # a handle made without its reader
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
        """Release the reader, then the file lock or the driver."""
        with self.lock:
            if self.reader is not None:
                with self.read_lock:
                    self.reader.close()
            self.store.close()

"""The scorer and the graph it reads, loaded once and shared by recommendation requests.

``gnn.scores.scoring_context`` reads the whole graph into a ``HeteroData`` and loads the scorer: about
a second on a small graph, far more than ranking itself. The server keeps one context and rebuilds it
when it may be out of date, at most once per ``refresh_s``: after a write through this server, and on
Neo4j (which other processes may write) whenever it is older than ``refresh_s``. A recommendation can
therefore lag a write by up to ``refresh_s`` seconds.
"""

from __future__ import annotations

import threading
import time
import warnings
from typing import Any

from kg import GraphStore


class ScoringCache:
    """One shared ``ScoringContext``, rebuilt as the module docstring says."""

    def __init__(self, refresh_s: float = 5.0) -> None:
        self.refresh_s = refresh_s
        self._lock = threading.Lock()
        self._context: Any = None
        self._generation: int | None = None
        self._built = 0.0

    def context(self, store: GraphStore, generation: int) -> Any:
        """The current context for ``store``, whose writes through this server number ``generation``."""
        from gnn.scores import StaleScorerWarning, scoring_context

        with self._lock:
            age = time.monotonic() - self._built
            changed = generation != self._generation or store.dialect != "ladybug"
            if self._context is None or (changed and age >= self.refresh_s):
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore", StaleScorerWarning)  # kept in the context's notes
                    self._context = scoring_context(store)
                self._generation, self._built = generation, time.monotonic()
            return self._context

    def clear(self) -> None:
        """Forget the context (the next request rebuilds it)."""
        with self._lock:
            self._context = None

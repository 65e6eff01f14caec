"""The store interface every backend implements, and ``open_store`` to pick one from a URI.

URIs:
  ``embedded:PATH``                      a LadybugDB file (the default; no server)
  ``neo4j://HOST:PORT`` / ``bolt://...``  a Neo4j server; user and password from ``NEO4J_USER`` /
                                         ``NEO4J_PASSWORD`` (or ``user:password@`` in the URI)
"""

from __future__ import annotations

import os
from abc import ABC, abstractmethod
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kg.batch import GraphBatch
from kg.codec import decode_props
from kg.errors import InvalidRecord, NotFound, StoreUnavailable
from kg.ids import slug
from ontology.vocab import NODES, Label

DEFAULT_STORE = "embedded:.kgraft/graph.lbug"


@dataclass(frozen=True)
class ApplyStats:
    """What one ``GraphStore.apply`` wrote."""

    nodes_created: int
    nodes_updated: int
    edges_created: int
    edges_updated: int

    @property
    def total(self) -> int:
        """All elements written."""
        return self.nodes_created + self.nodes_updated + self.edges_created + self.edges_updated


class Transaction(ABC):
    """An open read-write transaction; committed when its ``with`` block ends without error."""

    @abstractmethod
    def run(self, cypher: str, params: dict[str, Any] | None = None) -> list[dict[str, Any]]:
        """Run one Cypher statement with parameters; rows as dicts keyed by column name."""


class GraphStore(ABC):
    """A property-graph store speaking Cypher.

    ``dialect`` is ``"ladybug"`` or ``"neo4j"``; the platform's queries stay in the subset both
    accept, and the few that differ (shortest paths) are chosen by dialect.
    """

    dialect: str
    uri: str
    read_only: bool

    # -- plumbing each backend provides -------------------------------------------------------
    @abstractmethod
    def ensure_schema(self) -> None:
        """Create tables / constraints and indexes for the ontology's labels (idempotent)."""

    @abstractmethod
    def query(
        self, cypher: str, params: dict[str, Any] | None = None, *, timeout_s: float | None = None
    ) -> list[dict[str, Any]]:
        """Run a read-only query; a write in it raises ``ReadOnlyViolation``.

        ``timeout_s`` bounds its run time in the database itself (``QueryFailed`` when it runs over)."""

    @abstractmethod
    @contextmanager
    def transaction(self) -> Iterator[Transaction]:
        """A read-write transaction: all its statements commit together or not at all."""

    @abstractmethod
    def _apply(self, batch: GraphBatch) -> ApplyStats:
        """Write a validated batch in one transaction."""

    @abstractmethod
    def close(self) -> None:
        """Release the connection or file lock."""

    # -- shared behaviour ---------------------------------------------------------------------
    def execute(self, cypher: str, params: dict[str, Any] | None = None) -> list[dict[str, Any]]:
        """Run one statement in its own read-write transaction."""
        with self.transaction() as tx:
            return tx.run(cypher, params)

    def apply(self, batch: GraphBatch) -> ApplyStats:
        """Upsert every node and relationship of ``batch`` atomically.

        Relationship ends must exist in the store or in the batch; otherwise nothing is written.
        """
        if not batch:
            return ApplyStats(0, 0, 0, 0)
        self._check_endpoints(batch)
        return self._apply(batch)

    def clear(self) -> None:
        """Delete every node and relationship, in chunks (a large graph needs no huge transaction)."""
        while self.execute("MATCH (n) WITH n LIMIT 20000 DETACH DELETE n RETURN count(*) AS c")[0]["c"]:
            pass

    def existing_ids(self, label: Label, ids: list[str]) -> set[str]:
        """The subset of ``ids`` that exist as ``label`` nodes."""
        found: set[str] = set()
        for start in range(0, len(ids), 50_000):
            rows = self.query(
                f"UNWIND $ids AS i MATCH (n:{label} {{id: i}}) RETURN n.id AS id",
                {"ids": ids[start : start + 50_000]},
            )
            found.update(r["id"] for r in rows)
        return found

    def _check_endpoints(self, batch: GraphBatch) -> None:
        needed: dict[Label, set[str]] = {}
        for (_rel, src_label, dst_label), rows in batch.edges.items():
            for row in rows.values():
                needed.setdefault(src_label, set()).add(row["src"])
                needed.setdefault(dst_label, set()).add(row["dst"])
        for label, ids in needed.items():
            missing = ids - set(batch.nodes.get(label, {}))
            if missing:
                missing -= self.existing_ids(label, sorted(missing))
            if missing:
                sample = ", ".join(repr(m) for m in sorted(missing)[:3])
                raise InvalidRecord(
                    f"relationships refer to {len(missing)} unknown {label} node(s): {sample}."
                )

    def node(self, label: Label, id: str) -> dict[str, Any] | None:
        """One node's properties (JSON ones decoded), or ``None``."""
        cols = ", ".join(f"n.{p} AS {p}" for p in NODES[label].properties)
        rows = self.query(f"MATCH (n:{label}) WHERE n.id = $id RETURN {cols}", {"id": id})
        return decode_props(label, rows[0]) if rows else None

    def nodes(self, label: Label) -> list[dict[str, Any]]:
        """All nodes of a label, decoded, ordered by id."""
        cols = ", ".join(f"n.{p} AS {p}" for p in NODES[label].properties)
        rows = self.query(f"MATCH (n:{label}) RETURN {cols} ORDER BY n.id")
        return [decode_props(label, r) for r in rows]

    def count(self, label: Label) -> int:
        """Number of nodes with ``label``."""
        return int(self.query(f"MATCH (n:{label}) RETURN count(n) AS c")[0]["c"])

    def resolve(
        self, name: str, labels: tuple[Label, ...] = (Label.DATASET, Label.MODEL)
    ) -> tuple[Label, str]:
        """Find a node by id, else by name, else by the id the one id rule gives that name
        (``kg.ids.slug``: "Oxford Pets" finds ``oxford-pets``), among ``labels``; raises ``NotFound``
        or on ambiguity."""
        hits: list[tuple[Label, str]] = []
        for field, value in (("id", name), ("name", name), ("id", slug(name))):
            for label in labels:
                rows = self.query(f"MATCH (n:{label}) WHERE n.{field} = $v RETURN n.id AS id", {"v": value})
                hits.extend((label, r["id"]) for r in rows)
            if hits:
                break
        if not hits:
            kinds = " or ".join(str(lb).lower() for lb in labels)
            close = self.closest_names(name, labels)
            hint = f" Closest: {', '.join(close)}." if close else ""
            raise NotFound(f"no {kinds} named {name!r} in the graph.{hint}")
        if len(hits) > 1:
            options = ", ".join(f"{lb}:{i}" for lb, i in hits)
            raise NotFound(f"{name!r} is ambiguous ({options}); pass the id instead.")
        return hits[0]

    def closest_names(self, name: str, labels: tuple[Label, ...], n: int = 3) -> list[str]:
        """Up to ``n`` ids or names of ``labels`` nodes that look like ``name`` (for error messages)."""
        import difflib

        known: set[str] = set()
        for label in labels:
            for row in self.query(f"MATCH (n:{label}) RETURN n.id AS id, n.name AS name"):
                known.update(v for v in (row["id"], row["name"]) if isinstance(v, str))
        lowered = {k.lower(): k for k in known}
        close = difflib.get_close_matches(name.lower(), list(lowered), n=n, cutoff=0.6)
        return [lowered[c] for c in close]

    def __enter__(self) -> GraphStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def resolve_store_uri(uri: str | None = None) -> str:
    """The store URI: the argument, else ``KGRAFT_STORE``, else ``store = "..."`` in ``./kgraft.toml``,
    else the default."""
    if uri:
        return uri
    if os.environ.get("KGRAFT_STORE"):
        return os.environ["KGRAFT_STORE"]
    config = Path("kgraft.toml")
    if config.is_file():
        import tomllib

        try:
            value = tomllib.loads(config.read_text()).get("store")
        except tomllib.TOMLDecodeError as exc:
            raise StoreUnavailable(f"kgraft.toml is not valid TOML: {exc}.") from None
        if value:
            return str(value)
    return DEFAULT_STORE

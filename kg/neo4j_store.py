"""The server store: Neo4j over Bolt with the official driver (``neo4j://`` or ``bolt://``)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from kg.batch import GraphBatch
from kg.errors import AuthenticationFailed, KgError, QueryFailed, ReadOnlyViolation, StoreUnavailable
from kg.schema import neo4j_schema
from kg.store import ApplyStats, GraphStore, Transaction
from ontology.vocab import RELS, Label, Rel

_CHUNK = 10_000
CONNECT_TIMEOUT_S = 5.0


def _translate(exc: Exception) -> KgError:
    """Turn a driver exception into one user-facing sentence."""
    from neo4j import exceptions as ne

    if isinstance(exc, ne.AuthError):
        return AuthenticationFailed("Neo4j refused the credentials; check NEO4J_USER and NEO4J_PASSWORD.")
    if isinstance(exc, ne.IncompleteCommit):
        return StoreUnavailable(
            "the connection to Neo4j broke while committing, so the write may or may not be in the graph; "
            "check the graph, then rerun the command."
        )
    if isinstance(exc, ne.ServiceUnavailable | ne.SessionExpired):
        return StoreUnavailable(f"cannot reach Neo4j: {exc}")
    code = getattr(exc, "code", "") or ""
    if code.endswith(".DatabaseUnavailable") or isinstance(exc, ne.DatabaseUnavailable):
        # A server stopping or starting: the open transaction is rolled back, never half-committed.
        return StoreUnavailable(
            "the Neo4j database became unavailable (the server is stopping or starting); an unfinished "
            "write was not kept, so rerun the command once the server is back."
        )
    message = (getattr(exc, "message", None) or str(exc)).strip().splitlines()[0]
    if "AccessMode" in code or "read access mode" in message:
        return ReadOnlyViolation("this query writes to the graph; rerun it with --write to allow that.")
    return QueryFailed(f"Neo4j refused the query: {message}")


class _Neo4jTx(Transaction):
    def __init__(self, tx: Any) -> None:
        self._tx = tx
        self.counters: list[Any] = []  # one SummaryCounters per statement run

    def run(self, cypher: str, params: dict[str, Any] | None = None) -> list[dict[str, Any]]:
        from neo4j.exceptions import Neo4jError

        try:
            result = self._tx.run(cypher, params or {})
            rows = [record.data() for record in result]
            self.counters.append(result.consume().counters)
        except Neo4jError as exc:
            raise _translate(exc) from None
        return rows


class Neo4jStore(GraphStore):
    """A Neo4j database reached over Bolt. Credentials: ``NEO4J_USER`` / ``NEO4J_PASSWORD`` or the URI."""

    dialect = "neo4j"

    def __init__(self, uri: str, *, read_only: bool = False) -> None:
        from neo4j import GraphDatabase
        from neo4j.exceptions import DriverError, Neo4jError

        parts = urlsplit(uri)
        user = parts.username or os.environ.get("NEO4J_USER", "neo4j")
        password = parts.password or os.environ.get("NEO4J_PASSWORD", "")
        netloc = parts.hostname or "localhost"
        if parts.port:
            netloc += f":{parts.port}"
        self.uri = urlunsplit((parts.scheme, netloc, "", "", ""))
        self.read_only = read_only
        self._database = os.environ.get("NEO4J_DATABASE") or None
        try:
            self._driver = GraphDatabase.driver(
                self.uri,
                auth=(user, password),
                connection_timeout=CONNECT_TIMEOUT_S,
                connection_acquisition_timeout=CONNECT_TIMEOUT_S,
                max_transaction_retry_time=CONNECT_TIMEOUT_S,
                notifications_min_severity="OFF",  # optional properties are often absent; not news
            )
            self._driver.verify_connectivity()
        except (Neo4jError, DriverError, OSError, ValueError) as exc:
            err = _translate(exc)
            if not isinstance(err, StoreUnavailable):
                err = StoreUnavailable(f"cannot connect to Neo4j at {self.uri}: {exc}")
            raise err from None
        if not read_only:
            self.ensure_schema()

    def _session(self, write: bool) -> Any:
        from neo4j import READ_ACCESS, WRITE_ACCESS

        mode = WRITE_ACCESS if write and not self.read_only else READ_ACCESS
        return self._driver.session(database=self._database, default_access_mode=mode)

    def ensure_schema(self) -> None:
        with self._session(write=True) as session:
            for statement in neo4j_schema():
                session.run(statement).consume()
            session.run("CALL db.awaitIndexes(60)").consume()

    def query(
        self, cypher: str, params: dict[str, Any] | None = None, *, timeout_s: float | None = None
    ) -> list[dict[str, Any]]:
        from neo4j.exceptions import DriverError, Neo4jError

        try:
            with self._session(write=False) as session:
                tx = session.begin_transaction(timeout=timeout_s)  # enforced by the server
                try:
                    return _Neo4jTx(tx).run(cypher, params)
                finally:
                    tx.rollback()  # a read never commits
        except (Neo4jError, DriverError) as exc:
            raise _translate(exc) from None

    @contextmanager
    def transaction(self) -> Iterator[Transaction]:
        from neo4j.exceptions import DriverError, Neo4jError

        if self.read_only:
            raise ReadOnlyViolation("the graph was opened read-only; rerun with --write to change it.")
        try:
            with self._session(write=True) as session, session.begin_transaction() as tx:
                wrapped = _Neo4jTx(tx)
                yield wrapped
                tx.commit()
        except (Neo4jError, DriverError) as exc:
            raise _translate(exc) from None

    def close(self) -> None:
        driver = getattr(self, "_driver", None)
        if driver is not None:
            driver.close()
            self._driver = None

    def _apply(self, batch: GraphBatch) -> ApplyStats:
        # New elements are CREATEd and existing ones matched and SET: MERGE would look each one up
        # twice and, for relationships, scan the start node's relationships per row.
        stats = [0, 0, 0, 0]
        with self.transaction() as tx:
            for label, by_id in batch.nodes.items():
                rows = list(by_id.values())
                existing = (
                    _existing_nodes(tx, label, list(by_id)) if _any(tx, f"MATCH (n:{label})") else set()
                )
                new = [r for r in rows if r["id"] not in existing]
                old = [r for r in rows if r["id"] in existing]
                _run_chunks(tx, f"UNWIND $rows AS row CREATE (n:{label}) SET n = row", new)
                _run_chunks(tx, f"UNWIND $rows AS row MATCH (n:{label} {{id: row.id}}) SET n += row", old)
                stats[0] += len(new)
                stats[1] += len(old)
            for (rel, src, dst), by_key in batch.edges.items():
                rows = [_edge_row(rel, r) for r in by_key.values()]
                existing = set()
                if _any(tx, f"MATCH (:{src})-[r:{rel}]->(:{dst})"):
                    existing = _existing_edges(tx, rel, src, dst, sorted({r["src"] for r in rows}))
                new = [r for r in rows if _ident(r) not in existing]
                old = [r for r in rows if _ident(r) in existing]
                ends = f"MATCH (a:{src} {{id: row.src}}) MATCH (b:{dst} {{id: row.dst}})"
                _run_chunks(
                    tx, f"UNWIND $rows AS row {ends} CREATE (a)-[r:{rel}]->(b) SET r = row.props", new
                )
                key_match = "".join(f" AND r.{k} = row.key.{k}" for k in RELS[rel].key)
                _run_chunks(
                    tx,
                    f"UNWIND $rows AS row MATCH (a:{src} {{id: row.src}})-[r:{rel}]->"
                    f"(b:{dst} {{id: row.dst}}) WHERE true{key_match} SET r += row.props",
                    old,
                )
                stats[2] += len(new)
                stats[3] += len(old)
        return ApplyStats(*stats)


def _any(tx: _Neo4jTx, pattern: str) -> bool:
    """Whether ``pattern`` matches anything: lets a load into an empty graph skip existence checks."""
    return bool(tx.run(f"{pattern} RETURN 1 AS one LIMIT 1"))


def _existing_nodes(tx: _Neo4jTx, label: Label, ids: list[str]) -> set[str]:
    found: set[str] = set()
    for start in range(0, len(ids), 50_000):
        rows = tx.run(
            f"UNWIND $ids AS i MATCH (n:{label} {{id: i}}) RETURN n.id AS id",
            {"ids": ids[start : start + 50_000]},
        )
        found.update(r["id"] for r in rows)
    return found


def _existing_edges(tx: _Neo4jTx, rel: Rel, src: Label, dst: Label, src_ids: list[str]) -> set[tuple]:
    keys = RELS[rel].key
    cols = "".join(f", r.{k} AS {k}" for k in keys)
    found: set[tuple] = set()
    for start in range(0, len(src_ids), 50_000):
        rows = tx.run(
            f"UNWIND $ids AS i MATCH (a:{src} {{id: i}})-[r:{rel}]->(b:{dst}) "
            f"RETURN a.id AS src, b.id AS dst{cols}",
            {"ids": src_ids[start : start + 50_000]},
        )
        found.update((r["src"], r["dst"], *(r[k] for k in keys)) for r in rows)
    return found


def _run_chunks(tx: _Neo4jTx, statement: str, rows: list[dict[str, Any]]) -> None:
    """Run an ``UNWIND $rows`` statement over chunks of rows."""
    for start in range(0, len(rows), _CHUNK):
        tx.run(statement, {"rows": rows[start : start + _CHUNK]})


def _edge_row(rel: Rel, row: dict[str, Any]) -> dict[str, Any]:
    key = RELS[rel].key
    props = {k: v for k, v in row.items() if k not in {"src", "dst"}}
    return {
        "src": row["src"],
        "dst": row["dst"],
        "key": {k: props[k] for k in key},
        "props": props,
    }


def _ident(row: dict[str, Any]) -> tuple:
    return (row["src"], row["dst"], *row["key"].values())

"""The server store: Neo4j over Bolt with the official driver (``neo4j://`` or ``bolt://``)."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from kg.batch import GraphBatch
from kg.errors import AuthenticationFailed, KgError, QueryFailed, ReadOnlyViolation, StoreUnavailable
from kg.schema import neo4j_schema
from kg.store import ApplyStats, GraphStore, Transaction
from ontology.vocab import RELS, Label, Rel

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
        stats = [0, 0, 0, 0]
        with self.transaction() as tx:
            for label, by_id in batch.nodes.items():
                new, old = split_nodes(tx.run, label, list(by_id.values()))
                create, update = node_statements(label)
                _run_chunks(tx, create, new)
                _run_chunks(tx, update, old)
                stats[0] += len(new)
                stats[1] += len(old)
            for (rel, src, dst), by_key in batch.edges.items():
                new, old = split_edges(tx.run, rel, src, dst, [edge_row(r) for r in by_key.values()])
                create, update = edge_statements(rel, src, dst)
                _run_chunks(tx, create, new)
                _run_chunks(tx, update, old)
                stats[2] += len(new)
                stats[3] += len(old)
        return ApplyStats(*stats)

    def run_autocommit(self, cypher: str, params: dict[str, Any] | None = None) -> list[dict[str, Any]]:
        """Run one statement in an implicit (auto-commit) transaction.

        Only ``CALL { ... } IN TRANSACTIONS`` needs this: it commits its own inner transactions, so it
        cannot run inside a transaction opened by the client (see ``kg.bulk``).
        """
        from neo4j.exceptions import DriverError, Neo4jError

        if self.read_only:
            raise ReadOnlyViolation("the graph was opened read-only; rerun with --write to change it.")
        try:
            with self._session(write=True) as session:
                return [record.data() for record in session.run(cypher, params or {})]
        except (Neo4jError, DriverError) as exc:
            raise _translate(exc) from None


# How the writes are shaped (measured with benchmarks/kg_bench.py, see docs/benchmarks.md):
# * new elements are CREATEd and existing ones matched and SET: MERGE looks each one up twice and,
#   for relationships, scans the start node's relationships per row;
# * relationship ends are found by index seeks on the unique ``id`` of each label (the uniqueness
#   constraints from ``kg.schema.neo4j_schema``), one MATCH per end;
# * relationship rows travel as ``[src, dst, props]`` lists, not maps: half the bytes to encode;
# * 10,000 rows per statement: 2,000 was ~30% slower, 50,000 no faster.
ROWS_PER_STATEMENT = 10_000

Runner = Callable[[str, dict[str, Any]], list[dict[str, Any]]]


def node_statements(label: Label) -> tuple[str, str]:
    """The CREATE and the update statement for node rows (property maps with ``id``) in ``$rows``."""
    return (
        f"UNWIND $rows AS row CREATE (n:{label}) SET n = row",
        f"UNWIND $rows AS row MATCH (n:{label} {{id: row.id}}) SET n += row",
    )


def edge_statements(rel: Rel, src: Label, dst: Label) -> tuple[str, str]:
    """The CREATE and the update statement for relationship rows ``[src id, dst id, props]`` in ``$rows``."""
    ends = f"MATCH (a:{src} {{id: row[0]}}) MATCH (b:{dst} {{id: row[1]}})"
    key_match = "".join(f" AND r.{k} = row[2].{k}" for k in RELS[rel].key)
    return (
        f"UNWIND $rows AS row {ends} CREATE (a)-[r:{rel}]->(b) SET r = row[2]",
        f"UNWIND $rows AS row {ends} MATCH (a)-[r:{rel}]->(b) WHERE true{key_match} SET r += row[2]",
    )


def edge_row(row: dict[str, Any]) -> list[Any]:
    """A batch relationship row as sent to Neo4j: ``[src id, dst id, properties]``."""
    return [row["src"], row["dst"], {k: v for k, v in row.items() if k not in {"src", "dst"}}]


def split_nodes(run: Runner, label: Label, rows: list[dict[str, Any]]) -> tuple[list, list]:
    """``rows`` split into (new, already in the graph); no lookup at all for an empty label."""
    if not rows or not run(f"MATCH (n:{label}) RETURN 1 AS one LIMIT 1", {}):
        return rows, []
    existing: set[str] = set()
    for start in range(0, len(rows), 50_000):
        found = run(
            f"UNWIND $ids AS i MATCH (n:{label} {{id: i}}) RETURN n.id AS id",
            {"ids": [r["id"] for r in rows[start : start + 50_000]]},
        )
        existing.update(r["id"] for r in found)
    return [r for r in rows if r["id"] not in existing], [r for r in rows if r["id"] in existing]


def split_edges(run: Runner, rel: Rel, src: Label, dst: Label, rows: list[list[Any]]) -> tuple[list, list]:
    """Relationship rows (see ``edge_row``) split into (new, already in the graph)."""
    if not rows or not run(f"MATCH (:{src})-[r:{rel}]->(:{dst}) RETURN 1 AS one LIMIT 1", {}):
        return rows, []
    keys = RELS[rel].key
    cols = "".join(f", r.{k} AS {k}" for k in keys)
    src_ids = sorted({r[0] for r in rows})
    existing: set[tuple] = set()
    for start in range(0, len(src_ids), 50_000):
        found = run(
            f"UNWIND $ids AS i MATCH (a:{src} {{id: i}})-[r:{rel}]->(b:{dst}) "
            f"RETURN a.id AS src, b.id AS dst{cols}",
            {"ids": src_ids[start : start + 50_000]},
        )
        existing.update((r["src"], r["dst"], *(r[k] for k in keys)) for r in found)

    def ident(row: list[Any]) -> tuple:
        return (row[0], row[1], *(row[2][k] for k in keys))

    return [r for r in rows if ident(r) not in existing], [r for r in rows if ident(r) in existing]


def _run_chunks(tx: _Neo4jTx, statement: str, rows: list[Any]) -> None:
    """Run an ``UNWIND $rows`` statement over chunks of rows."""
    for start in range(0, len(rows), ROWS_PER_STATEMENT):
        tx.run(statement, {"rows": rows[start : start + ROWS_PER_STATEMENT]})

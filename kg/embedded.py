"""The embedded store: one LadybugDB file, no server (``embedded:PATH``)."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any

import pyarrow as pa

from kg.batch import GraphBatch
from kg.errors import KgError, QueryFailed, ReadOnlyViolation, StoreUnavailable
from kg.schema import ladybug_added_columns, ladybug_ddl
from kg.store import ApplyStats, GraphStore, Transaction
from ontology.vocab import NODES, RELS, Label, Rel

_ARROW = {
    "string": pa.string(),
    "int": pa.int64(),
    "float": pa.float64(),
    "bool": pa.bool_(),
    "json": pa.string(),
}


def _translate(exc: Exception) -> KgError:
    """Turn a LadybugDB ``RuntimeError`` into one user-facing sentence."""
    text = str(exc).strip()
    first = text.splitlines()[0] if text else type(exc).__name__
    if "read-only" in first or "read only" in first.lower():
        return ReadOnlyViolation("this query writes to the graph; rerun it with --write to allow that.")
    if "Could not set lock" in first:
        return StoreUnavailable("the graph file is locked by another kgraft process; close it and retry.")
    return QueryFailed(f"LadybugDB refused the query: {first}")


class _LadybugTx(Transaction):
    def __init__(self, store: LadybugStore) -> None:
        self._store = store

    def run(self, cypher: str, params: dict[str, Any] | None = None) -> list[dict[str, Any]]:
        return self._store._run(cypher, params)


class LadybugStore(GraphStore):
    """A LadybugDB database file. One read-write process per file (LadybugDB locks it)."""

    dialect = "ladybug"

    def __init__(self, path: str | Path, *, read_only: bool = False, create: bool = True) -> None:
        import ladybug

        self.path = Path(path)
        self.uri = f"embedded:{self.path}"
        self.read_only = read_only
        if not self.path.exists() and (read_only or not create):
            raise StoreUnavailable(f"no graph at {self.path}; run `kgraft init` first.")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            self._db = ladybug.Database(str(self.path), read_only=read_only)
            self._conn = ladybug.Connection(self._db)
        except RuntimeError as exc:
            err = _translate(exc)
            if isinstance(err, StoreUnavailable):
                raise err from None
            raise StoreUnavailable(
                f"cannot open the graph at {self.path}: {str(exc).splitlines()[0]}"
            ) from None
        self._in_tx = False
        if not read_only:
            self.ensure_schema()

    def _run(self, cypher: str, params: dict[str, Any] | None = None) -> list[dict[str, Any]]:
        try:
            result = self._conn.execute(cypher, params or {})
        except RuntimeError as exc:
            raise _translate(exc) from None
        results = result if isinstance(result, list) else [result]
        last = results[-1]
        columns = last.get_column_names()
        return [dict(zip(columns, row, strict=True)) for row in last.get_all()]

    def ensure_schema(self) -> None:
        for statement in ladybug_ddl():
            self._run(statement)
        tables = [row["name"] for row in self._run("CALL show_tables() RETURN name")]
        existing = {
            table: {row["name"] for row in self._run(f"CALL table_info('{table}') RETURN name")}
            for table in tables  # names come from the database's own catalogue, not from input
        }
        for statement in ladybug_added_columns(existing):
            self._run(statement)

    def query(
        self, cypher: str, params: dict[str, Any] | None = None, *, timeout_s: float | None = None
    ) -> list[dict[str, Any]]:
        if timeout_s is None:
            return self._query(cypher, params)
        self._conn.set_query_timeout(max(1, int(timeout_s * 1000)))
        try:
            return self._query(cypher, params)
        finally:
            self._conn.set_query_timeout(0)  # 0: no limit, LadybugDB's default

    def _query(self, cypher: str, params: dict[str, Any] | None) -> list[dict[str, Any]]:
        if self._in_tx or self.read_only:
            return self._run(cypher, params)
        self._run("BEGIN TRANSACTION READ ONLY")
        try:
            rows = self._run(cypher, params)
        except KgError as exc:
            with suppress(KgError):  # a failed statement may already have ended the transaction
                self._run("ROLLBACK")
            if isinstance(exc, QueryFailed) and "write" in str(exc).lower():
                raise ReadOnlyViolation(
                    "this query writes to the graph; rerun it with --write to allow that."
                ) from None
            raise
        self._run("COMMIT")
        return rows

    @contextmanager
    def transaction(self) -> Iterator[Transaction]:
        if self.read_only:
            raise ReadOnlyViolation("the graph was opened read-only; rerun with --write to change it.")
        if self._in_tx:  # nested use joins the open transaction
            yield _LadybugTx(self)
            return
        self._run("BEGIN TRANSACTION")
        self._in_tx = True
        try:
            yield _LadybugTx(self)
        except BaseException:
            self._in_tx = False
            with suppress(KgError):  # a failed statement may already have ended the transaction
                self._run("ROLLBACK")
            raise
        self._in_tx = False
        self._run("COMMIT")

    def reader(self) -> LadybugStore:
        """A second handle on this open file, for reads from another thread: its own connection to the
        same database (a connection must not be shared between threads), every query in a read-only
        transaction, no writes. Its reads do not wait for this handle's writes (LadybugDB runs read
        transactions beside the one writer); close it before this handle."""
        if self._db is None:
            raise StoreUnavailable("the graph is closed.")
        return _LadybugReader(self)

    def close(self) -> None:
        conn, db = getattr(self, "_conn", None), getattr(self, "_db", None)
        if conn is not None:
            conn.close()
            self._conn = None
        if db is not None:
            db.close()
            self._db = None

    # -- bulk upsert -------------------------------------------------------------------------
    def _apply(self, batch: GraphBatch) -> ApplyStats:
        stats = [0, 0, 0, 0]
        with self.transaction():
            for label, rows in batch.nodes.items():
                created, updated = self._upsert_nodes(label, list(rows.values()))
                stats[0] += created
                stats[1] += updated
            for (rel, src, dst), rows in batch.edges.items():
                created, updated = self._upsert_edges(rel, src, dst, list(rows.values()))
                stats[2] += created
                stats[3] += updated
        return ApplyStats(*stats)

    def _with_rows(
        self, cypher: str, columns: dict[str, tuple[str, str]], rows: list[dict[str, Any]]
    ) -> list[dict[str, Any]]:
        """Run ``cypher`` once per chunk with the rows as an Arrow table named ``arrow_rows``.

        ``columns`` maps each table column to (row key, kind). Scanning an Arrow table (``COPY ...
        FROM`` or ``LOAD FROM``) is two orders of magnitude faster in LadybugDB than ``UNWIND $rows``.
        """
        out: list[dict[str, Any]] = []
        for start in range(0, len(rows), 200_000):
            chunk = rows[start : start + 200_000]
            arrays = {
                col: pa.array([r.get(key) for r in chunk], type=_ARROW[kind])
                for col, (key, kind) in columns.items()
            }
            arrow_rows = pa.table(arrays)  # noqa: F841  (LadybugDB finds it by name in this frame)
            out.extend(self._run(cypher))
        return out

    def existing_ids(self, label: Label, ids: list[str]) -> set[str]:
        found = self._with_rows(
            f"LOAD FROM arrow_rows MATCH (n:{label} {{id: v_id}}) RETURN n.id AS id",
            {"v_id": ("id", "string")},
            [{"id": i} for i in ids],
        )
        return {r["id"] for r in found}

    def _upsert_nodes(self, label: Label, rows: list[dict[str, Any]]) -> tuple[int, int]:
        spec = NODES[label].properties
        existing = self.existing_ids(label, [r["id"] for r in rows])
        new = [r for r in rows if r["id"] not in existing]
        if new:
            self._with_rows(f"COPY {label} FROM arrow_rows", {k: (k, kind) for k, kind in spec.items()}, new)
        old = [r for r in rows if r["id"] in existing]
        for keys, group in _group_by_keys(old, exclude={"id"}).items():
            sets = ", ".join(f"n.{k} = v_{k}" for k in keys)
            columns = {f"v_{k}": (k, spec[k]) for k in ("id", *keys)}
            self._with_rows(f"LOAD FROM arrow_rows MATCH (n:{label} {{id: v_id}}) SET {sets}", columns, group)
        return len(new), len(old)

    def _upsert_edges(self, rel: Rel, src: Label, dst: Label, rows: list[dict[str, Any]]) -> tuple[int, int]:
        spec = RELS[rel]
        props = spec.properties
        existing: set[tuple] = set()
        if self.query(f"MATCH (:{src})-[r:{rel}]->(:{dst}) RETURN count(r) AS c")[0]["c"]:
            key_cols = "".join(f", r.{k} AS {k}" for k in spec.key)
            found = self._with_rows(
                f"LOAD FROM arrow_rows MATCH (a:{src} {{id: v_src}})-[r:{rel}]->(b:{dst}) "
                f"RETURN a.id AS src, b.id AS dst{key_cols}",
                {"v_src": ("src", "string")},
                [{"src": s} for s in sorted({r["src"] for r in rows})],
            )
            existing = {(f["src"], f["dst"], *(f[k] for k in spec.key)) for f in found}

        def ident(r: dict[str, Any]) -> tuple:
            return (r["src"], r["dst"], *(r[k] for k in spec.key))

        new = [r for r in rows if ident(r) not in existing]
        if new:
            columns = {"from": ("src", "string"), "to": ("dst", "string")}
            columns |= {name: (name, kind) for name, kind in props.items()}
            options = f" (from='{src}', to='{dst}')" if len(spec.ends) > 1 else ""
            self._with_rows(f"COPY {rel} FROM arrow_rows{options}", columns, new)
        old = [r for r in rows if ident(r) in existing]
        match_keys = "".join(f" AND r.{k} = v_{k}" for k in spec.key)
        for keys, group in _group_by_keys(old, exclude={"src", "dst", *spec.key}).items():
            if not keys:
                continue
            sets = ", ".join(f"r.{k} = v_{k}" for k in keys)
            columns = {"v_src": ("src", "string"), "v_dst": ("dst", "string")}
            columns |= {f"v_{k}": (k, props[k]) for k in (*spec.key, *keys)}
            self._with_rows(
                f"LOAD FROM arrow_rows MATCH (a:{src} {{id: v_src}})-[r:{rel}]->(b:{dst} {{id: v_dst}}) "
                f"WHERE true{match_keys} SET {sets}",
                columns,
                group,
            )
        return len(new), len(old)


class _LadybugReader(LadybugStore):
    """``LadybugStore.reader()``: a read-only connection to a database another handle owns."""

    def __init__(self, owner: LadybugStore) -> None:  # no super().__init__: the database is open
        import ladybug

        self.path, self.uri = owner.path, owner.uri
        self.read_only = False  # so that every query runs in a READ ONLY transaction of its own
        self._db = None  # the owner's; close() leaves it open
        self._conn = ladybug.Connection(owner._db)
        self._in_tx = False

    @contextmanager
    def transaction(self) -> Iterator[Transaction]:
        raise ReadOnlyViolation("this handle only reads; write through the store that opened the file.")
        yield  # pragma: no cover (a generator, as the base class's)


def _group_by_keys(rows: list[dict[str, Any]], exclude: set[str]) -> dict[tuple[str, ...], list[dict]]:
    """Rows grouped by the set of properties they set, so each group is one UNWIND statement."""
    groups: dict[tuple[str, ...], list[dict]] = defaultdict(list)
    for row in rows:
        groups[tuple(sorted(k for k in row if k not in exclude))].append(row)
    return groups

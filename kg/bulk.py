"""Bulk loading for big first imports: many small commits instead of one, resumable after a kill.

``GraphStore.apply`` writes a batch in one transaction: all or nothing. For a first import of
millions of elements into Neo4j that one transaction is the slow part (its state lives on the
server's heap until the commit). ``bulk_apply`` gives up all-or-nothing for speed:

* the batch is cut into chunks of ``rows_per_tx`` elements in a fixed order (nodes by label, then
  relationships by type); each chunk commits on its own, inside the server, through
  ``CALL { ... } IN TRANSACTIONS OF 1 ROWS`` (one outer row per chunk, several chunks per round trip);
* every chunk's transaction also records the chunk's number on a checkpoint node
  ``(:KgraftBulkLoad {id})`` whose id is a hash of the batch's contents, and skips a chunk already
  recorded there. It takes the checkpoint's write lock before it writes, so a chunk is written at most
  once even if a killed client's statement is still running on the server;
* so a rerun of the same batch after a kill (or a lost connection) writes only the chunks that had
  not committed, and nothing twice. The checkpoint node is deleted when the load finishes.

An interrupted bulk load leaves a partial graph (whole chunks, nodes before relationships) until it
is rerun; a checkpoint left by a load that is never rerun can be dropped with
``MATCH (c:KgraftBulkLoad) DELETE c``. On LadybugDB ``bulk_apply`` is ``apply``: its load already
streams Arrow tables through ``COPY FROM`` in one transaction, so it stays atomic.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from kg.batch import GraphBatch
from kg.errors import InvalidRecord
from kg.store import ApplyStats, GraphStore
from ontology.vocab import Label, Rel

CHECKPOINT_LABEL = "KgraftBulkLoad"
ROWS_PER_TX = 10_000
CHUNKS_PER_STATEMENT = 5

Progress = Callable[[int, int], None]  # (elements written so far, elements in the batch)


@dataclass(frozen=True)
class _Chunk:
    number: int
    kind: str  # "node" or "edge"
    label: Label | None
    edge: tuple[Rel, Label, Label] | None
    rows: list[Any]


def bulk_apply(
    store: GraphStore,
    batch: GraphBatch,
    *,
    rows_per_tx: int = ROWS_PER_TX,
    progress: Progress | None = None,
) -> ApplyStats:
    """Upsert ``batch`` in chunks that commit one by one (Neo4j), resuming an interrupted load.

    Same graph as ``store.apply(batch)`` once it returns; see the module docstring for what an
    interruption leaves. The counts are those of this run (a resumed run counts what it wrote).
    """
    if not isinstance(rows_per_tx, int) or rows_per_tx < 1:
        raise InvalidRecord(f"rows per transaction must be a positive whole number, got {rows_per_tx!r}.")
    if store.dialect != "neo4j":
        stats = store.apply(batch)
        if progress:
            progress(stats.total, stats.total)
        return stats
    if not batch:
        return ApplyStats(0, 0, 0, 0)
    store._check_endpoints(batch)
    return _Neo4jBulkLoad(store, batch, rows_per_tx, progress).run()


class _Neo4jBulkLoad:
    def __init__(self, store: Any, batch: GraphBatch, rows_per_tx: int, progress: Progress | None) -> None:
        from kg import neo4j_store

        self.store = store
        self.ns = neo4j_store
        self.progress = progress
        self.chunks = list(_plan(batch, rows_per_tx))
        self.total = sum(len(c.rows) for c in self.chunks)
        self.load_id = _fingerprint(self.chunks, rows_per_tx)

    def run(self) -> ApplyStats:
        done = self._open_checkpoint()
        todo = [c for c in self.chunks if c.number not in done]
        written = self.total - sum(len(c.rows) for c in todo)
        stats = [0, 0, 0, 0]
        if self.progress:
            self.progress(written, self.total)
        # A group's existence is read before its chunks are written: rows of chunks that have not
        # committed are in the graph only if they were before the load began.
        for group in _groups(todo):
            head = group[0]
            if head.kind == "node":
                new_ids, counts = self._split_nodes(head.label, group)
                statement = self._node_statement(head.label)
            else:
                new_ids, counts = self._split_edges(head.edge, group)
                statement = self._edge_statement(head.edge)
            for start in range(0, len(group), CHUNKS_PER_STATEMENT):
                part = group[start : start + CHUNKS_PER_STATEMENT]
                self.store.run_autocommit(
                    statement,
                    {"load": self.load_id, "chunks": [_split_chunk(c, new_ids) for c in part]},
                )
                written += sum(len(c.rows) for c in part)
                if self.progress:
                    self.progress(written, self.total)
            base = 0 if head.kind == "node" else 2
            stats[base] += counts[0]
            stats[base + 1] += counts[1]
        self.store.run_autocommit(
            f"MATCH (c:{CHECKPOINT_LABEL} {{id: $load}}) DELETE c", {"load": self.load_id}
        )
        return ApplyStats(*stats)

    def _open_checkpoint(self) -> set[int]:
        rows = self.store.run_autocommit(
            f"MERGE (c:{CHECKPOINT_LABEL} {{id: $load}}) ON CREATE SET c.done = [], c.chunks = $chunks "
            "RETURN c.done AS done",
            {"load": self.load_id, "chunks": len(self.chunks)},
        )
        return set(rows[0]["done"])

    def _split_nodes(self, label: Label, group: list[_Chunk]) -> tuple[Any, tuple[int, int]]:
        rows = [r for c in group for r in c.rows]
        new, old = self.ns.split_nodes(self.store.query, label, rows)
        ids = {r["id"] for r in new}
        return (lambda row: row["id"] in ids), (len(new), len(old))

    def _split_edges(
        self, edge: tuple[Rel, Label, Label], group: list[_Chunk]
    ) -> tuple[Any, tuple[int, int]]:
        rows = [r for c in group for r in c.rows]
        new, old = self.ns.split_edges(self.store.query, *edge, rows)
        marked = {id(r) for r in new}
        return (lambda row: id(row) in marked), (len(new), len(old))

    def _node_statement(self, label: Label) -> str:
        create, update = self.ns.node_statements(label)
        return _in_transactions(create.replace("$rows", "chunk.new"), update.replace("$rows", "chunk.old"))

    def _edge_statement(self, edge: tuple[Rel, Label, Label]) -> str:
        create, update = self.ns.edge_statements(*edge)
        return _in_transactions(create.replace("$rows", "chunk.new"), update.replace("$rows", "chunk.old"))


def _in_transactions(create: str, update: str) -> str:
    """One outer row per chunk; each chunk's writes and its checkpoint mark commit together.

    ``SET c.lock`` takes the checkpoint's write lock before ``done`` is read, so two runs of the same
    load (a killed client's statement still running on the server, and the rerun) never both write
    one chunk.
    """
    return (
        "UNWIND $chunks AS chunk CALL (chunk) { "
        f"MATCH (c:{CHECKPOINT_LABEL} {{id: $load}}) SET c.lock = chunk.number "
        "WITH chunk, c WHERE NOT chunk.number IN c.done "
        f"CALL (chunk) {{ {create} }} "
        f"CALL (chunk) {{ {update} }} "
        "SET c.done = c.done + chunk.number "
        "} IN TRANSACTIONS OF 1 ROWS"
    )


def _split_chunk(chunk: _Chunk, is_new: Callable[[Any], bool]) -> dict[str, Any]:
    new = [r for r in chunk.rows if is_new(r)]
    old = [r for r in chunk.rows if not is_new(r)]
    return {"number": chunk.number, "new": new, "old": old}


def _plan(batch: GraphBatch, rows_per_tx: int) -> Iterator[_Chunk]:
    """The batch in chunks, in a fixed order: each label's nodes by id, then each relationship type's
    by ends and key. Sorted, so that a rerun reading the same file plans the same chunks whatever order
    its reader produced them in."""
    from kg.neo4j_store import edge_row

    number = 0
    for label in sorted(batch.nodes):
        rows = [batch.nodes[label][i] for i in sorted(batch.nodes[label])]
        for start in range(0, len(rows), rows_per_tx):
            yield _Chunk(number, "node", label, None, rows[start : start + rows_per_tx])
            number += 1
    for key in sorted(batch.edges):
        by_key = batch.edges[key]
        rows = [edge_row(by_key[k]) for k in sorted(by_key, key=lambda k: tuple(map(str, k)))]
        for start in range(0, len(rows), rows_per_tx):
            yield _Chunk(number, "edge", None, key, rows[start : start + rows_per_tx])
            number += 1


def _groups(chunks: list[_Chunk]) -> Iterator[list[_Chunk]]:
    """Consecutive chunks of one label or relationship type."""
    group: list[_Chunk] = []
    for chunk in chunks:
        if group and (chunk.kind, chunk.label, chunk.edge) != (group[0].kind, group[0].label, group[0].edge):
            yield group
            group = []
        group.append(chunk)
    if group:
        yield group


def _fingerprint(chunks: list[_Chunk], rows_per_tx: int) -> str:
    """A hash of the chunks' contents: the same batch gets the same checkpoint on a rerun."""
    h = hashlib.sha256(f"kgraft-bulk-1:{rows_per_tx}".encode())
    for chunk in chunks:
        h.update(repr((chunk.number, chunk.kind, chunk.label, chunk.edge, chunk.rows)).encode())
    return h.hexdigest()[:32]

"""Bulk loading (``kg.bulk.bulk_apply``, ``kgraft import ... --bulk``): the same graph as ``apply``, in
chunks that commit one by one on Neo4j; a load killed with ``kill -9`` between chunks, then rerun,
finishes with nothing written twice."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from typing import Any

import pytest

from kg import GraphBatch, GraphStore, open_store
from kg.bulk import CHECKPOINT_LABEL, bulk_apply
from kg.errors import InvalidRecord
from ontology.vocab import NODES, RELS, Label, Rel
from tests.cli import ROOT, kgraft

D, M, B = Label.DATASET, Label.MODEL, Label.BIAS


def lineage_batch(n: int = 60) -> GraphBatch:
    """``n`` datasets in a derivation chain, ``n // 2`` models trained and scored on them (two keyed
    SCORED_ON measurements per pair), fine-tuned from each other, and a bias on the first dataset."""
    b = GraphBatch()
    for i in range(n):
        b.node(D, f"d{i}", name=f"dataset {i}", n_samples=100 + i)
        if i:
            b.edge(Rel.DERIVED_FROM, (D, f"d{i}"), (D, f"d{i - 1}"), how=("subset", "rotate")[i % 2])
    for i in range(n // 2):
        b.node(M, f"m{i}", name=f"model {i}", num_params=1000 * (i + 1))
        b.edge(Rel.TRAINED_ON, (M, f"m{i}"), (D, f"d{2 * i}"))
        for kind, value in (("logme", 0.1 * i), ("hscore", 2.0 + i)):
            b.edge(Rel.SCORED_ON, (M, f"m{i}"), (D, f"d{2 * i + 1}"), kind=kind, layer="head", value=value)
        if i:
            b.edge(Rel.FINETUNED_FROM, (M, f"m{i}"), (M, f"m{i - 1}"))
    b.node(B, "b0", name="label noise", kind="label", severity="high", source="human")
    b.edge(Rel.HAS_BIAS, (D, "d0"), (B, "b0"))
    return b


def snapshot(store: GraphStore, batch: GraphBatch) -> dict[str, Any]:
    """Every node of the batch's labels and every relationship of its types, with their properties."""
    out: dict[str, Any] = {str(label): store.nodes(label) for label in sorted(batch.nodes)}
    for rel, src, dst in sorted(batch.edges):
        props = sorted(RELS[rel].properties)
        cols = "".join(f", r.{p} AS {p}" for p in props)
        rows = store.query(f"MATCH (a:{src})-[r:{rel}]->(b:{dst}) RETURN a.id AS src, b.id AS dst{cols}")
        out[f"{rel}:{src}:{dst}"] = sorted(rows, key=repr)
    return out


def counts(store: GraphStore) -> tuple[int, int, int]:
    """(nodes, distinct (label, id) pairs, relationships) in the whole graph."""
    nodes = sum(store.count(label) for label in NODES)
    distinct = sum(
        int(store.query(f"MATCH (n:{label}) RETURN count(DISTINCT n.id) AS c")[0]["c"]) for label in NODES
    )
    rels = sum(
        int(store.query(f"MATCH (:{s})-[r:{rel}]->(:{d}) RETURN count(r) AS c")[0]["c"])
        for rel, spec in RELS.items()
        for s, d in spec.ends
    )
    return nodes, distinct, rels


def test_bulk_writes_the_same_graph_as_apply(store: GraphStore) -> None:
    batch = lineage_batch()
    # Something already there: a node to update and a keyed relationship to update, not duplicate.
    before = GraphBatch()
    before.node(D, "d1", name="old name", license="cc-by")
    before.node(D, "d2", name="dataset 2")
    before.node(M, "m0", name="model 0")
    before.edge(Rel.SCORED_ON, (M, "m0"), (D, "d1"), kind="logme", layer="head", value=-1.0)

    store.apply(before)
    expected_stats = store.apply(batch)
    expected = snapshot(store, batch)
    store.clear()

    store.apply(before)
    ticks: list[tuple[int, int]] = []
    stats = bulk_apply(store, batch, rows_per_tx=7, progress=lambda done, total: ticks.append((done, total)))
    assert stats == expected_stats
    assert snapshot(store, batch) == expected
    assert snapshot(store, batch)[str(D)][1]["license"] == "cc-by"  # properties not given are kept
    total = batch.node_count() + batch.edge_count()
    assert ticks[-1] == (total, total)
    if store.dialect == "neo4j":
        assert len(ticks) > 5  # several statements, each several chunks of 7
        assert not store.query(f"MATCH (c:{CHECKPOINT_LABEL}) RETURN c.id AS id")  # finished: gone
    # A second run writes nothing new.
    again = bulk_apply(store, batch, rows_per_tx=7)
    assert (again.nodes_created, again.edges_created) == (0, 0)
    assert snapshot(store, batch) == expected


def test_bulk_refuses_bad_input_and_writes_nothing(store: GraphStore) -> None:
    with pytest.raises(InvalidRecord, match="positive whole number"):
        bulk_apply(store, lineage_batch(4), rows_per_tx=0)
    dangling = lineage_batch(4)
    dangling.edge(Rel.TRAINED_ON, (M, "m0"), (D, "nowhere"))
    with pytest.raises(InvalidRecord, match="unknown Dataset"):
        bulk_apply(store, dangling, rows_per_tx=2)
    assert counts(store) == (0, 0, 0)


_CHILD = """
import sys
from kg import open_store
from kg.bulk import bulk_apply
from tests.test_neo4j_bulk import lineage_batch
with open_store(sys.argv[1]) as store:
    bulk_apply(store, lineage_batch(int(sys.argv[2])), rows_per_tx=int(sys.argv[3]))
"""


def _wait_for_server_side_writes(store: GraphStore, timeout: float = 60) -> None:
    """Wait until no statement of a bulk load runs on the server. A killed client's last statement goes
    on committing its chunks until the server notices the closed connection; the graph is read once it
    has stopped. (The label is a parameter, so this query does not match its own text.)"""
    deadline = time.monotonic() + timeout
    query = (
        "SHOW TRANSACTIONS YIELD currentQuery WHERE currentQuery CONTAINS $label RETURN count(*) AS c"
    )
    while store.run_autocommit(query, {"label": CHECKPOINT_LABEL})[0]["c"]:
        assert time.monotonic() < deadline, "the killed load's statement never stopped on the server"
        time.sleep(0.05)


def _checkpoint(store: GraphStore) -> tuple[int, int] | None:
    rows = store.query(f"MATCH (c:{CHECKPOINT_LABEL}) RETURN size(c.done) AS done, c.chunks AS chunks")
    return (int(rows[0]["done"]), int(rows[0]["chunks"])) if rows else None


@pytest.mark.neo4j
def test_bulk_load_killed_between_chunks_then_rerun_writes_nothing_twice(neo4j_uri: str) -> None:
    n, rows_per_tx = 1500, 40
    batch = lineage_batch(n)
    with open_store(neo4j_uri) as store:
        store.clear()
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        child = subprocess.Popen(
            [sys.executable, "-c", _CHILD, neo4j_uri, str(n), str(rows_per_tx)],
            env=env,
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        deadline = time.monotonic() + 120
        while True:  # kill once some chunks have committed and not all
            mark = _checkpoint(store)
            if mark and 0 < mark[0] < mark[1] // 2:
                break
            assert child.poll() is None, f"the load ended before the kill: {child.communicate()}"
            assert time.monotonic() < deadline, "the load never committed a chunk"
            time.sleep(0.005)
        child.send_signal(signal.SIGKILL)
        child.communicate(timeout=30)
        assert child.returncode == -signal.SIGKILL
        _wait_for_server_side_writes(store)

        nodes, distinct, rels = counts(store)
        total_nodes, total_rels = batch.node_count(), batch.edge_count()
        assert nodes == distinct and 0 < nodes + rels < total_nodes + total_rels  # part, whole chunks
        assert _checkpoint(store) is not None

        stats = bulk_apply(store, batch, rows_per_tx=rows_per_tx)
        assert counts(store) == (total_nodes, total_nodes, total_rels)  # no duplicates, nothing missing
        assert stats.nodes_created + stats.edges_created < total_nodes + total_rels  # resumed, not redone
        assert _checkpoint(store) is None
        models = {row["id"]: row for row in store.nodes(M)}
        assert models["m7"]["num_params"] == 8000
        store.clear()


def test_cli_import_rdf_bulk(store: GraphStore, tmp_path) -> None:
    batch = lineage_batch(30)
    store.apply(batch)
    expected = snapshot(store, batch)
    exported = tmp_path / "graph.ttl"
    uri = store.uri
    store.close()
    assert kgraft("export", "rdf", str(exported), store=uri).returncode == 0
    target = uri if store.dialect == "neo4j" else f"embedded:{tmp_path / 'copy.lbug'}"
    if store.dialect == "neo4j":
        with open_store(uri) as s:
            s.clear()
    proc = kgraft("import", "rdf", "--bulk", str(exported), store=target)
    assert proc.returncode == 0, proc.stderr
    assert f"{batch.node_count()} nodes and {batch.edge_count()} relationships created" in proc.stdout
    with open_store(target) as copy:
        assert snapshot(copy, batch) == expected

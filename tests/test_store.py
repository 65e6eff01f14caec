"""The store contract, run against a real LadybugDB file and a real Neo4j server."""

from __future__ import annotations

import pytest

from kg import GraphBatch, GraphStore
from kg.errors import InvalidRecord, QueryFailed, ReadOnlyViolation
from ontology.vocab import Label, Rel
from tests.lineage_fixture import TRICKY_NAME, lineage_batch

D, M = Label.DATASET, Label.MODEL


def test_apply_is_idempotent(store: GraphStore) -> None:
    first = store.apply(lineage_batch())
    assert first.nodes_created == 16 and first.nodes_updated == 0
    assert first.edges_created == first.total - 16 == 17
    second = store.apply(lineage_batch())
    assert (second.nodes_created, second.edges_created) == (0, 0)
    assert second.nodes_updated == 16
    assert store.count(D) == 9 and store.count(Label.BIAS) == 3


def test_upsert_merges_properties_and_decodes_json(store: GraphStore) -> None:
    b = GraphBatch()
    b.node(D, "a", name="A", mean=[0.1, 0.2], n_samples=10)
    store.apply(b)
    b = GraphBatch()
    b.node(D, "a", imbalance=2.5)
    store.apply(b)
    assert store.node(D, "a") == {
        "id": "a",
        "name": "A",
        "mean": [0.1, 0.2],
        "n_samples": 10,
        "imbalance": 2.5,
    }
    assert store.node(D, "missing") is None


def test_names_with_quotes_and_keywords_round_trip(store: GraphStore) -> None:
    store.apply(lineage_batch())
    assert store.node(D, "tricky")["name"] == TRICKY_NAME
    assert store.resolve(TRICKY_NAME) == (D, "tricky")
    assert store.count(D) == 9  # nothing was deleted by the name


def test_relationship_keys(store: GraphStore) -> None:
    b = GraphBatch()
    b.node(M, "m", name="m")
    b.node(D, "d", name="d")
    b.edge(Rel.SCORED_ON, (M, "m"), (D, "d"), kind="logme", value=1.0)
    b.edge(Rel.SCORED_ON, (M, "m"), (D, "d"), kind="leep", value=-2.0)
    store.apply(b)
    b = GraphBatch()
    b.edge(Rel.SCORED_ON, (M, "m"), (D, "d"), kind="logme", value=1.5, p_value=0.01)
    stats = store.apply(b)
    assert (stats.edges_created, stats.edges_updated) == (0, 1)
    rows = store.query(
        "MATCH (:Model {id: $m})-[r:SCORED_ON]->(:Dataset {id: $d}) RETURN r.kind AS kind, r.value AS value "
        "ORDER BY kind",
        {"m": "m", "d": "d"},
    )
    assert rows == [{"kind": "leep", "value": -2.0}, {"kind": "logme", "value": 1.5}]


def test_apply_is_all_or_nothing(store: GraphStore) -> None:
    b = GraphBatch()
    b.node(D, "new", name="new")
    b.edge(Rel.DERIVED_FROM, (D, "new"), (D, "nowhere"), how="subset")
    with pytest.raises(InvalidRecord, match="unknown Dataset"):
        store.apply(b)
    assert store.count(D) == 0


def test_transaction_rolls_back(store: GraphStore) -> None:
    with pytest.raises(RuntimeError), store.transaction() as tx:
        tx.run("CREATE (n:Dataset {id: $id, name: $id})", {"id": "x"})
        raise RuntimeError("boom")
    assert store.count(D) == 0


def test_bad_input(store: GraphStore) -> None:
    with pytest.raises(QueryFailed):
        store.query("MATCH (n:Dataset RETURN n")
    with pytest.raises(ReadOnlyViolation):
        store.query("CREATE (n:Dataset {id: $id})", {"id": "x"})
    assert store.count(D) == 0
    with pytest.raises(InvalidRecord, match="no property"):
        GraphBatch().node(D, "a", colour="red")
    with pytest.raises(InvalidRecord, match="whole number"):
        GraphBatch().node(D, "a", n_samples="many")
    with pytest.raises(InvalidRecord, match="cannot join"):
        GraphBatch().edge(Rel.TRAINED_ON, (D, "a"), (D, "b"))


def test_bulk_upsert_uses_few_round_trips(store: GraphStore, monkeypatch: pytest.MonkeyPatch) -> None:
    """5,000 nodes and 4,999 relationships must not cost one statement each."""
    b = GraphBatch()
    for i in range(5000):
        b.node(D, f"d{i}", name=f"d{i}")
    for i in range(1, 5000):
        b.edge(Rel.DERIVED_FROM, (D, f"d{i}"), (D, f"d{i - 1}"), how="subset")
    calls = {"n": 0}
    target = type(store)
    method = "_run" if store.dialect == "ladybug" else "query"
    original = getattr(target, method)

    def counting(self, *args, **kwargs):
        calls["n"] += 1
        return original(self, *args, **kwargs)

    monkeypatch.setattr(target, method, counting)
    if store.dialect == "neo4j":
        from kg import neo4j_store

        tx_original = neo4j_store._Neo4jTx.run

        def counting_tx(self, *args, **kwargs):
            calls["n"] += 1
            return tx_original(self, *args, **kwargs)

        monkeypatch.setattr(neo4j_store._Neo4jTx, "run", counting_tx)
    stats = store.apply(b)
    assert stats.nodes_created == 5000 and stats.edges_created == 4999
    assert calls["n"] < 20

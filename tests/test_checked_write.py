"""Raw writes (``kgraft query --write``) are checked against the SHACL shapes before they commit, so
every graph kgraft holds exports to RDF that ``kgraft import rdf`` reads back. Both stores."""

from __future__ import annotations

from pathlib import Path

import pytest

from kg import GraphStore, open_store
from kg.checked_write import ShapeViolation, execute_checked, touched
from ontology.vocab import Label, Rel
from tests.cli import assert_clean_failure, kgraft

D = Label.DATASET


def test_a_dataset_without_its_required_name_is_refused_and_nothing_is_written(store: GraphStore) -> None:
    with pytest.raises(
        ShapeViolation, match=r"kg:DatasetShape: Dataset 'nameless' kg:name: Less than 1 value"
    ):
        execute_checked(store, "CREATE (d:Dataset {id: $id, n_samples: $n})", {"id": "nameless", "n": 10})
    assert store.node(D, "nameless") is None
    # a write that breaks a node it did not create is refused too: the check reads the labels it names
    execute_checked(store, "CREATE (d:Dataset {id: $id, name: $name})", {"id": "ok", "name": "fine"})
    with pytest.raises(ShapeViolation, match=r"kg:n_samples"):
        execute_checked(
            store, "MATCH (d:Dataset) WHERE d.id = $id SET d.n_samples = $n", {"id": "ok", "n": -5}
        )
    with pytest.raises(ShapeViolation, match=r"Dataset 'ok' kg:name"):
        execute_checked(store, "MATCH (n) WHERE n.id = $id SET n.name = NULL", {"id": "ok"})  # no label
    assert store.node(D, "ok") == {"id": "ok", "name": "fine"}


def test_a_valid_write_commits_and_returns_its_rows(store: GraphStore) -> None:
    rows = execute_checked(
        store,
        "CREATE (d:Dataset {id: $id, name: $name, n_samples: $n}) RETURN d.id AS id",
        {"id": "leaves", "name": "leaves", "n": 3200},
    )
    assert rows == [{"id": "leaves"}] and store.node(D, "leaves")["n_samples"] == 3200


def test_query_write_is_refused_or_round_trips_through_rdf(store: GraphStore, tmp_path: Path) -> None:
    uri = store.uri
    store.close()
    bad = kgraft("query", "--write", "CREATE (d:Dataset {id: $id})", "-p", "id=nameless", store=uri)
    assert_clean_failure(bad, "kg:DatasetShape")
    assert len(bad.stderr.splitlines()) == 1 and "kg:name" in bad.stderr
    create = (
        "CREATE (d:Dataset {id: $id, name: $name, n_samples: $n}) "
        "CREATE (m:Model {id: $m, name: $m}) CREATE (m)-[:TRAINED_ON {split: $split}]->(d)"
    )
    params = ["-p", "id=leaves", "-p", "name=Leaves", "-p", "n=3200", "-p", "m=leafnet", "-p", "split=train"]
    good = kgraft("query", "--write", create, *params, store=uri)
    assert good.returncode == 0, good.stderr

    exported = tmp_path / "graph.ttl"
    assert kgraft("export", "rdf", str(exported), store=uri).returncode == 0
    with open_store(uri) as s:
        assert s.node(D, "nameless") is None  # the refused write left nothing behind
        s.clear()
    imported = kgraft("import", "rdf", str(exported), store=uri)
    assert imported.returncode == 0, imported.stderr
    with open_store(uri, read_only=True) as s:
        assert s.node(D, "leaves") == {"id": "leaves", "name": "Leaves", "n_samples": 3200}
        trained = s.query(
            "MATCH (m:Model)-[r:TRAINED_ON]->(d:Dataset) RETURN m.id AS m, d.id AS d, r.split AS s"
        )
        assert trained == [{"m": "leafnet", "d": "leaves", "s": "train"}]


def test_touched_reads_the_labels_a_statement_names_or_everything() -> None:
    only = touched("MERGE (d:Dataset {id: $id}) SET d.name = $name")
    assert only.labels == (D,) and only.rels == ()
    pair = touched("MATCH (m:Model), (d:Dataset) CREATE (m)-[:TRAINED_ON {split: 'x:Agent'}]->(d)")
    assert set(pair.labels) == {D, Label.MODEL} and pair.rels == (Rel.TRAINED_ON,)  # strings are not labels
    assert set(touched("MATCH (n) SET n.name = NULL").labels) == set(Label)  # a variable without a label
    assert set(touched("MATCH (:Dataset)-[r]->(:Concept) SET r.count = 1").rels) == set(Rel)
    assert touched("MATCH (d:Dataset) SET d:Model").everything
    assert touched("CALL db.labels()").everything

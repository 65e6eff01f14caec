"""Lineage and bias queries: the same answers on LadybugDB and Neo4j, through the API and the CLI."""

from __future__ import annotations

import json
import subprocess
import time

import pytest

from kg import GraphStore, open_store
from kg.errors import InvalidRecord
from kg.lineage import ancestors, biases_reaching, descendants, models_downstream_of
from ontology.vocab import Label
from tests.cli import assert_clean_failure, kgraft
from tests.lineage_fixture import CHAIN, lineage_batch

D, M = Label.DATASET, Label.MODEL


@pytest.fixture
def loaded(store: GraphStore) -> GraphStore:
    store.apply(lineage_batch())
    return store


def test_ancestors_of_finetuned_model(loaded: GraphStore) -> None:
    reach = ancestors(loaded, M, "cnn-tuned", depth=10)
    found = {(r.id, r.distance) for r in reach}
    assert ("cnn-base", 1) in found and ("digits", 1) in found
    assert ("fmnist-imbalanced", 2) in found and ("fmnist", 7) in found
    deepest = next(r for r in reach if r.id == "fmnist")
    assert [s.rel for s in deepest.path] == ["FINETUNED_FROM", "TRAINED_ON"] + ["DERIVED_FROM"] * 5
    assert [s.how for s in deepest.path][2:] == ["imbalance", "subset", "noise", "blur", "rotate"]
    assert deepest.path_text("cnn-tuned").startswith("cnn-tuned -FINETUNED_FROM-> cnn-base -TRAINED_ON->")


def test_depth_bounds_the_answer(loaded: GraphStore) -> None:
    assert {r.id for r in ancestors(loaded, M, "cnn-tuned", depth=2)} == {
        "cnn-base",
        "digits",
        "fmnist-imbalanced",
    }
    with pytest.raises(InvalidRecord):
        ancestors(loaded, M, "cnn-tuned", depth=0)


def test_descendants_and_models_downstream(loaded: GraphStore) -> None:
    down = descendants(loaded, D, "fmnist", depth=10)
    assert {r.id for r in down} >= {name for name, _ in CHAIN[1:]} | {"cnn-base", "cnn-tuned"}
    models = models_downstream_of(loaded, "fmnist-rot")
    assert [(m.id, m.distance) for m in models] == [("cnn-base", 5), ("cnn-tuned", 6)]
    assert models_downstream_of(loaded, "fmnist-gray-inverted") == []


def test_biases_propagate_along_lineage(loaded: GraphStore) -> None:
    reach = {r.id: r for r in biases_reaching(loaded, M, "cnn-tuned")}
    assert set(reach) == {"bias-label-noise", "bias-imbalance", "bias-writers"}
    assert reach["bias-imbalance"].properties["severity"] == "high"
    assert [s.id for s in reach["bias-imbalance"].path] == ["cnn-base", "fmnist-imbalanced", "bias-imbalance"]
    assert reach["bias-label-noise"].path[-2].id == "fmnist"
    assert {r.id for r in biases_reaching(loaded, D, "fmnist-rot")} == {"bias-label-noise"}
    assert biases_reaching(loaded, D, "tricky")[0].id == "bias-writers"


def test_both_stores_agree(tmp_path, neo4j_uri) -> None:
    answers = []
    for uri in (f"embedded:{tmp_path / 'g.lbug'}", neo4j_uri):
        with open_store(uri) as s:
            s.execute("MATCH (n) DETACH DELETE n")
            s.apply(lineage_batch())
            answers.append(
                (
                    [(r.id, r.distance, r.path) for r in ancestors(s, M, "cnn-tuned")],
                    [(r.id, r.path) for r in biases_reaching(s, M, "cnn-tuned")],
                    [(r.id, r.path) for r in descendants(s, D, "fmnist")],
                )
            )
            s.execute("MATCH (n) DETACH DELETE n")
    assert answers[0] == answers[1]


# -- the command line ----------------------------------------------------------------------------


def test_cli_lineage_and_bias(loaded: GraphStore) -> None:
    uri = loaded.uri
    loaded.close()
    table = kgraft("lineage", "cnn-tuned", store=uri)
    assert table.returncode == 0, table.stderr
    assert "fmnist-imbalanced" in table.stdout and "DERIVED_FROM(imbalance)" in table.stdout
    as_json = json.loads(kgraft("lineage", "fmnist-rot", "--down", "--format", "json", store=uri).stdout)
    assert {r["id"] for r in as_json["results"]} >= {"cnn-base", "cnn-tuned", "fmnist-imbalanced"}
    dot = kgraft("bias", "cnn-tuned", "--format", "dot", store=uri).stdout
    assert dot.startswith("digraph") and '"Bias:bias-imbalance"' in dot
    check = subprocess.run(["dot", "-Tsvg"], input=dot, capture_output=True, text=True, check=False)
    assert check.returncode == 0, check.stderr
    bias_table = kgraft("bias", "cnn-tuned", store=uri)
    assert "class imbalance" in bias_table.stdout and "label noise" in bias_table.stdout


def test_cli_query_variable_length_lineage(loaded: GraphStore) -> None:
    uri = loaded.uri
    loaded.close()
    cypher = "MATCH (d:Dataset {id: $id})-[:DERIVED_FROM*1..10]->(a:Dataset) RETURN a.id AS id ORDER BY id"
    proc = kgraft("query", cypher, "--param", "id=fmnist-gray-inverted", "--json", store=uri)
    assert proc.returncode == 0, proc.stderr
    assert [r["id"] for r in json.loads(proc.stdout)] == sorted(name for name, _ in CHAIN[:-1])


def test_cli_bad_input(loaded: GraphStore) -> None:
    uri = loaded.uri
    loaded.close()
    assert_clean_failure(kgraft("query", "MATCH (n:Dataset RETURN n", store=uri), "refused the query")
    write = kgraft("query", "CREATE (n:Dataset {id: $id})", "-p", "id=x", store=uri)
    assert_clean_failure(write, "--write")
    assert_clean_failure(kgraft("lineage", "no-such-thing", store=uri), "no dataset or model named")
    assert_clean_failure(kgraft("lineage", "fmnist", "--depth", "99", store=uri), "depth")
    ok = kgraft("query", "CREATE (n:Dataset {id: $id, name: $id})", "-p", "id=x", "--write", store=uri)
    assert ok.returncode == 0, ok.stderr
    count = kgraft("query", "MATCH (n:Dataset) RETURN count(n) AS c", "--json", store=uri)
    assert json.loads(count.stdout) == [{"c": 10}]


def test_cli_unreachable_and_wrong_credentials(neo4j_uri) -> None:
    start = time.monotonic()
    proc = kgraft("lineage", "x", store="bolt://127.0.0.1:1")
    assert time.monotonic() - start < 5 + 3  # 5 s connection timeout plus interpreter start-up
    assert_clean_failure(proc, "cannot")
    proc = kgraft("lineage", "x", store=neo4j_uri, env={"NEO4J_PASSWORD": "wrong-password"})
    assert_clean_failure(proc, "credentials")


def test_cli_locked_embedded_file(tmp_path) -> None:
    uri = f"embedded:{tmp_path / 'g.lbug'}"
    holder = open_store(uri)  # this process holds the write lock
    try:
        proc = kgraft("query", "CREATE (n:Dataset {id: $id})", "-p", "id=x", "--write", store=uri)
        assert_clean_failure(proc, "locked by another")
    finally:
        holder.close()
    missing = kgraft("query", "MATCH (n) RETURN n", store=f"embedded:{tmp_path / 'nope.lbug'}")
    assert_clean_failure(missing, "kgraft init")

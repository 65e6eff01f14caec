"""Registering real datasets: profile, lineage, biases, concepts and versions, on both stores."""

from __future__ import annotations

import json

import pytest

from kg import GraphStore
from kg.errors import InvalidRecord
from kg.lineage import ancestors, biases_reaching
from kg.wordnet import WordNet
from ontology.vocab import Label
from tests.cli import assert_clean_failure, kgraft
from transfer.data.derive import derive, describe_bias
from transfer.data.sources import load_dataset
from transfer.register import materialise, parse_bias, register_dataset


@pytest.fixture(scope="module")
def digits():
    return load_dataset("digits")


@pytest.fixture(scope="module")
def wordnet() -> WordNet:
    return WordNet.load()


def test_profile_is_recorded(store: GraphStore, digits, wordnet) -> None:
    reg = register_dataset(
        store,
        digits,
        domain="handwriting",
        agent="Ada",
        wordnet=wordnet,
        concept_hint="digit.n.01",
        biases=[parse_bias("sampling: 43 writers")],
    )
    node = store.node(Label.DATASET, reg.id)
    assert node["n_samples"] == 1797 and node["n_classes"] == 10
    assert sum(node["split_counts"].values()) == 1797
    assert node["class_counts"]["0"] == 178 and node["image_size"] == [8, 8] and node["channels"] == 1
    assert node["source"] == "digits" and len(node["checksum"]) == 64
    rows = store.query(
        "MATCH (d:Dataset {id: $id})-[h:HAS_CLASS]->(c:Concept) RETURN h.label AS label, c.name AS synset "
        "ORDER BY label",
        {"id": reg.id},
    )
    assert rows[0] == {"label": "0", "synset": "zero.n.02"}
    domain = store.query(
        "MATCH (:Dataset {id: $id})-[:IN_DOMAIN]->(d:Domain) RETURN d.name AS n", {"id": reg.id}
    )
    assert domain == [{"n": "handwriting"}]
    assert [b.properties["kind"] for b in biases_reaching(store, Label.DATASET, reg.id)] == ["sampling"]


def test_derived_imbalanced_variant_has_lineage_and_bias(store: GraphStore, digits) -> None:
    register_dataset(store, digits)
    variant = derive(digits, "imbalance", {"ratio": 5}, name="digits-imbalanced")
    bias = describe_bias(digits, variant)
    bias.pop("ratio")
    reg = register_dataset(store, variant, derived_from="digits", biases=[bias])
    (parent,) = ancestors(store, Label.DATASET, reg.id)
    assert parent.id == "digits" and parent.path[0].how == "imbalance"
    activity = store.query(
        "MATCH (:Dataset {id: $id})-[:GENERATED_BY]->(a:Activity)-[:USED]->(p:Dataset) "
        "RETURN a.kind AS kind, p.id AS parent",
        {"id": reg.id},
    )
    assert activity == [{"kind": "preprocessing", "parent": "digits"}]
    (found,) = biases_reaching(store, Label.DATASET, reg.id)
    assert found.properties["kind"] == "class-imbalance" and found.properties["source"] == "measured"
    rebuilt = materialise(store, reg.id)  # the recipe reproduces the recorded images exactly
    assert rebuilt.labels.tolist() == variant.labels.tolist()


def test_changed_content_needs_new_version(store: GraphStore, digits) -> None:
    register_dataset(store, digits)
    again = register_dataset(store, digits)  # same content: an update, not an error
    assert again.id == "digits" and not again.created
    changed = derive(digits, "invert", {}, name="digits")
    with pytest.raises(InvalidRecord, match="--new-version"):
        register_dataset(store, changed)
    assert store.count(Label.DATASET) == 1
    v2 = register_dataset(store, changed, new_version=True)
    assert v2.id == "digits@v2"
    assert [r.id for r in ancestors(store, Label.DATASET, v2.id)] == ["digits"]


def test_cli_dataset_add_derive_lineage(tmp_path) -> None:
    uri = f"embedded:{tmp_path / 'g.lbug'}"
    add = kgraft(
        "dataset",
        "add",
        "digits",
        "--domain",
        "handwriting",
        "--bias",
        "sampling: 43 writers",
        "--agent",
        "Ada",
        "--hint",
        "digit.n.01",
        store=uri,
    )
    assert add.returncode == 0, add.stderr
    assert "1,797 images" in add.stdout
    derived = kgraft(
        "dataset", "derive", "digits", "imbalance", "-p", "ratio=8", "--name", "digits-skewed", store=uri
    )
    assert derived.returncode == 0, derived.stderr
    lineage = kgraft("lineage", "digits-skewed", "--format", "json", store=uri)
    (parent,) = json.loads(lineage.stdout)["results"]
    assert parent["id"] == "digits" and parent["path"][0]["how"] == "imbalance"
    bias = kgraft("bias", "digits-skewed", "--format", "json", store=uri)
    kinds = sorted(r["properties"]["kind"] for r in json.loads(bias.stdout)["results"])
    assert kinds == ["class-imbalance", "sampling"]
    assert_clean_failure(kgraft("dataset", "add", str(tmp_path / "empty"), store=uri), "unknown dataset")
    (tmp_path / "empty").mkdir()
    assert_clean_failure(kgraft("dataset", "add", str(tmp_path / "empty"), store=uri), "no images")
    assert_clean_failure(
        kgraft("dataset", "add", "digits", "--bias", "no colon", store=uri), "kind: description"
    )
    assert_clean_failure(kgraft("dataset", "derive", "digits", "warp", store=uri), "unknown derivation")

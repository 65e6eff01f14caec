"""The zoo in the graph: every model with its pretraining data, that data's lineage and biases."""

from __future__ import annotations

import pytest

from kg import GraphStore, open_store
from kg.lineage import biases_reaching
from ontology.vocab import Label
from tests.cli import assert_clean_failure, kgraft
from transfer.data.derive import derive, describe_bias
from transfer.data.sources import load_dataset
from transfer.register import register_dataset
from transfer.zoo.loading import load_model
from transfer.zoo.record import ModelRecord, ZooError
from transfer.zoo.registration import build_and_register_demo_zoo, register_ccexam

MODELS_WITH_LINEAGE = (
    "MATCH (m:Model)-[:TRAINED_ON]->(d:Dataset) "
    "OPTIONAL MATCH (d)-[:DERIVED_FROM*0..10]->(a:Dataset) OPTIONAL MATCH (a)-[:HAS_BIAS]->(b:Bias) "
    "RETURN m.id AS model, d.id AS data, collect(DISTINCT a.id) AS lineage, "
    "collect(DISTINCT b.kind) AS biases "
    "ORDER BY model"
)


@pytest.fixture(scope="module")
def digits_variants():
    digits = load_dataset("digits")
    skewed = derive(digits, "imbalance", {"ratio": 6}, name="digits-skewed")
    return digits, skewed


def test_zoo_models_with_lineage_and_biases(store: GraphStore, digits_variants, tmp_path_factory) -> None:
    digits, skewed = digits_variants
    register_dataset(store, digits, biases=[{"kind": "sampling", "description": "43 writers"}])
    bias = describe_bias(digits, skewed)
    bias.pop("ratio")
    register_dataset(store, skewed, derived_from="digits", biases=[bias])
    out = tmp_path_factory.mktemp("zoo")
    records = build_and_register_demo_zoo(store, {"digits-skewed": skewed}, out, epochs=1)
    records += register_ccexam(store)
    rows = {r["model"]: r for r in store.query(MODELS_WITH_LINEAGE)}
    assert len(rows) == 4
    demo_id = records[0].id
    assert rows[demo_id]["data"] == "digits-skewed"
    assert sorted(rows[demo_id]["lineage"]) == ["digits", "digits-skewed"]
    assert sorted(rows[demo_id]["biases"]) == ["class-imbalance", "sampling"]
    assert {rows[r.id]["data"] for r in records[1:]} == {"mnist", "usps", "svhn"}
    # the Model node holds the whole record: it rebuilds the model and loads its weights
    node = store.node(Label.MODEL, demo_id)
    record = ModelRecord.from_properties(node)
    assert record.mean == records[0].mean and record.layer_groups == records[0].layer_groups
    load_model(record)
    kinds = {b.properties["kind"] for b in biases_reaching(store, Label.MODEL, demo_id)}
    assert kinds == {"class-imbalance", "sampling"}
    pretraining = store.query(
        "MATCH (m:Model {id: $id})-[:GENERATED_BY]->(a:Activity)-[:USED]->(d:Dataset) "
        "RETURN a.kind AS kind, a.metrics AS metrics, d.id AS data",
        {"id": demo_id},
    )
    assert pretraining[0]["kind"] == "pretraining" and pretraining[0]["data"] == "digits-skewed"
    assert '"test_accuracy"' in pretraining[0]["metrics"]


def test_cli_model_add(tmp_path) -> None:
    uri = f"embedded:{tmp_path / 'g.lbug'}"
    ok = kgraft("model", "add", "ccexam:usps", store=uri)
    assert ok.returncode == 0, ok.stderr
    assert "ccexam" in ok.stdout and "4 layer groups" in ok.stdout
    # A torchvision model is recorded from its real weight enum without its weights (offline here);
    # loading the weights later says where they are expected.
    tv = kgraft("model", "add", "torchvision:resnet18:IMAGENET1K_V1", store=uri)
    assert tv.returncode == 0, tv.stderr
    assert "11,689,512 params" in tv.stdout and "(3, 224, 224)" in tv.stdout
    with open_store(uri, read_only=True) as s:
        record = ModelRecord.from_properties(s.node(Label.MODEL, "torchvision.resnet18.IMAGENET1K_V1"))
    assert record.mean == (0.485, 0.456, 0.406)
    with pytest.raises(ZooError, match="cache"):
        load_model(record)
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"not a checkpoint")
    assert_clean_failure(
        kgraft(
            "model",
            "add",
            str(bad),
            "--architecture",
            "smallcnn",
            "--input-size",
            "1,28,28",
            "--mean",
            "0.5",
            "--std",
            "0.5",
            store=uri,
        ),
        "",
    )
    assert_clean_failure(kgraft("model", "add", "ccexam:cifar", store=uri), "ccexam has no model")

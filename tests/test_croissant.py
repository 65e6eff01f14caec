"""Croissant import (kg.croissant) on the real MLCommons examples, applied to LadybugDB and Neo4j.

The examples live in the sibling ``shared/fixtures/croissant`` folder (CI clones the repository next
to it); facts checked by hand below were read from those files.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from kg import GraphBatch, GraphStore
from kg.croissant import import_croissant, slug
from kg.errors import InvalidRecord
from kg.rdf import export_graph, validate
from ontology.vocab import Label

FIXTURES = Path(__file__).resolve().parents[2] / "shared/fixtures/croissant"
FILES = sorted(FIXTURES.glob("*.json"))
D, G, B, C = Label.DATASET, Label.AGENT, Label.BIAS, Label.CONCEPT

# (datasets, agents, biases, concepts) each example produces
EXPECTED = {
    "bigcode-the-stack.json": (1, 2, 7, 0),
    "coco2014-mini.json": (1, 0, 0, 0),
    "fashion-mnist.json": (1, 0, 0, 0),
    "huggingface-mnist.json": (1, 0, 0, 0),
    "movielens.json": (1, 0, 0, 0),
    "pass-mini.json": (1, 0, 0, 0),
    "titanic.json": (1, 0, 0, 0),
}
FASHION_CLASSES = [
    "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
]  # fmt: skip


def sizes(batch: GraphBatch) -> tuple[int, ...]:
    return tuple(len(batch.nodes.get(label, {})) for label in (D, G, B, C))


def edges(store: GraphStore, rel: str, dst: Label, dataset: str, cols: str = "y.id AS id") -> list[dict]:
    return store.query(
        f"MATCH (x:Dataset)-[r:{rel}]->(y:{dst}) WHERE x.id = $id RETURN {cols} ORDER BY id", {"id": dataset}
    )


@pytest.mark.parametrize("path", FILES, ids=[p.name for p in FILES])
def test_every_example_imports_and_reimport_is_idempotent(store: GraphStore, path: Path) -> None:
    batch = import_croissant(path)
    assert sizes(batch) == EXPECTED.get(path.name, sizes(batch))
    first = store.apply(batch)
    assert first.nodes_created == batch.node_count() and first.edges_created == batch.edge_count()
    (dataset_id,) = (i for i, row in batch.nodes[D].items() if row.get("source") == f"croissant:{path.name}")
    assert store.node(D, dataset_id)["name"]
    again = store.apply(import_croissant(path))
    assert (again.nodes_created, again.edges_created) == (0, 0)


def test_fashion_mnist_facts(store: GraphStore) -> None:
    store.apply(import_croissant(FIXTURES / "fashion-mnist.json"))
    node = store.node(D, "fashion-mnist")
    assert node["name"] == "fashion_mnist"
    assert node["license"] == "mit"
    assert node["url"] == "https://huggingface.co/datasets/fashion_mnist"
    assert node["citation"].startswith("@article{DBLP:journals/corr/abs-1708-07747,")
    assert node["description"].startswith("Fashion-MNIST is a dataset of Zalando's article images")
    assert node["extra"] == {"conformsTo": ["http://mlcommons.org/croissant/1.0"]}
    # the file has no rai: fields and no enumerated class labels (its labels are integers in parquet)
    assert store.count(B) == 0 and store.count(C) == 0


def test_bigcode_rai_fields_become_biases(store: GraphStore) -> None:
    store.apply(import_croissant(FIXTURES / "bigcode-the-stack.json"))
    rows = edges(store, "HAS_BIAS", B, "bigcode-the-stack", "y.id AS id, y.kind AS kind, y.source AS source")
    kinds = [r["kind"] for r in rows]
    assert sorted(kinds) == ["data-bias"] * 3 + ["data-limitation"] * 3 + ["personal-sensitive-information"]
    assert {r["source"] for r in rows} == {"croissant"}
    pii = next(b for b in store.nodes(B) if b["kind"] == "personal-sensitive-information")
    assert pii["severity"] == "unknown"
    assert pii["description"].startswith(
        "The released dataset may contain sensitive information such as emails"
    )
    agents = edges(
        store, "ATTRIBUTED_TO", G, "bigcode-the-stack", "y.id AS id, y.kind AS kind, r.role AS role"
    )
    assert agents == [
        {"id": "harm-de-vries", "kind": "person", "role": "creator"},
        {"id": "leandro-von-werra", "kind": "person", "role": "creator"},
    ]
    extra = store.node(D, "bigcode-the-stack")["extra"]
    assert extra["keywords"] == ["crowdsourced", "expert-generated"]
    assert extra["rai"]["dataCollectionType"] == ["Web Scraping", "Others"]
    assert "dataBiases" not in extra["rai"]
    assert validate(export_graph(store)) == []


def test_titanic_and_coco_facts() -> None:
    titanic = import_croissant(FIXTURES / "titanic.json").nodes[D]["titanic"]
    assert (titanic["version"], titanic["license"], titanic["url"]) == (
        "1.0.0",
        "afl-3.0",
        "https://www.openml.org/d/40945",
    )
    coco = import_croissant(FIXTURES / "coco2014-mini.json").nodes[D]["mini-coco"]
    # "None" is how the exporter wrote missing values: absent, not the text None
    assert "citation" not in coco and "url" not in coco and coco["license"] == "cc-by-4.0"


def derived_fashion(tmp_path: Path) -> Path:
    """fashion-mnist.json made into a Croissant 1.1 file with lineage, a publisher and inline class labels."""
    doc = json.loads((FIXTURES / "fashion-mnist.json").read_text())
    doc["@context"]["prov"] = "http://www.w3.org/ns/prov#"
    doc["conformsTo"] = "http://mlcommons.org/croissant/1.1"
    doc["name"] = "Fashion-MNIST small"
    doc["isBasedOn"] = [{"@type": "sc:Dataset", "name": "fashion_mnist", "url": doc["url"]}]
    doc["prov:wasDerivedFrom"] = {"@id": "https://example.org/datasets/zalando-catalogue"}
    doc["publisher"] = {
        "@type": "sc:Organization",
        "name": "Zalando Research",
        "url": "https://research.zalando.com",
    }
    doc["license"] = {"@type": "sc:CreativeWork", "name": "MIT", "url": "https://opensource.org/licenses/MIT"}
    doc["rai:dataBiases"] = "Only product photos on a white background."
    doc["datePublished"] = "2017-08-25"
    doc["recordSet"].insert(
        0,
        {
            "@type": "cr:RecordSet",
            "@id": "classes",
            "name": "classes",
            "dataType": "sc:Enumeration",
            "key": {"@id": "classes/index"},
            "field": [
                {
                    "@type": "cr:Field",
                    "@id": "classes/index",
                    "name": "classes/index",
                    "dataType": "sc:Integer",
                },
                {"@type": "cr:Field", "@id": "classes/label", "name": "classes/label", "dataType": "sc:Text"},
            ],
            "data": [{"classes/index": i, "classes/label": c} for i, c in enumerate(FASHION_CLASSES)],
        },
    )
    label_field = doc["recordSet"][1]["field"][1]
    label_field["references"] = {"field": {"@id": "classes/index"}}
    path = tmp_path / "fashion-small.json"
    path.write_text(json.dumps(doc))
    return path


def test_lineage_labels_and_publisher(store: GraphStore, tmp_path: Path) -> None:
    path = derived_fashion(tmp_path)
    store.apply(import_croissant(FIXTURES / "fashion-mnist.json"))
    store.apply(import_croissant(path, store=store))
    assert validate(export_graph(store)) == []  # imported records satisfy the shapes
    parents = edges(store, "DERIVED_FROM", D, "fashion-mnist-small", "y.id AS id, r.how AS how")
    assert parents == [
        {"id": "example-org-datasets-zalando-catalogue", "how": "croissant:wasDerivedFrom"},
        {"id": "fashion-mnist", "how": "croissant:isBasedOn"},
    ]
    assert (
        store.node(D, "fashion-mnist")["source"] == "croissant:fashion-mnist.json"
    )  # known: not overwritten
    assert store.node(D, "example-org-datasets-zalando-catalogue")["url"].startswith("https://example.org/")
    node = store.node(D, "fashion-mnist-small")
    assert node["license"] == "https://opensource.org/licenses/MIT"
    assert node["extra"]["datePublished"] == "2017-08-25"
    classes = edges(
        store, "HAS_CLASS", C, "fashion-mnist-small", "y.id AS id, r.label AS label, r.class_index AS i"
    )
    by_index = sorted(classes, key=lambda r: r["i"])
    assert [r["label"] for r in by_index] == FASHION_CLASSES
    assert (
        by_index[0]["id"] == "label:t-shirt-top"
        and store.node(C, "label:ankle-boot")["source"] == "croissant"
    )
    publisher = edges(
        store, "ATTRIBUTED_TO", G, "fashion-mnist-small", "y.id AS id, y.kind AS kind, r.role AS role"
    )
    assert publisher == [{"id": "zalando-research", "kind": "organisation", "role": "publisher"}]
    (bias,) = edges(store, "HAS_BIAS", B, "fashion-mnist-small", "y.id AS id, y.kind AS kind")
    assert bias["kind"] == "data-bias" and bias["id"].startswith("croissant:fashion-mnist-small:data-bias:")


def test_feature_enumerations_and_splits_are_not_classes(tmp_path: Path) -> None:
    doc = json.loads((FIXTURES / "titanic.json").read_text())
    doc["recordSet"][0]["data"] = [
        {"genders/label": "male"},
        {"genders/label": "female"},
    ]  # used by passengers/gender
    path = tmp_path / "titanic-inline.json"
    path.write_text(json.dumps(doc))
    assert C not in import_croissant(path).nodes
    assert C not in import_croissant(FIXTURES / "huggingface-mnist.json").nodes  # cr:Split rows


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", r"empty\.json is empty"),
        ('{"@type": "sc:Dataset", "name": ', r"empty\.json is not JSON"),
        ('[1, 2, 3]', r"has no @type sc:Dataset"),
        ('{"@context": {"@vocab": "https://schema.org/"}, "@type": "Person"}', r"no @type sc:Dataset"),
        (
            '{"@context": {"@vocab": "https://schema.org/"}, "@type": "Dataset", "name": "plain"}',
            r"is a schema.org dataset but not Croissant metadata",
        ),
        (
            '{"@context": {"@vocab": "https://schema.org/", "cr": "http://mlcommons.org/croissant/"},'
            ' "@type": "sc:Dataset", "description": "no name"}',
            r"is a Croissant dataset without a name",
        ),
    ],
)  # fmt: skip
def test_bad_files_are_refused(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "empty.json"
    path.write_text(text)
    with pytest.raises(InvalidRecord, match=message):
        import_croissant(path)


def test_slug() -> None:
    assert slug("fashion_mnist") == "fashion-mnist"
    assert slug("  Mini-COCO (2014)!") == "mini-coco-2014"

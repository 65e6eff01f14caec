"""Croissant import (kg.croissant), applied to LadybugDB and Neo4j.

The core tests read the small files in ``tests/fixtures/croissant``, written for these tests: a
Croissant 1.0 image dataset with RAI fields, creators and a publisher; a 1.1 dataset derived from it
(``isBasedOn`` and ``prov:wasDerivedFrom``, a licence object, an ``isEnumeration`` record set keyed by
short field names, a split list, an ``http://schema.org`` context); and an ``@graph``-wrapped table
with the older ``citation``, ``"None"`` values and a feature enumeration. The published MLCommons
examples in the shared corpus are imported too where it is present (the ``shared_corpus`` tests).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from kg import GraphBatch, GraphStore
from kg.croissant import import_croissant
from kg.errors import InvalidRecord
from kg.rdf import export_graph, validate
from ontology.vocab import Label
from tests.corpus import CROISSANT, SHARED_CROISSANT

FILES = sorted(CROISSANT.glob("*.json"))
D, G, B, C = Label.DATASET, Label.AGENT, Label.BIAS, Label.CONCEPT

# (datasets, agents, biases, concepts) each fixture produces
EXPECTED = {
    "leafscan-1.0.json": (1, 3, 3, 4),
    "leafscan-field-1.1.json": (3, 1, 2, 3),  # two parents: isBasedOn and prov:wasDerivedFrom
    "harbour-sensors.json": (1, 0, 0, 0),
}
# the same for the published examples in the shared corpus
EXPECTED_SHARED = {
    "bigcode-the-stack.json": (1, 2, 7, 0),
    "coco2014-mini.json": (1, 0, 0, 0),
    "fashion-mnist.json": (1, 0, 0, 0),
    "huggingface-mnist.json": (1, 0, 0, 0),
    "movielens.json": (1, 0, 0, 0),
    "pass-mini.json": (1, 0, 0, 0),
    "titanic.json": (1, 0, 0, 0),
}
LEAF_CONDITIONS = ["healthy", "leaf rust", "early blight", "powdery mildew"]


def sizes(batch: GraphBatch) -> tuple[int, ...]:
    return tuple(len(batch.nodes.get(label, {})) for label in (D, G, B, C))


def edges(store: GraphStore, rel: str, dst: Label, dataset: str, cols: str = "y.id AS id") -> list[dict]:
    return store.query(
        f"MATCH (x:Dataset)-[r:{rel}]->(y:{dst}) WHERE x.id = $id RETURN {cols} ORDER BY id", {"id": dataset}
    )


def imports_idempotently(store: GraphStore, path: Path, expected: tuple[int, ...] | None) -> None:
    batch = import_croissant(path)
    assert expected is None or sizes(batch) == expected
    first = store.apply(batch)
    assert first.nodes_created == batch.node_count() and first.edges_created == batch.edge_count()
    (dataset_id,) = (i for i, row in batch.nodes[D].items() if row.get("source") == f"croissant:{path.name}")
    assert store.node(D, dataset_id)["name"]
    again = store.apply(import_croissant(path))
    assert (again.nodes_created, again.edges_created) == (0, 0)


def test_every_fixture_is_expected() -> None:
    assert sorted(EXPECTED) == [p.name for p in FILES]


@pytest.mark.parametrize("path", FILES, ids=[p.name for p in FILES])
def test_every_fixture_imports_and_reimport_is_idempotent(store: GraphStore, path: Path) -> None:
    imports_idempotently(store, path, EXPECTED[path.name])


def test_croissant_1_0_rai_fields_agents_and_classes(store: GraphStore) -> None:
    store.apply(import_croissant(CROISSANT / "leafscan-1.0.json"))
    node = store.node(D, "leafscan-mini")
    assert (node["name"], node["license"], node["version"]) == ("LeafScan_Mini", "cc-by-4.0", "2.1.0")
    assert node["url"] == "https://example.org/datasets/leafscan-mini"
    assert node["citation"].startswith("@misc{leafscan2026,")  # cr:citeAs
    assert node["source"] == "croissant:leafscan-1.0.json"
    extra = node["extra"]
    assert extra["conformsTo"] == ["http://mlcommons.org/croissant/1.0"]
    assert extra["keywords"] == ["agriculture", "plant disease"] and extra["datePublished"] == "2026-03-02"
    # RAI fields that are not biases ride along under extra.rai; the bias fields become Bias nodes
    assert extra["rai"] == {
        "dataCollection": "Photographed by two agronomists with the same phone camera during the 2025 "
        "growing season.",
        "dataCollectionType": ["Manual Human Curation", "Direct measurement"],
    }

    rows = edges(store, "HAS_BIAS", B, "leafscan-mini", "y.id AS id, y.kind AS kind, y.source AS source")
    assert sorted(r["kind"] for r in rows) == ["annotator-demographics", "data-bias", "data-bias"]
    assert {r["source"] for r in rows} == {"croissant"}
    assert all(r["id"].startswith(f"croissant:leafscan-mini:{r['kind']}:") for r in rows)
    sunny = next(b for b in store.nodes(B) if "sunny" in b["description"])
    assert sunny["severity"] == "unknown"
    assert sunny["name"] == "data-bias: Almost every photograph was taken in daylight on a sunny day."

    agents = edges(store, "ATTRIBUTED_TO", G, "leafscan-mini", "y.id AS id, y.kind AS kind, r.role AS role")
    assert agents == [
        {"id": "agent:ada-okafor", "kind": "person", "role": "creator"},
        {"id": "agent:bo-lindqvist", "kind": "person", "role": "creator"},
        {"id": "agent:field-robotics-lab", "kind": "organisation", "role": "publisher"},
    ]
    assert "email" not in store.node(G, "agent:ada-okafor") and "ada@example.org" not in str(
        store.node(G, "agent:ada-okafor")
    )

    classes = edges(
        store, "HAS_CLASS", C, "leafscan-mini", "y.id AS id, r.label AS label, r.class_index AS i"
    )
    assert [r["label"] for r in sorted(classes, key=lambda r: r["i"])] == LEAF_CONDITIONS
    assert store.node(C, "label:leaf-rust")["source"] == "croissant"
    assert validate(export_graph(store)) == []


def test_croissant_1_1_lineage_licence_object_and_enumeration(store: GraphStore) -> None:
    store.apply(import_croissant(CROISSANT / "leafscan-1.0.json"))
    store.apply(import_croissant(CROISSANT / "leafscan-field-1.1.json", store=store))
    assert validate(export_graph(store)) == []  # imported records satisfy the shapes

    parents = edges(store, "DERIVED_FROM", D, "leafscan-field", "y.id AS id, r.how AS how")
    assert parents == [
        {"id": "example-org-archive-greenhouse-survey-2024", "how": "croissant:wasDerivedFrom"},
        {"id": "leafscan-mini", "how": "croissant:isBasedOn"},
    ]
    known = store.node(D, "leafscan-mini")  # already held: linked, not overwritten
    assert known["source"] == "croissant:leafscan-1.0.json" and known["version"] == "2.1.0"
    by_url = store.node(D, "example-org-archive-greenhouse-survey-2024")
    assert by_url["url"] == by_url["name"] == "https://example.org/archive/greenhouse-survey-2024"

    node = store.node(D, "leafscan-field")
    assert node["license"] == "https://creativecommons.org/licenses/by-sa/4.0/"  # a CreativeWork: its url
    assert "citation" not in node or node["citation"] is None  # citeAs "None" is absent, not the text
    extra = node["extra"]
    assert extra["conformsTo"] == [
        "http://mlcommons.org/croissant/1.1",
        "http://mlcommons.org/croissant/RAI/1.0",
    ]
    assert extra["dateModified"] == "2026-05-17"
    assert extra["rai"] == {
        "dataUseCases": "Benchmarking robustness of leaf disease classifiers to outdoor light."
    }

    biases = edges(store, "HAS_BIAS", B, "leafscan-field", "y.kind AS id, y.description AS text")
    assert [b["id"] for b in biases] == ["data-limitation", "personal-sensitive-information"]
    assert biases[0]["text"].startswith("Only three of LeafScan's four conditions")  # an object's description
    assert biases[1]["text"] == "Some photographs show the hands of the photographer; no faces."
    (publisher,) = edges(store, "ATTRIBUTED_TO", G, "leafscan-field", "y.id AS id, r.role AS role")
    assert publisher == {"id": "agent:field-robotics-lab", "role": "creator"}  # one Agent for both datasets

    # isEnumeration, the label field typed sc:name, rows keyed by short names; the split list is skipped
    classes = edges(
        store, "HAS_CLASS", C, "leafscan-field", "y.id AS id, r.label AS label, r.class_index AS i"
    )
    assert [(r["id"], r["i"]) for r in classes] == [
        ("label:healthy", 0), ("label:leaf-rust", 1), ("label:powdery-mildew", 2),
    ]  # fmt: skip
    assert store.count(C) == 4  # the conditions both datasets name are the same Concept nodes


def test_parents_of_a_dataset_imported_alone_get_their_name_and_url() -> None:
    batch = import_croissant(CROISSANT / "leafscan-field-1.1.json")
    assert batch.nodes[D]["leafscan-mini"] == {
        "id": "leafscan-mini",
        "name": "LeafScan_Mini",
        "url": "https://example.org/datasets/leafscan-mini",
    }


def test_graph_wrapper_older_citation_none_values_and_feature_enumerations() -> None:
    batch = import_croissant(CROISSANT / "harbour-sensors.json")  # the dataset sits in @graph
    (node,) = batch.nodes[D].values()
    assert node["id"] == "harbour-sensors-2019" and node["license"] == "odc-by"
    assert node["citation"] == "Harbour authority open data, 2019."  # sc:citation, before cr:citeAs
    assert "url" not in node and "version" not in node  # "None" is how exporters write missing values
    assert C not in batch.nodes  # vessel_types enumerates a feature (readings/vessel_type), not classes


# ----------------------------------------------------------------------------- the shared corpus


@pytest.mark.parametrize("name", sorted(EXPECTED_SHARED))
def test_every_shared_example_imports_and_reimport_is_idempotent(
    store: GraphStore, shared_corpus: Path, name: str
) -> None:
    imports_idempotently(store, SHARED_CROISSANT / name, EXPECTED_SHARED[name])


def test_every_shared_example_is_expected(shared_corpus: Path) -> None:
    assert sorted(EXPECTED_SHARED) == sorted(p.name for p in SHARED_CROISSANT.glob("*.json"))


def test_shared_fashion_mnist_facts(store: GraphStore, shared_corpus: Path) -> None:
    store.apply(import_croissant(SHARED_CROISSANT / "fashion-mnist.json"))
    node = store.node(D, "fashion-mnist")
    assert node["name"] == "fashion_mnist"
    assert node["license"] == "mit"
    assert node["url"] == "https://huggingface.co/datasets/fashion_mnist"
    assert node["citation"].startswith("@article{DBLP:journals/corr/abs-1708-07747,")
    assert node["description"].startswith("Fashion-MNIST is a dataset of Zalando's article images")
    assert node["extra"] == {"conformsTo": ["http://mlcommons.org/croissant/1.0"]}
    # the file has no rai: fields and no enumerated class labels (its labels are integers in parquet)
    assert store.count(B) == 0 and store.count(C) == 0


def test_shared_bigcode_rai_fields_become_biases(store: GraphStore, shared_corpus: Path) -> None:
    store.apply(import_croissant(SHARED_CROISSANT / "bigcode-the-stack.json"))
    rows = edges(store, "HAS_BIAS", B, "bigcode-the-stack", "y.id AS id, y.kind AS kind, y.source AS source")
    kinds = [r["kind"] for r in rows]
    assert sorted(kinds) == ["data-bias"] * 3 + ["data-limitation"] * 3 + ["personal-sensitive-information"]
    assert {r["source"] for r in rows} == {"croissant"}
    agents = edges(
        store, "ATTRIBUTED_TO", G, "bigcode-the-stack", "y.id AS id, y.kind AS kind, r.role AS role"
    )
    assert agents == [
        {"id": "agent:harm-de-vries", "kind": "person", "role": "creator"},
        {"id": "agent:leandro-von-werra", "kind": "person", "role": "creator"},
    ]
    extra = store.node(D, "bigcode-the-stack")["extra"]
    assert extra["rai"]["dataCollectionType"] == ["Web Scraping", "Others"]
    assert "dataBiases" not in extra["rai"]
    assert validate(export_graph(store)) == []


def test_shared_titanic_and_coco_facts(shared_corpus: Path) -> None:
    titanic = import_croissant(SHARED_CROISSANT / "titanic.json")
    assert C not in titanic.nodes  # genders enumerates a feature
    node = titanic.nodes[D]["titanic"]
    assert (node["version"], node["license"], node["url"]) == (
        "1.0.0",
        "afl-3.0",
        "https://www.openml.org/d/40945",
    )
    coco = import_croissant(SHARED_CROISSANT / "coco2014-mini.json").nodes[D]["mini-coco"]
    assert "citation" not in coco and "url" not in coco and coco["license"] == "cc-by-4.0"
    assert C not in import_croissant(SHARED_CROISSANT / "huggingface-mnist.json").nodes  # cr:Split rows


# ----------------------------------------------------------------------------- bad input


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

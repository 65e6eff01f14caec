"""Dataset-to-dataset similarity (kg.similarity, transfer.probe.dataset_embedding, ``kgraft dataset
similar``): concept overlap through an IS_A hierarchy, profile similarity, the embedding of real
bundled images, SIMILAR_TO in Cypher and in RDF; on both stores."""

from __future__ import annotations

import math

import pytest
from rdflib import URIRef

from kg import GraphBatch, GraphStore
from kg.errors import NotFound
from kg.rdf import KG, export_graph, import_graph, node_iri, validate
from kg.similarity import (
    CONCEPT_OVERLAP,
    PROFILE,
    Similarity,
    SimilarityError,
    concept_sets,
    read_similarities,
    record_similarities,
    similarities,
)
from ontology.vocab import Label, Rel

D, C = Label.DATASET, Label.CONCEPT

# A WordNet-like hierarchy: dog and wolf are canines, cat a feline, all three carnivores; car and
# truck are vehicles. Depths as WordNet stores them (distance from the root).
HIERARCHY = {
    "carnivore": (None, 11),
    "canine": ("carnivore", 12),
    "feline": ("carnivore", 12),
    "dog": ("canine", 13),
    "wolf": ("canine", 13),
    "cat": ("feline", 13),
    "vehicle": (None, 8),
    "car": ("vehicle", 9),
    "truck": ("vehicle", 9),
}
CLASSES = {"dogs": ["dog"], "wolves": ["wolf"], "cats": ["cat"], "cars": ["car", "truck"]}


def animals() -> GraphBatch:
    """Four datasets with classes in the hierarchy, a derived one with no classes of its own, and
    one with neither classes nor a parent."""
    b = GraphBatch()
    for concept, (parent, depth) in HIERARCHY.items():
        b.node(C, f"wn:{concept}", name=f"{concept}.n.01", depth=depth)
        if parent:
            b.edge(Rel.IS_A, (C, f"wn:{concept}"), (C, f"wn:{parent}"))
    for dataset, classes in CLASSES.items():
        b.node(D, dataset, name=dataset)
        for i, cls in enumerate(classes):
            b.edge(Rel.HAS_CLASS, (D, dataset), (C, f"wn:{cls}"), label=cls, class_index=i)
    b.node(D, "dogs-small", name="dogs-small")
    b.edge(Rel.DERIVED_FROM, (D, "dogs-small"), (D, "dogs"), how="subset")
    b.node(D, "unlabelled", name="unlabelled")
    return b


def by_other(sims: list[Similarity], method: str) -> dict[str, Similarity]:
    return {s.other_id: s for s in sims if s.method == method}


def test_concept_overlap_follows_the_hierarchy(store: GraphStore) -> None:
    store.apply(animals())
    sims = by_other(similarities(store, "dogs", [CONCEPT_OVERLAP]), CONCEPT_OVERLAP)
    # dog -> {dog, canine, carnivore}; wolf -> {wolf, canine, carnivore}: 2 of 4
    assert sims["wolves"].value == pytest.approx(2 / 4)
    assert sims["wolves"].facts["shared"] == ["canine.n.01", "carnivore.n.01"]  # most specific first
    # cat -> {cat, feline, carnivore}: carnivore only, 1 of 5
    assert sims["cats"].value == pytest.approx(1 / 5)
    assert sims["cars"].value == 0.0 and sims["cars"].facts["shared"] == []
    # the derived dataset inherits its parent's classes
    assert sims["dogs-small"].value == pytest.approx(1.0)
    assert "unlabelled" not in sims  # no concepts: no evidence, no edge
    assert "2 of 4 concepts shared: canine.n.01" in sims["wolves"].explanation()
    widened = concept_sets(store, ["cars", "dogs-small", "unlabelled"])
    assert widened == {
        "cars": {"wn:car", "wn:truck", "wn:vehicle"},
        "dogs-small": {"wn:dog", "wn:canine", "wn:carnivore"},
    }


def test_widening_stops_after_two_is_a_steps(store: GraphStore) -> None:
    b = animals()
    b.node(C, "wn:animal", name="animal.n.01", depth=6)
    b.edge(Rel.IS_A, (C, "wn:carnivore"), (C, "wn:animal"))  # three steps above dog
    store.apply(b)
    assert concept_sets(store, ["dogs"])["dogs"] == {"wn:dog", "wn:canine", "wn:carnivore"}


PROFILES = {
    # target, a near copy (a few more images), and a far dataset (RGB photos, many classes)
    "target": dict(
        modality="image",
        n_samples=2000,
        n_classes=10,
        channels=1,
        image_size=[28, 28],
        mean=[0.29],
        std=[0.35],
    ),
    "near": dict(n_samples=2200, n_classes=10, channels=1, image_size=[28, 28], mean=[0.30], std=[0.35]),
    "far": dict(
        n_samples=50000, n_classes=100, channels=3, image_size=[224, 224], mean=[0.5, 0.4, 0.4], std=[0.2] * 3
    ),
    "sizes-only": dict(n_samples=2000, n_classes=100),
    "nothing": {},
    # a GNN scorer's outcome snapshot: not an image dataset, neither listed nor in the spreads
    "snapshot": dict(modality="outcomes", n_samples=2254, n_classes=1000),
}


def test_profile_ranks_a_near_copy_above_a_far_dataset(store: GraphStore) -> None:
    b = GraphBatch()
    for name, props in PROFILES.items():
        b.node(D, name, name=name, **props)
    store.apply(b)
    sims = by_other(similarities(store, "target", [PROFILE]), PROFILE)
    assert sims["near"].value > 0.9 > 0.2 > sims["far"].value
    assert sims["near"].facts["n_features"] == 10
    assert "nothing" not in sims  # shares no feature with the target
    assert "snapshot" not in sims
    # only n_samples and n_classes shared: equal size, classes apart by their spread over 4 datasets
    logs = [math.log(v) for v in (10, 10, 100, 100)]
    sd = (sum((x - sum(logs) / 4) ** 2 for x in logs) / 4) ** 0.5
    z = (math.log(10) - math.log(100)) / sd
    assert sims["sizes-only"].facts["n_features"] == 2
    assert sims["sizes-only"].value == pytest.approx(math.exp(-0.5 * (0.0 + z * z) / 2))


def test_similar_to_is_recorded_both_ways_and_queryable(store: GraphStore) -> None:
    store.apply(animals())
    sims = similarities(store, "dogs", [CONCEPT_OVERLAP], against=["wolves", "cats"])
    assert [s.other_id for s in sims] == ["wolves", "cats"]  # best first
    assert record_similarities(store, "dogs", sims) == 2
    record_similarities(store, "dogs", sims)  # idempotent: one edge per pair, direction and method
    rows = store.query(
        "MATCH (a:Dataset)-[r:SIMILAR_TO]->(b:Dataset) WHERE b.id = $id "
        "RETURN a.id AS src, r.method AS method, r.value AS value ORDER BY src",
        {"id": "dogs"},
    )
    assert [(r["src"], r["method"]) for r in rows] == [("cats", CONCEPT_OVERLAP), ("wolves", CONCEPT_OVERLAP)]
    assert rows[1]["value"] == pytest.approx(0.5)
    table = read_similarities(store)
    assert table[("dogs", "wolves")] == table[("wolves", "dogs")] == {CONCEPT_OVERLAP: pytest.approx(0.5)}
    assert len(table) == 4
    with pytest.raises(SimilarityError, match="given to record"):
        record_similarities(store, "cats", sims)


def test_similar_to_exports_to_rdf_and_imports_back(store: GraphStore) -> None:
    store.apply(animals())
    record_similarities(store, "dogs", similarities(store, "dogs", [CONCEPT_OVERLAP], against=["wolves"]))
    g = export_graph(store)
    a, b = node_iri(D, "dogs"), node_iri(D, "wolves")
    assert (a, KG.similarTo, b) in g and (b, KG.similarTo, a) in g
    assert isinstance(a, URIRef)
    assert validate(g) == []  # the SHACL shapes accept the edges and their properties
    batch = import_graph(g)
    edges = batch.edges[(Rel.SIMILAR_TO, D, D)]
    assert {(r["src"], r["dst"], r["method"], r["value"]) for r in edges.values()} == {
        ("dogs", "wolves", CONCEPT_OVERLAP, 0.5),
        ("wolves", "dogs", CONCEPT_OVERLAP, 0.5),
    }
    store.clear()
    store.apply(batch)
    assert read_similarities(store)[("wolves", "dogs")] == {CONCEPT_OVERLAP: pytest.approx(0.5)}


def test_bad_requests_are_refused(store: GraphStore) -> None:
    store.apply(animals())
    with pytest.raises(SimilarityError, match="unknown similarity method 'jaccard'"):
        similarities(store, "dogs", ["jaccard"])
    with pytest.raises(SimilarityError, match="'embedding' needs the images"):  # not the graph's
        similarities(store, "dogs", ["embedding"])
    with pytest.raises(NotFound, match="no dataset named 'dgos'"):
        similarities(store, "dgos", [CONCEPT_OVERLAP])
    with pytest.raises(NotFound, match="'kats'"):
        similarities(store, "dogs", [CONCEPT_OVERLAP], against=["kats"])


# -- the embedding method, on real bundled images ---------------------------------------------------
SAMPLE = 200


@pytest.fixture(scope="module")
def images():
    from kg.wordnet import WordNet
    from transfer.data.sources import load_dataset

    return load_dataset("fashion-mnist"), load_dataset("digits"), WordNet.load()


@pytest.fixture(scope="module")
def feature_cache(tmp_path_factory: pytest.TempPathFactory):
    return tmp_path_factory.mktemp("similarity") / "features"


def register_family(store: GraphStore, images) -> None:
    """Fashion-MNIST, two 300-image subsets of it, digits, and a dataset with no images."""
    from transfer.data.derive import derive
    from transfer.register import register_dataset

    fashion, digits, wordnet = images
    register_dataset(store, fashion, wordnet=wordnet)
    for seed in (1, 2):
        subset = derive(fashion, "subset", {"n": 300}, seed=seed, name=f"fashion-{seed}")
        register_dataset(store, subset, derived_from="fashion-mnist", wordnet=wordnet)
    register_dataset(store, digits, wordnet=wordnet, concept_hint="digit.n.01")
    b = GraphBatch()
    b.node(D, "transfergraph:flowers", name="flowers", source="transfergraph", n_classes=102)
    store.apply(b)


def test_embedding_puts_two_fashion_samples_closer_than_digits(
    store: GraphStore, images, feature_cache
) -> None:
    from transfer.probe.dataset_embedding import embedding_similarities

    register_family(store, images)
    others = ["fashion-2", "digits", "transfergraph:flowers"]
    result = embedding_similarities(store, "fashion-1", others, n=SAMPLE, cache_dir=feature_cache)
    sims = {s.other_id: s for s in result.similarities}
    assert list(sims) == ["fashion-2", "digits"]  # best first; flowers has no images
    assert sims["fashion-2"].value > 0.8 > 0.3 > sims["digits"].value
    f = sims["fashion-2"].facts
    assert sims["fashion-2"].value == pytest.approx(math.exp(-f["frechet"] / f["scale"]), rel=1e-4)
    assert f["encoder"] == "ccexam.mnist" and f["sample"] == [SAMPLE, SAMPLE]
    assert len(result.notes) == 1 and "skipped transfergraph:flowers" in result.notes[0]
    # summaries are cached beside the features: a rerun reads them and gives the same values
    assert len(list((feature_cache.parent / "dataset-embeddings").glob("*.npz"))) == 3
    again = embedding_similarities(store, "fashion-1", others, n=SAMPLE, cache_dir=feature_cache)
    assert [s.value for s in again.similarities] == [s.value for s in result.similarities]


def test_frechet_distance_is_zero_for_one_summary_and_grows_with_the_mean_gap() -> None:
    import numpy as np

    from transfer.probe.dataset_embedding import DatasetEmbedding, embedding_similarity, frechet_distance

    rng = np.random.default_rng(0)
    x = rng.normal(size=(400, 5))
    cov = np.cov(x, rowvar=False)
    a = DatasetEmbedding("a", x.mean(axis=0), cov, 400)
    shifted = DatasetEmbedding("b", a.mean + 1.0, cov, 400)
    assert frechet_distance(a, a) == pytest.approx(0.0, abs=1e-9)
    assert frechet_distance(a, shifted) == pytest.approx(5.0)  # |gap|^2, same covariance
    assert embedding_similarity(a, a).value == pytest.approx(1.0)
    assert embedding_similarity(a, shifted).value == pytest.approx(math.exp(-5.0 / np.trace(cov)))


def test_find_similar_records_every_method(store: GraphStore, images, feature_cache) -> None:
    from transfer.dataset_similarity import find_similar

    register_family(store, images)
    report = find_similar(store, "fashion-1", sample=SAMPLE, cache_dir=feature_cache)
    best = report.ranked(top=2)
    assert [r.dataset_id for r in best] == ["fashion-2", "fashion-mnist"]
    assert set(best[0].by_method) == {"concept-overlap", "profile", "embedding"}
    table = read_similarities(store)
    assert set(table[("digits", "fashion-1")]) == {"concept-overlap", "profile", "embedding"}
    assert set(table[("transfergraph:flowers", "fashion-1")]) == {"profile"}  # n_classes only
    assert report.recorded == len(report.similarities) == 3 + 3 + 3 + 1
    assert sum(len(by_method) for by_method in table.values()) == 2 * report.recorded  # both ways


# -- the command line ------------------------------------------------------------------------------
def test_cli_lists_and_records_similar_datasets(store_uri: str) -> None:
    import json

    from kg import open_store
    from tests.cli import assert_clean_failure, kgraft

    with open_store(store_uri) as s:
        s.apply(animals())
    methods = "concept-overlap,profile"
    proc = kgraft("dataset", "similar", "dogs", "--methods", methods, "--top", "2", "--json", store=store_uri)
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    assert [r["dataset"] for r in out["results"]] == ["dogs-small", "wolves"]
    assert out["results"][1]["methods"]["concept-overlap"]["facts"]["shared"] == [
        "canine.n.01",
        "carnivore.n.01",
    ]
    assert out["recorded"] == 4  # dogs-small, wolves, cats, cars; unlabelled has no concepts
    assert_clean_failure(kgraft("dataset", "similar", "dgos", store=store_uri), "no dataset named 'dgos'")
    bad = kgraft("dataset", "similar", "dogs", "--methods", "concept-overlap,jaccard", store=store_uri)
    assert_clean_failure(bad, "unknown similarity method 'jaccard'")
    with open_store(store_uri) as s:
        assert len(read_similarities(s)) == 8  # the refused runs wrote nothing

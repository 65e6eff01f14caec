"""Outcomes that failed, the regime a run used, and dataset aliases: the failed-run rule, the
TransferGraph import of the regime, the scorer leaving failed runs out and following aliases, the
collapse warning in recommendations, and SAME_AS in RDF; on both stores."""

from __future__ import annotations

import csv
import math
from pathlib import Path

import pytest
from rdflib import OWL, URIRef

from gnn.builder import OUTCOME, PairContext, build_hetero, canonical_dataset
from gnn.scores import recommend
from gnn.train import TrainConfig, train_scorer
from kg import GraphBatch, GraphStore
from kg.aliases import add_alias, alias_groups, aliases_of
from kg.errors import InvalidRecord, NotFound
from kg.outcomes import chance_accuracy, collapse_warning, is_failed_run, recorded_runs
from kg.rdf import export_graph, import_graph, node_iri
from kg.transfergraph import transfergraph_batch
from ontology.vocab import Label, Rel

D, M = Label.DATASET, Label.MODEL
QUICK = TrainConfig(epochs=20, ensemble=1)


def test_chance_is_the_majority_class_or_uniform() -> None:
    assert chance_accuracy(10) == pytest.approx(0.1)
    assert chance_accuracy(4, {"a": 70, "b": 10, "c": 10, "d": 10}) == pytest.approx(0.7)
    assert math.isnan(chance_accuracy(None))


@pytest.mark.parametrize(
    ("accuracy", "chance", "failed"),
    [(0.10, 0.10, True), (0.13, 0.10, True), (0.16, 0.10, False), (0.0099, 1 / 101, True), (0.9, 0.5, False)],
)
def test_failed_run_rule(accuracy: float, chance: float, failed: bool) -> None:
    assert is_failed_run(accuracy, chance) is failed


def test_unknown_chance_never_fails_a_run() -> None:
    assert not is_failed_run(0.0, math.nan)
    assert not is_failed_run(math.nan, 0.1)


def _write_records(folder: Path, rows: list[tuple[str, str, int, float]]) -> Path:
    """A TransferGraph-layout folder: two models, two targets (one only in the records)."""
    folder.mkdir()
    with (folder / "model_config_dataset.csv").open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["model", "input_shape", "architectures", "dataset", "#labels", "accuracy",
                    "model_type", "number_of_parameters"])  # fmt: skip
        w.writerow(["org/big", "224", "['ConvNextForImageClassification']", "imagenet", "1000", "0.8",
                    "convnext", "198000000"])  # fmt: skip
        w.writerow(["org/foods", "224", "['ViTForImageClassification']", "foods", "20", "0.85", "vit",
                    "86000000"])  # fmt: skip
    with (folder / "target_dataset_features.csv").open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["target_dataset", "size", "number_of_classes"])
        w.writerow(["flowers", "1000", "10"])
    with (folder / "records.csv").open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["", "model", "finetuned_dataset", "epochs", "batch_size", "lr", "train_slice",
                    "test_accuracy"])  # fmt: skip
        for i, (model, target, batch, acc) in enumerate(rows):
            w.writerow([i, model, target, 30, batch, 0.01, ":0.7", acc])
    return folder


RUNS = [
    ("org/big", "flowers", 8, 0.11),  # at chance on 10 classes: failed
    ("org/foods", "flowers", 16, 0.93),
    ("org/big", "foods", 64, 0.90),
    ("org/foods", "foods", 64, 0.05),  # foods has 20 classes (from the model pretrained on it): failed
]


def test_transfergraph_import_records_regime_and_failed_runs(tmp_path: Path) -> None:
    batch = transfergraph_batch(_write_records(tmp_path / "tg", RUNS))
    edges = {
        (r["src"], r["dst"]): r
        for (rel, _, _), rows in batch.edges.items()
        if rel == Rel.TRANSFERRED_TO
        for r in rows.values()
    }
    first = edges[("hf:org/big", "flowers")]
    assert (first["epochs"], first["batch_size"], first["learning_rate"]) == (30, 8, 0.01)
    assert first["train_size"] == 700  # 1000 images x the ":0.7" training slice
    assert first["failed"] is True
    assert edges[("hf:org/foods", "flowers")]["failed"] is False
    assert edges[("hf:org/foods", "foods")]["failed"] is True
    assert batch.nodes[D]["foods"]["n_classes"] == 20


def test_scorer_leaves_failed_runs_out_and_recommend_warns(store: GraphStore, tmp_path: Path) -> None:
    store.apply(transfergraph_batch(_write_records(tmp_path / "tg", RUNS)))
    data, maps = build_hetero(store)
    assert int(data.n_failed_runs) == 2
    pairs = {
        (maps.id_of("model", s), maps.id_of("dataset", d)) for s, d in data[OUTCOME].edge_index.t().tolist()
    }
    assert pairs == {("hf:org/foods", "flowers"), ("hf:org/big", "foods")}
    runs = recorded_runs(store, ["hf:org/big"])
    assert {(r.dataset_id, r.failed, r.batch_size) for r in runs} == {
        ("flowers", True, 8),
        ("foods", False, 64),
    }
    warning = collapse_warning(runs, train_size=700, batch_size=8)
    assert warning is not None and "1 of 1" in warning and "batch 8" in warning
    assert collapse_warning(runs, train_size=35_000, batch_size=64) is None  # not a similar regime

    train_scorer(store, tmp_path / "scorer", train=QUICK)
    store.apply(_new_target())
    recs = {r.model_id: r for r in recommend(store, "blooms", top=5, train_size=800, batch_size=8)}
    big = recs["hf:org/big"]
    assert any(
        "collapsed to chance" in f and "collapse rate of 0.50" in f for f in big.facts["compatibility"]
    )
    assert big.predicted_z is not None and big.predicted_z < 0  # expected z: half way to a collapse
    assert not any("collapsed" in f for f in recs["hf:org/foods"].facts["compatibility"])


def _new_target() -> GraphBatch:
    b = GraphBatch()
    b.node(D, "blooms", name="blooms", n_samples=1100, n_classes=12)
    return b


def test_alias_joins_history_and_hides_with_the_target(store: GraphStore, tmp_path: Path) -> None:
    store.apply(transfergraph_batch(_write_records(tmp_path / "tg", RUNS)))
    store.apply(_new_target())
    a, b = add_alias(store, "blooms", "flowers")
    assert (a, b) == ("blooms", "flowers")
    add_alias(store, "flowers", "blooms")  # idempotent, either order
    both = store.query("MATCH (x:Dataset)-[:SAME_AS]->(y:Dataset) RETURN x.id AS a, y.id AS b ORDER BY a")
    assert [(r["a"], r["b"]) for r in both] == [(a, b), (b, a)]
    assert alias_groups(store) == {a: a, b: a}
    assert aliases_of(store, b) == [a]
    with pytest.raises(InvalidRecord, match="same dataset"):
        add_alias(store, "flowers", "flowers")

    data, maps = build_hetero(store)
    canonical = canonical_dataset(data, maps.index_of("dataset", b))
    assert canonical == maps.index_of("dataset", a)
    # the history recorded under the other name lands on the canonical row
    assert (data[OUTCOME].edge_index[1] == canonical).sum() == 1
    # a model trained on one name has seen the other's data
    store.apply(_trained_on(b))
    data, maps = build_hetero(store)
    context = PairContext(data)
    model = maps.index_of("model", "hf:org/big")
    assert context.trained_on_data([model], [maps.index_of("dataset", a)]).tolist() == [True]

    train_scorer(store, tmp_path / "scorer", train=QUICK)
    recs = {r.model_id: r for r in recommend(store, "blooms", top=5)}
    assert recs["hf:org/foods"].recorded_accuracy == pytest.approx(0.93)


def _trained_on(dataset: str) -> GraphBatch:
    b = GraphBatch()
    b.edge(Rel.TRAINED_ON, (M, "hf:org/big"), (D, dataset), split="train")
    return b


def test_alias_exports_as_owl_same_as_and_imports_back(store: GraphStore, tmp_path: Path) -> None:
    store.apply(transfergraph_batch(_write_records(tmp_path / "tg", RUNS)))
    store.apply(_new_target())
    add_alias(store, "blooms", "flowers")
    g = export_graph(store)
    a, b = node_iri(D, "blooms"), node_iri(D, "flowers")
    assert (a, OWL.sameAs, b) in g and (b, OWL.sameAs, a) in g
    batch = import_graph(g)
    assert {(r["src"], r["dst"]) for r in batch.edges[(Rel.SAME_AS, D, D)].values()} == {
        ("blooms", "flowers"),
        ("flowers", "blooms"),
    }
    assert isinstance(a, URIRef)


def test_unknown_name_suggests_the_closest(store: GraphStore, tmp_path: Path) -> None:
    store.apply(transfergraph_batch(_write_records(tmp_path / "tg", RUNS)))
    with pytest.raises(NotFound, match=r"Closest: flowers"):
        store.resolve("flowrs", (D,))


def test_cli_alias_and_a_regime_aware_recommendation(
    store: GraphStore, store_uri: str, tmp_path: Path
) -> None:
    """``kgraft dataset alias`` records SAME_AS and refuses bad names in one sentence; ``recommend
    --train-size --batch-size`` warns about a candidate that collapsed under that regime."""
    import json

    from kg import open_store
    from tests.cli import assert_clean_failure, kgraft

    with open_store(store_uri) as s:
        s.apply(transfergraph_batch(_write_records(tmp_path / "tg", RUNS)))
        s.apply(_new_target())
    done = kgraft("dataset", "alias", "blooms", "flowers", store=store_uri)
    assert done.returncode == 0, done.stderr
    assert "blooms SAME_AS flowers" in done.stdout
    assert_clean_failure(kgraft("dataset", "alias", "blooms", "flowrs", store=store_uri), "Closest: flowers")
    assert_clean_failure(kgraft("dataset", "alias", "flowers", "flowers", store=store_uri), "same dataset")
    trained = kgraft("gnn", "train", "--epochs", "10", "--ensemble", "1", store=store_uri)
    assert trained.returncode == 0, trained.stderr
    args = ("recommend", "blooms", "--probe", "0", "--json", "--train-size", "700", "--batch-size", "8")
    ranked = kgraft(*args, store=store_uri)
    assert ranked.returncode == 0, ranked.stderr
    recs = {r["model_id"]: r for r in json.loads(ranked.stdout)}
    assert recs["hf:org/big"]["facts"]["compatibility"][0].startswith("warning: collapsed to chance")
    assert recs["hf:org/foods"]["recorded_accuracy"] == pytest.approx(0.93)  # through the alias

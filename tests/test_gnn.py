"""The GNN layer: KG -> HeteroData on both stores, the TransferGraph import, training, leave-one-
target-out evaluation, scores and the scorer recorded in the graph."""

from __future__ import annotations

import hashlib
import math
import warnings
from dataclasses import replace
from pathlib import Path
from typing import NamedTuple

import numpy as np
import pandas as pd
import pytest
import torch

from gnn.builder import FEATURE_DIMS, OUTCOME, REV_SCORED, SCORED, PairContext, build_hetero, edge_types
from gnn.evaluate import loto
from gnn.model import GnnConfig
from gnn.scores import StaleScorerWarning, recommend, scoring_context, shift_risk
from gnn.similarity import MISSING_GAP, PRESENT_COLUMNS, VALUE_COLUMNS, kernel_statistics, squared_gaps
from gnn.train import (
    ScorerError,
    TrainConfig,
    fit,
    heldout_loss,
    latest_scorer,
    load_scorer,
    outcome_table,
    train_scorer,
)
from kg import GraphBatch, GraphStore, open_store
from kg.errors import InvalidRecord
from kg.ids import dataset_id
from kg.transfergraph import transfergraph_batch
from ontology.vocab import Label, Rel
from tests.corpus import SHARED_TRANSFERGRAPH, TRANSFERGRAPH

D, M, C, DOM, B = Label.DATASET, Label.MODEL, Label.CONCEPT, Label.DOMAIN, Label.BIAS
QUICK = TrainConfig(epochs=30, ensemble=2)


def small_graph(outcomes: bool = True) -> GraphBatch:
    """Four datasets, four models, concepts, a domain, a bias, measurements and outcomes.

    base --DERIVED_FROM(subset)-- small;  m-base TRAINED_ON base (bias on base), m-small TRAINED_ON small,
    m-tuned FINETUNED_FROM m-base, m-other TRAINED_ON other; targets t1, t2 with outcomes.
    """
    b = GraphBatch()
    b.node(
        D,
        "base",
        name="base",
        n_samples=1000,
        n_classes=2,
        imbalance=1.5,
        image_size=[32, 32],
        channels=3,
        mean=[0.5, 0.4, 0.3],
        std=[0.2, 0.2, 0.2],
    )
    b.node(D, "small", name="small", n_samples=100, n_classes=2)
    b.node(D, "other", name="other", n_samples=5000, n_classes=10, channels=1, mean=[0.1], std=[0.3])
    b.node(D, "t1", name="target one", n_samples=300, n_classes=2)
    b.node(D, "t2", name="target two", n_samples=800, n_classes=3)
    b.edge(Rel.DERIVED_FROM, (D, "small"), (D, "base"), how="subset")
    b.node(C, "c:cat", name="cat", depth=5)
    b.node(C, "c:dog", name="dog", depth=5)
    b.node(C, "c:animal", name="animal", depth=3)
    for child in ("c:cat", "c:dog"):
        b.edge(Rel.IS_A, (C, child), (C, "c:animal"))
    b.edge(Rel.HAS_CLASS, (D, "base"), (C, "c:cat"), label="cat", class_index=0, count=500)
    b.edge(Rel.HAS_CLASS, (D, "base"), (C, "c:dog"), label="dog", class_index=1, count=500)
    b.edge(Rel.HAS_CLASS, (D, "t1"), (C, "c:cat"), label="cat", class_index=0, count=150)
    b.node(DOM, "domain:photos", name="photos")
    b.edge(Rel.IN_DOMAIN, (D, "base"), (DOM, "domain:photos"))
    b.edge(Rel.IN_DOMAIN, (D, "t1"), (DOM, "domain:photos"))
    b.node(B, "bias:base:sampling", name="sampling in base", kind="sampling", severity="high")
    b.edge(Rel.HAS_BIAS, (D, "base"), (B, "bias:base:sampling"))
    for id, arch, params, trained in (
        ("m-base", "resnet18", 11_000_000, "base"),
        ("m-small", "vit_b_16", 86_000_000, "small"),
        ("m-tuned", "resnet18", 11_000_000, None),
        ("m-other", "smallcnn", 50_000, "other"),
    ):
        b.node(
            M,
            id,
            name=id,
            architecture=arch,
            num_params=params,
            num_classes=2,
            metrics={"reported_accuracy": 0.9},
            input_size=[3, 32, 32],
        )
        if trained:
            b.edge(Rel.TRAINED_ON, (M, id), (D, trained), split="train")
    b.edge(Rel.FINETUNED_FROM, (M, "m-tuned"), (M, "m-base"))
    b.edge(Rel.SCORED_ON, (M, "m-base"), (D, "t1"), kind="logme", layer="penultimate", value=1.2)
    b.edge(Rel.SCORED_ON, (M, "m-other"), (D, "t1"), kind="logme", layer="penultimate", value=0.2)
    b.edge(
        Rel.SCORED_ON, (M, "m-other"), (D, "t1"), kind="mmd", layer="penultimate", value=0.3, p_value=0.001
    )
    if outcomes:
        for i, (model, target, acc) in enumerate(
            (
                ("m-base", "t1", 0.90),
                ("m-base", "t1", 0.80),  # a second run of the same pair: averaged
                ("m-small", "t1", 0.70),
                ("m-tuned", "t1", 0.95),
                ("m-other", "t1", 0.40),
                ("m-base", "t2", 0.60),
                ("m-small", "t2", 0.65),
                ("m-tuned", "t2", 0.70),
                ("m-other", "t2", 0.30),
            )
        ):
            b.edge(Rel.TRANSFERRED_TO, (M, model), (D, target), activity=f"run:{i}", accuracy=acc)
    return b


def _edge_pairs(data, maps, edge_type) -> set[tuple[str, str]]:
    src_type, _, dst_type = edge_type
    ei = data[edge_type].edge_index
    return {(maps.id_of(src_type, int(s)), maps.id_of(dst_type, int(d))) for s, d in ei.t().tolist()}


# ----------------------------------------------------------------------------- builder


def test_builder_on_both_stores(store: GraphStore) -> None:
    store.apply(small_graph())
    # a recorded scorer and its snapshot stay out of the learning graph
    b = GraphBatch()
    b.node(M, "gnn-scorer:v1", name="scorer", kind="gnn-scorer")
    b.node(D, "outcomes-snapshot:abc", name="snap", source="kgraft-gnn", n_samples=9)
    b.edge(Rel.TRAINED_ON, (M, "gnn-scorer:v1"), (D, "outcomes-snapshot:abc"))
    store.apply(b)
    data, maps = build_hetero(store)

    assert {nt: data[nt].num_nodes for nt in FEATURE_DIMS} == {
        "dataset": 5,
        "model": 4,
        "concept": 3,
        "domain": 1,
    }
    for nt, dim in FEATURE_DIMS.items():
        assert data[nt].x.shape == (data[nt].num_nodes, dim)
    assert set(data.edge_types) == set(edge_types())
    counts = {et: data[et].edge_index.shape[1] for et in data.edge_types}
    assert counts[("model", "trained_on", "dataset")] == 3
    assert counts[("dataset", "rev_trained_on", "model")] == 3
    assert counts[("dataset", "derived_from", "dataset")] == 1
    assert counts[("model", "finetuned_from", "model")] == 1
    assert counts[("dataset", "has_class", "concept")] == 3
    assert counts[("concept", "is_a", "concept")] == 2
    assert counts[("dataset", "in_domain", "domain")] == 2
    assert counts[SCORED] == counts[REV_SCORED] == 3
    assert counts[OUTCOME] == 8  # nine runs, two of them the same pair

    # id maps both ways, sorted (stable)
    assert maps.ids["model"] == ["m-base", "m-other", "m-small", "m-tuned"]
    for nt in FEATURE_DIMS:
        for i, id in enumerate(maps.ids[nt]):
            assert maps.index_of(nt, id) == i and maps.id_of(nt, i) == id

    # hand-picked edges
    assert ("m-small", "small") in _edge_pairs(data, maps, ("model", "trained_on", "dataset"))
    assert ("small", "m-small") in _edge_pairs(data, maps, ("dataset", "rev_trained_on", "model"))
    assert _edge_pairs(data, maps, ("dataset", "derived_from", "dataset")) == {("small", "base")}
    assert _edge_pairs(data, maps, ("model", "finetuned_from", "model")) == {("m-tuned", "m-base")}
    assert ("c:cat", "c:animal") in _edge_pairs(data, maps, ("concept", "is_a", "concept"))
    ei = data[OUTCOME].edge_index.t().tolist()
    pair = ei.index([maps.index_of("model", "m-base"), maps.index_of("dataset", "t1")])
    assert data[OUTCOME].edge_label[pair].item() == pytest.approx(0.85)
    assert data[OUTCOME].edge_runs[pair].item() == 2
    assert data.n_outcome_runs == 9 and len(data.outcome_digest) == 64

    # features from the records
    base = data["dataset"].x[maps.index_of("dataset", "base")]
    assert base[0].item() == pytest.approx(math.log1p(1000)) and base[1].item() == 1.0
    assert base[8].item() == pytest.approx(5.0)  # log2 32
    assert data["dataset"].x[maps.index_of("dataset", "t1"), 5].item() == 0.0  # no imbalance recorded
    model = data["model"].x[maps.index_of("model", "m-small")]
    assert model[0].item() == pytest.approx(math.log10(86_000_000)) and model[4].item() == pytest.approx(0.9)
    mmd = data[SCORED].edge_kind.tolist().count(7)
    assert mmd == 1


def test_builder_is_fast_on_a_large_graph(tmp_path) -> None:
    """10k nodes here (the 100k figure is in benchmarks/gnn_eval.py); a few seconds at most."""
    import time

    b = GraphBatch()
    for i in range(8000):
        b.node(D, f"d{i}", n_samples=100 + i, n_classes=10)
        if i:
            b.edge(Rel.DERIVED_FROM, (D, f"d{i}"), (D, f"d{i // 2}"), how="subset")
    for i in range(2000):
        b.node(M, f"m{i}", num_params=1000 + i, architecture="resnet18")
        b.edge(Rel.TRAINED_ON, (M, f"m{i}"), (D, f"d{i * 3}"))
    with open_store(f"embedded:{tmp_path / 'big.lbug'}") as s:
        s.apply(b)
        started = time.perf_counter()
        data, _ = build_hetero(s)
        seconds = time.perf_counter() - started
    assert (
        data["dataset"].num_nodes == 8000
        and data["dataset", "derived_from", "dataset"].edge_index.shape[1] == 7999
    )
    assert seconds < 5.0


# ----------------------------------------------------------------------------- TransferGraph import


class Corpus(NamedTuple):
    """A TransferGraph-layout folder and facts about it, checked by hand against its CSV files."""

    directory: Path
    models: int
    runs: int
    vit: str  # a ViT model's name
    pretrained: tuple[str, str]  # (model, dataset) of a model pretrained on a dataset that is also a target
    sized: tuple[str, int, int]  # (target, size, classes) from target_dataset_features.csv
    loto: tuple[str, str]  # two targets for the leave-one-target-out leak test


CORPORA = {
    "fixture": Corpus(
        TRANSFERGRAPH, 16, 78, "acme/vit-base-imagenet", ("birch-lab/resnet50-satellite", "satellite"),
        ("leaves", 3200, 12), ("textures", "pets"),
    ),
    "shared": Corpus(
        SHARED_TRANSFERGRAPH, 185, 2254, "google/vit-base-patch16-224",
        ("nateraw/vit-base-food101", "food101"), ("cifar100", 50000, 100), ("dtd", "stanfordcars"),
    ),
}  # fmt: skip


class Imported(NamedTuple):
    corpus: Corpus
    uri: str
    data: object
    maps: object


@pytest.fixture(
    scope="module",
    params=["fixture", pytest.param("shared", marks=pytest.mark.shared_corpus)],
)
def transfergraph(request, tmp_path_factory) -> Imported:
    """TransferGraph records (the repository's invented ones; the published ones where ../shared is) in a
    LadybugDB file, and the graph built from it."""
    corpus = CORPORA[request.param]
    path = tmp_path_factory.mktemp("tg") / "g.lbug"
    with open_store(f"embedded:{path}") as s:
        s.apply(transfergraph_batch(corpus.directory))
        data, maps = build_hetero(s)
    return Imported(corpus, f"embedded:{path}", data, maps)


def test_transfergraph_import_matches_the_csv(transfergraph: Imported) -> None:
    corpus, uri, data, _ = transfergraph
    config = pd.read_csv(corpus.directory / "model_config_dataset.csv")
    records = pd.read_csv(corpus.directory / "records.csv")
    with open_store(uri, read_only=True) as s:
        assert s.count(M) == len(config) == corpus.models
        rows = s.query(
            "MATCH (m:Model)-[r:TRANSFERRED_TO]->(d:Dataset) RETURN m.id AS m, d.name AS d, r.accuracy AS a"
        )
        assert len(rows) == len(records) == corpus.runs
        got = pd.DataFrame(rows).groupby("d")["a"].agg(["count", "mean"])
        want = records.groupby("finetuned_dataset")["test_accuracy"].agg(["count", "mean"])
        assert got["count"].to_dict() == want["count"].to_dict()
        np.testing.assert_allclose(got["mean"].sort_index(), want["mean"].sort_index(), rtol=1e-9)
        vit = s.node(M, f"hf:{corpus.vit}")
        assert vit["architecture"] == "ViTForImageClassification" and vit["extra"]["model_type"] == "vit"
        model, dataset = corpus.pretrained
        trained = s.query(
            "MATCH (m:Model {id: $id})-[:TRAINED_ON]->(d:Dataset) RETURN d.name AS d", {"id": f"hf:{model}"}
        )
        assert trained == [{"d": dataset}]  # one Dataset node for a pretraining set that is also a target
        target, size, classes = corpus.sized
        node = s.node(D, dataset_id(target))
        assert node["n_samples"] == size and node["n_classes"] == classes
    assert data["model"].num_nodes == len(config)
    assert data.n_outcome_runs + data.n_failed_runs == corpus.runs  # failed runs: kept, not a signal


def test_transfergraph_import_refuses_bad_files(tmp_path) -> None:
    with pytest.raises(InvalidRecord, match="missing"):
        transfergraph_batch(tmp_path)
    directory = TRANSFERGRAPH
    for name in ("model_config_dataset.csv", "target_dataset_features.csv"):
        (tmp_path / name).write_text((directory / name).read_text())
    lines = (directory / "records.csv").read_text().splitlines()
    cells = lines[1].split(",")
    cells[14] = "not-a-number"  # test_accuracy
    (tmp_path / "records.csv").write_text("\n".join([lines[0], ",".join(cells)]) + "\n")
    with pytest.raises(InvalidRecord, match="test_accuracy must be a number"):
        transfergraph_batch(tmp_path)
    (tmp_path / "records.csv").write_text("model,finetuned_dataset\n")
    with pytest.raises(InvalidRecord, match="lacks the column"):
        transfergraph_batch(tmp_path)


# ----------------------------------------------------------------------------- training and evaluation


def test_training_reduces_the_loss(transfergraph: Imported) -> None:
    data = transfergraph.data
    outcomes = outcome_table(data)
    probe = outcomes.targets()[::3]  # the objective with these targets hidden, before and after
    untrained = fit(data, train=TrainConfig(epochs=0, ensemble=1), seed=0).ensemble
    result = fit(data, train=TrainConfig(epochs=120, ensemble=1, holdout_fraction=0.25), seed=0)
    before = heldout_loss(untrained, data, outcomes, probe)
    after = heldout_loss(result.ensemble, data, outcomes, probe)
    assert after < 0.8 * before
    assert result.ensemble.basis == "outcomes" and len(result.losses[0]["total"]) == 120


def _scrambled(data, target: int, seed: int = 0):
    """A copy of ``data`` whose outcomes on ``target`` are replaced by random accuracies."""
    copy = data.clone()
    on = copy[OUTCOME].edge_index[1] == target
    generator = torch.Generator().manual_seed(seed)
    copy[OUTCOME].edge_label[on] = torch.rand(int(on.sum()), generator=generator)
    return copy


def test_leave_one_target_out_really_hides_the_target(transfergraph: Imported) -> None:
    _, _, data, maps = transfergraph
    first, second = transfergraph.corpus.loto
    target = maps.index_of("dataset", dataset_id(first))
    models = outcome_table(data).src[outcome_table(data).dst == target]
    config = TrainConfig(epochs=40, ensemble=1)

    def predict(graph, leak: bool) -> np.ndarray:
        ensemble = fit(graph, train=config, exclude_targets=() if leak else [target]).ensemble
        table = outcome_table(graph, () if leak else [target])
        return ensemble.predict(graph, PairContext(graph), table, target, models, hide_target=not leak).z

    # hidden means hidden: whatever the target's outcomes say, the honest prediction is the same
    scrambled = _scrambled(data, target)
    np.testing.assert_array_equal(predict(data, leak=False), predict(scrambled, leak=False))
    assert not np.array_equal(predict(data, leak=True), predict(scrambled, leak=True))

    # and a planted leak shows in the score
    names = maps.names["dataset"]
    targets = [target, maps.index_of("dataset", dataset_id(second))]
    honest = loto(data, names=names, targets=targets, train=config, baselines=False)
    leaked = loto(data, names=names, targets=targets, train=config, baselines=False, leak=True)
    r_honest, tau_honest, _ = honest.mean("gnn")
    r_leaked, tau_leaked, _ = leaked.mean("gnn")
    assert r_leaked > r_honest + 0.02 and tau_leaked > tau_honest + 0.02
    assert any("LEAKED" in n for n in leaked.notes)


# ----------------------------------------------------------------------------- the scorer in the graph


def test_scorer_is_a_model_trained_on_an_outcome_snapshot(store: GraphStore, tmp_path) -> None:
    store.apply(small_graph())
    info = train_scorer(store, tmp_path, seed=0, train=QUICK)
    assert info.basis == "outcomes" and info.version == 1 and "9 recorded outcomes" in info.message
    node = store.node(M, info.id)
    assert node["kind"] == "gnn-scorer" and node["version"] == "1"
    assert node["checksum"] == hashlib.sha256(Path(node["checkpoint"]).read_bytes()).hexdigest()
    assert node["metrics"]["n_outcomes"] == 9
    snap = store.query(
        "MATCH (m:Model {id: $id})-[:TRAINED_ON]->(s:Dataset) RETURN s.id AS id, s.n_samples AS n",
        {"id": info.id},
    )
    assert snap == [{"id": info.snapshot_id, "n": 9}] and snap[0]["id"].startswith("outcomes-snapshot:")
    assert not list(tmp_path.glob(".*.tmp"))  # written atomically: no temporary file left behind

    # the scorer never becomes a candidate, and a second training is version 2
    _, maps = build_hetero(store)
    assert info.id not in maps.ids["model"] and info.snapshot_id not in maps.ids["dataset"]
    second = train_scorer(store, tmp_path, seed=0, train=QUICK)
    assert second.version == 2 and latest_scorer(store).id == second.id
    assert second.checksum == info.checksum  # same graph, same seed: the same weights

    recs = recommend(store, "t1", top=3)
    assert [r.rank for r in recs] == [1, 2, 3] and all(r.basis == "outcomes" for r in recs)
    assert all(0.0 <= r.compatibility <= 1.0 and r.uncertainty >= 0.0 for r in recs)
    assert all(0.0 <= r.shift_risk <= 1.0 and 0.0 <= r.bias_risk <= 1.0 for r in recs)
    by_id = {r.model_id: r for r in recommend(store, "target one", top=10)}  # by name too
    assert set(by_id) == {"m-base", "m-small", "m-tuned", "m-other"}
    # bias on `base` reaches m-base (trained on it) and m-tuned (fine-tuned from it), with the path
    assert by_id["m-base"].bias_risk > 0 and by_id["m-small"].bias_risk > 0
    assert any("m-base -TRAINED_ON-> base -HAS_BIAS->" in f for f in by_id["m-base"].facts["bias_risk"])
    assert by_id["m-other"].bias_risk == 0.0
    assert any("mmd shift test: p = 0.001 (shifted)" in f for f in by_id["m-other"].facts["shift_risk"])
    assert by_id["m-base"].shift_risk < by_id["m-other"].shift_risk
    assert by_id["m-base"].recorded_accuracy == pytest.approx(0.85)

    # a broken checkpoint is one clear error
    Path(second.checkpoint).write_bytes(b"garbage")
    with pytest.raises(ScorerError, match="checksum"):
        load_scorer(store)


def test_scores_are_reproducible_with_a_seed(tmp_path) -> None:
    def run(folder: Path, seed: int) -> list[tuple[str, float, float]]:
        with open_store(f"embedded:{folder / 'g.lbug'}") as s:
            s.apply(small_graph())
            train_scorer(s, folder, seed=seed, train=QUICK)
            return [(r.model_id, r.compatibility, r.uncertainty) for r in recommend(s, "t2")]

    first, again = run(tmp_path / "a", 3), run(tmp_path / "b", 3)
    assert first == again
    assert run(tmp_path / "c", 4) != first


def test_a_graph_without_outcomes_falls_back_and_says_so(store: GraphStore, tmp_path) -> None:
    store.apply(small_graph(outcomes=False))
    info = train_scorer(store, tmp_path, train=QUICK)
    assert info.basis == "self-supervised" and "no recorded outcomes" in info.message
    recs = recommend(store, "t2", top=4)
    assert len(recs) == 4 and all(r.basis == "self-supervised" for r in recs)
    assert all(any("fallback" in f for f in r.facts["compatibility"]) for r in recs)
    assert all(any("no recorded outcomes" in n for n in r.notes) for r in recs)
    assert all(r.predicted_z is None for r in recs)
    # where estimators were recorded, they drive the fallback
    on_t1 = {r.model_id: r for r in recommend(store, "t1")}
    assert on_t1["m-base"].basis == "estimators"
    assert on_t1["m-base"].compatibility > on_t1["m-other"].compatibility


def test_a_scorer_older_than_the_newest_outcomes_warns(store: GraphStore, tmp_path) -> None:
    store.apply(small_graph())
    train_scorer(store, tmp_path, train=QUICK)
    with warnings.catch_warnings():
        warnings.simplefilter("error", StaleScorerWarning)
        recommend(store, "t1")  # fresh: no warning
    b = GraphBatch()
    b.edge(
        Rel.TRANSFERRED_TO,
        (M, "m-other"),
        (D, "t2"),
        activity="run:late",
        accuracy=0.5,
        time="2999-01-01T00:00:00+00:00",
    )
    store.apply(b)
    with pytest.warns(StaleScorerWarning, match="stale"):
        recs = recommend(store, "t1")
    assert any("stale" in n for n in recs[0].notes)


def test_no_scorer_is_one_clear_error(tmp_path) -> None:
    with open_store(f"embedded:{tmp_path / 'g.lbug'}") as s:
        s.apply(small_graph())
        with pytest.raises(ScorerError, match="gnn train"):
            recommend(s, "t1")


def test_shift_risk_without_tests_uses_the_graph(tmp_path) -> None:
    with open_store(f"embedded:{tmp_path / 'g.lbug'}") as s:
        s.apply(small_graph())
        train_scorer(s, tmp_path, train=QUICK)
        ctx = scoring_context(s)
    m = ctx.maps.index_of("model", "m-base")
    same = shift_risk(ctx, m, ctx.maps.index_of("dataset", "base"))
    assert same.value == 0.0 and "trained on the target dataset itself" in same.facts
    shared = shift_risk(ctx, m, ctx.maps.index_of("dataset", "t1"))  # photos domain, cat class shared
    assert shared.value <= 0.2 and any("domain overlap" in f for f in shared.facts)
    unknown = shift_risk(ctx, ctx.maps.index_of("model", "m-other"), ctx.maps.index_of("dataset", "t2"))
    assert unknown.value == 0.5


def test_model_config_round_trip() -> None:
    config = GnnConfig(conv="hgt", hidden=32)
    assert GnnConfig.from_dict(config.to_dict()) == config
    assert torch.get_num_threads() >= 1


# ----------------------------------------------------------------------------- trained on the target's data


def test_trained_on_the_targets_data_follows_sampling_lineage_only(store: GraphStore, tmp_path) -> None:
    """``small`` is a stratified subset of ``base`` and ``rot`` a rotation of it: a model trained on
    ``base`` (or fine-tuned from one) has seen ``small``'s data, not ``rot``'s; the scorer adds its
    ``seen_prior`` to exactly those pairs and says so in the facts."""
    b = small_graph()
    b.node(D, "rot", name="rotated base", n_samples=1000, n_classes=2)
    b.edge(Rel.DERIVED_FROM, (D, "rot"), (D, "base"), how="rotate")
    store.apply(b)
    data, maps = build_hetero(store)
    derived = ("dataset", "derived_from", "dataset")
    edges = zip(data[derived].edge_index.t().tolist(), data[derived].edge_sampled.tolist(), strict=True)
    sampled = {(maps.id_of("dataset", s), maps.id_of("dataset", d)) for (s, d), flag in edges if flag}
    assert sampled == {("small", "base")}

    context = PairContext(data)
    models = ["m-base", "m-small", "m-tuned", "m-other"]
    rows = np.array([maps.index_of("model", m) for m in models])

    def seen(target: str) -> dict[str, bool]:
        flags = context.trained_on_data(rows, np.full(len(rows), maps.index_of("dataset", target)))
        return dict(zip(models, flags.tolist(), strict=True))

    assert seen("small") == {"m-base": True, "m-small": True, "m-tuned": True, "m-other": False}
    assert seen("base") == {"m-base": True, "m-small": True, "m-tuned": True, "m-other": False}
    assert seen("rot") == {"m-base": False, "m-small": False, "m-tuned": False, "m-other": False}
    assert seen("other") == {"m-base": False, "m-small": False, "m-tuned": False, "m-other": True}

    ensemble = fit(data, train=QUICK, context=context).ensemble
    outcomes = outcome_table(data)
    off = replace(ensemble, gnn=replace(ensemble.gnn, seen_prior=0.0))
    for target in ("small", "rot"):
        row = maps.index_of("dataset", target)
        lifted = ensemble.predict(data, context, outcomes, row, rows).z
        plain = off.predict(data, context, outcomes, row, rows).z
        expected = ensemble.gnn.seen_prior * np.array(list(seen(target).values()), dtype=float)
        np.testing.assert_allclose(lifted - plain, expected, atol=1e-9)

    info = train_scorer(store, tmp_path, train=QUICK)
    assert info.basis == "outcomes"
    facts = {r.model_id: r.facts["compatibility"] for r in recommend(store, "small", top=4)}
    assert any("already trained on this target's data" in f for f in facts["m-base"])
    assert not any("already trained on this target's data" in f for f in facts["m-other"])


# ----------------------------------------------------------------------------- target similarity


def _dataset_row(n_samples: float | None, n_classes: float | None) -> list[float]:
    row = [0.0] * FEATURE_DIMS["dataset"]
    if n_samples is not None:
        row[0], row[1] = math.log1p(n_samples), 1.0
    if n_classes is not None:
        row[2], row[3] = math.log1p(n_classes), 1.0
    return row


def test_the_feature_kernel_reads_every_dataset_column_once() -> None:
    columns = sorted(VALUE_COLUMNS + tuple(set(PRESENT_COLUMNS)))
    assert columns == list(range(FEATURE_DIMS["dataset"]))


def test_the_feature_kernel_prefers_alike_targets_and_treats_missing_records_as_strangers() -> None:
    x = torch.tensor(
        [
            _dataset_row(50_000, 100),  # the query
            _dataset_row(45_000, 100),  # alike
            _dataset_row(1_000, 5),  # unlike
            _dataset_row(None, None),  # records nothing
        ]
    )
    mean, sd = kernel_statistics(x)
    gaps = squared_gaps(x[[0, 0, 0]], x[[1, 2, 3]], mean, sd).sum(-1)
    assert gaps[0] < 0.05 < gaps[1]
    assert gaps[2] == pytest.approx(2 * MISSING_GAP)  # two columns recorded on one side only
    # a target that records nothing is equally far from every other: no preference
    blank = squared_gaps(x[[3, 3]], x[[1, 2]], mean, sd).sum(-1)
    assert blank[0] == blank[1]
    # statistics come from the datasets that record a column only
    assert mean[0] == pytest.approx(float(x[:3, 0].mean()))

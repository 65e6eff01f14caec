"""The target's own estimator evidence re-ordering the probed candidates (gnn.evidence)."""

from __future__ import annotations

import numpy as np
import pytest

from gnn.builder import PairContext, build_hetero
from gnn.evidence import blend, estimator_evidence
from gnn.model import GnnConfig
from gnn.train import TrainConfig, fit, outcome_table
from kg import GraphBatch, GraphStore
from ontology.vocab import Label, Rel

D, M = Label.DATASET, Label.MODEL


def test_blend_reorders_only_the_probed_shortlist() -> None:
    z = np.array([2.0, 1.5, 1.0, -1.0])
    evidence = np.array([-1.0, 0.0, 1.0, 0.0])
    probed = np.array([True, True, True, False])
    out = blend(z, evidence, probed, 1.0)
    assert out[3] == z[3]  # an unprobed candidate keeps its score
    assert out[:3].mean() == pytest.approx(z[:3].mean())  # the shortlist keeps its place ...
    assert out[:3].std() == pytest.approx(z[:3].std())  # ... and its spread
    assert list(np.argsort(-out[:3])) == [2, 1, 0]  # and the estimators order it
    np.testing.assert_array_equal(blend(z, evidence, probed, 0.0), z)
    half = blend(z, evidence, probed, 0.5)
    assert half[1] == pytest.approx(z[1])  # both sides agree it is the middle one


def test_blend_needs_two_probed_candidates() -> None:
    z = np.array([1.0, 0.0])
    np.testing.assert_array_equal(blend(z, np.array([5.0, 0.0]), np.array([True, False]), 1.0), z)


def test_blend_applies_per_ensemble_member() -> None:
    members = np.array([[1.0, 0.0, 5.0], [3.0, 2.0, 5.0]])
    out = blend(members, np.array([-1.0, 1.0, 0.0]), np.array([True, True, False]), 1.0)
    assert (out[:, 1] > out[:, 0]).all() and (out[:, 2] == 5.0).all()


def _graph() -> GraphBatch:
    """Five sources with a consistent history on three targets (s0 best ... s4 worst), a new target
    with no outcomes where LogME and H-score were measured on s0, s1 and s2 and say the opposite."""
    b = GraphBatch()
    for t in ("a", "b", "c", "new"):
        b.node(D, t, name=t, n_samples=1000, n_classes=10)
    for i in range(5):
        b.node(M, f"s{i}", name=f"s{i}", architecture="resnet18", num_params=11_000_000, num_classes=10)
        for k, t in enumerate(("a", "b", "c")):
            b.edge(
                Rel.TRANSFERRED_TO,
                (M, f"s{i}"),
                (D, t),
                activity=f"run:{i}:{t}",
                accuracy=0.9 - 0.1 * i - 0.01 * k,
            )
    for i, value in ((0, 0.1), (1, 0.5), (2, 0.9)):
        for kind in ("logme", "hscore"):
            b.edge(Rel.SCORED_ON, (M, f"s{i}"), (D, "new"), kind=kind, layer="penultimate", value=value)
    return b


def test_probes_reorder_the_new_targets_shortlist(store: GraphStore) -> None:
    store.apply(_graph())
    data, maps = build_hetero(store)
    context = PairContext(data)
    target = maps.index_of("dataset", "new")
    models = np.array([maps.index_of("model", f"s{i}") for i in range(5)])
    evidence, probed = estimator_evidence(context.features(models, np.full(5, target)))
    assert probed.tolist() == [True, True, True, False, False]
    assert evidence[2] > evidence[1] > evidence[0]
    outcomes = outcome_table(data)
    ranks = {}
    for weight in (0.0, 1.0):
        ensemble = fit(
            data, gnn=GnnConfig(estimator_weight=weight), train=TrainConfig(epochs=60, ensemble=1), seed=0
        ).ensemble
        prediction = ensemble.predict(data, context, outcomes, target, models)
        ranks[weight] = list(np.argsort(-prediction.z[:3]))
        np.testing.assert_allclose(prediction.z[3:], prediction.learned[3:])  # unprobed: untouched
    assert ranks[1.0] == [2, 1, 0]  # the target's own evidence decides among the probed
    assert ranks[0.0] != ranks[1.0]


def test_a_saved_scorer_reads_todays_features_by_name(store: GraphStore, tmp_path) -> None:
    """A scorer trained before a score kind existed (here: one without ``sfda``) loads and scores a
    graph built with today's vocabulary; its columns are matched by name."""
    from gnn.builder import PAIR_FEATURES, SCORE_KINDS
    from gnn.train import load_checkpoint, save_checkpoint

    store.apply(_graph())
    data, maps = build_hetero(store)
    context = PairContext(data)
    older = GnnConfig(
        pair_features=tuple(f for f in PAIR_FEATURES if "sfda" not in f),
        score_kinds=tuple(k for k in SCORE_KINDS if k != "sfda"),
    )
    ensemble = fit(data, gnn=older, train=TrainConfig(epochs=5, ensemble=1), seed=0).ensemble
    path = tmp_path / "older.safetensors"
    save_checkpoint(ensemble, TrainConfig(epochs=5, ensemble=1), path)
    loaded = load_checkpoint(path)
    assert loaded.gnn.pair_features == older.pair_features and "sfda" not in loaded.gnn.score_kinds
    models = np.arange(5)
    target = maps.index_of("dataset", "new")
    prediction = loaded.predict(data, context, outcome_table(data), target, models)
    assert prediction.z.shape == (5,) and np.isfinite(prediction.z).all()


def test_a_head_that_saw_estimators_is_not_blended_again(store: GraphStore) -> None:
    """Estimators measured beside the training outcomes: the head learned them, so the blend's
    weight is 0; without any, the configured weight applies."""
    store.apply(_graph())
    data, _ = build_hetero(store)
    quick = TrainConfig(epochs=5, ensemble=1)
    unseen = fit(data, train=quick, seed=0).ensemble
    assert not unseen.learned_estimators and unseen.effective_weight == GnnConfig().estimator_weight
    b = GraphBatch()
    for i in range(5):
        b.edge(Rel.SCORED_ON, (M, f"s{i}"), (D, "a"), kind="logme", layer="penultimate", value=1.0 - 0.1 * i)
    store.apply(b)
    data, _ = build_hetero(store)
    seen = fit(data, train=quick, seed=0).ensemble
    assert seen.learned_estimators and seen.effective_weight == 0.0

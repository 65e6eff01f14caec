"""Shift tests and layer-wise similarity against references written out from their definitions, their
behaviour with and without a known shift, and the shift classification rules."""

from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.spatial.distance
import scipy.stats
import torch
from sklearn.metrics import roc_auc_score

from transfer.probe import ProbeError
from transfer.probe.shift import (
    ShiftTestResult,
    _auc,
    classify_shift,
    domain_classifier_auc,
    ks_test,
    label_shift,
    mmd_test,
)
from transfer.probe.similarity import find_turning_point, layer_shift_score, linear_cka, paired_cka


def gaussian(n: int, d: int, seed: int, shift: float = 0.0, scale: float = 1.0) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return torch.randn(n, d, generator=generator, dtype=torch.float64) * scale + shift


# ----------------------------------------------------------------------------------------------- MMD


def test_mmd_statistic_matches_the_unbiased_estimator_written_with_loops() -> None:
    x, y = gaussian(15, 3, seed=1), gaussian(12, 3, seed=2, shift=0.3)
    result = mmd_test(x, y, n_permutations=50)
    h = result.details["bandwidth"]
    pooled = np.concatenate([x.numpy(), y.numpy()])
    sq = [np.sum((a - b) ** 2) for i, a in enumerate(pooled) for b in pooled[i + 1 :]]
    assert h == pytest.approx(float(np.median(sq)))

    def k(a: np.ndarray, b: np.ndarray) -> float:
        return math.exp(-np.sum((a - b) ** 2) / (2 * h))

    xs, ys = x.numpy(), y.numpy()
    n, m = len(xs), len(ys)
    within_x = sum(k(xs[i], xs[j]) for i in range(n) for j in range(n) if i != j) / (n * (n - 1))
    within_y = sum(k(ys[i], ys[j]) for i in range(m) for j in range(m) if i != j) / (m * (m - 1))
    cross = sum(k(a, b) for a in xs for b in ys) / (n * m)
    assert result.statistic == pytest.approx(within_x + within_y - 2 * cross, rel=1e-10)
    assert result.method == "mmd-rbf-permutation"


def test_mmd_permutation_p_value_agrees_with_a_loop_over_relabellings() -> None:
    x, y = gaussian(20, 2, seed=3), gaussian(20, 2, seed=4, shift=0.35)
    result = mmd_test(x, y, n_permutations=2000, seed=0)
    pooled = torch.cat([x, y])
    rng = np.random.default_rng(0)
    exceed = 0
    for _ in range(2000):
        order = torch.from_numpy(rng.permutation(40))
        exceed += (
            mmd_test(pooled[order[:20]], pooled[order[20:]], n_permutations=1).statistic >= result.statistic
        )
    reference = (1 + exceed) / 2001
    assert result.p_value == pytest.approx(reference, abs=0.03)  # two Monte Carlo estimates of one p


def test_mmd_p_values_are_roughly_uniform_without_shift() -> None:
    p_values = [
        mmd_test(
            gaussian(60, 4, seed=100 + r), gaussian(60, 4, seed=200 + r), n_permutations=200, seed=r
        ).p_value
        for r in range(20)
    ]
    assert sum(p < 0.05 for p in p_values) <= 3
    assert 0.3 <= float(np.mean(p_values)) <= 0.7
    assert min(p_values) >= 1 / 201


def test_mmd_detects_a_known_mean_shift() -> None:
    result = mmd_test(gaussian(80, 5, seed=5), gaussian(80, 5, seed=6, shift=0.6), n_permutations=300)
    assert result.p_value == pytest.approx(1 / 301)
    assert result.shifted and result.statistic > 0


def test_mmd_is_seeded_and_subsamples_large_sets() -> None:
    x, y = gaussian(300, 3, seed=7), gaussian(250, 3, seed=8)
    first = mmd_test(x, y, n_permutations=100, seed=3, max_samples=100)
    assert first == mmd_test(x, y, n_permutations=100, seed=3, max_samples=100)
    assert first.details["n_x"] == 100 and first.details["n_y"] == 100


# ------------------------------------------------------------------------------------------------ KS


def softmax_outputs(n: int, classes: int, seed: int, boost: float = 0.0) -> torch.Tensor:
    logits = gaussian(n, classes, seed)
    logits[:, 0] += boost
    return torch.softmax(logits, dim=1)


def test_ks_bonferroni_detects_a_shift_in_one_softmax_dimension() -> None:
    p, q = softmax_outputs(300, 6, seed=9), softmax_outputs(300, 6, seed=10, boost=1.0)
    result = ks_test(p, q)
    assert result.shifted and result.p_value < 1e-6
    assert result.details["dimension"] == 0
    reference = [scipy.stats.ks_2samp(p[:, j].numpy(), q[:, j].numpy()) for j in range(6)]
    assert result.p_value == pytest.approx(min(1.0, 6 * min(r.pvalue for r in reference)))
    assert result.statistic == pytest.approx(reference[0].statistic)


def test_ks_bonferroni_stays_quiet_without_shift() -> None:
    result = ks_test(softmax_outputs(300, 6, seed=11), softmax_outputs(300, 6, seed=12), alpha=0.01)
    assert not result.shifted and result.alpha == 0.01
    assert 0 < result.p_value <= 1


# ----------------------------------------------------------------------------------- domain classifier


def test_auc_helper_matches_scikit_learn_with_ties() -> None:
    rng = np.random.default_rng(0)
    scores = rng.integers(0, 5, 60).astype(float)
    truth = rng.random(60) > 0.4
    assert _auc(scores, truth) == pytest.approx(roc_auc_score(truth, scores))


def test_domain_classifier_is_at_chance_on_one_distribution() -> None:
    result = domain_classifier_auc(gaussian(300, 8, seed=13), gaussian(400, 8, seed=14))
    assert 0.4 <= result.statistic <= 0.6
    assert result.p_value > 0.05 and not result.shifted
    assert result.details["n_per_domain"] == 300


def test_domain_classifier_separates_shifted_sets() -> None:
    # mean shift of 1 in each of 8 dimensions: |delta| = 2.83, so the Bayes AUC is Phi(2) = 0.977
    result = domain_classifier_auc(gaussian(300, 8, seed=15), gaussian(300, 8, seed=16, shift=1.0))
    assert result.statistic > 0.93
    assert result.p_value < 1e-6 and result.details["accuracy"] > 0.85


# ----------------------------------------------------------------------------------------- label shift


def test_label_shift_matches_hand_computed_distances() -> None:
    a, b = {"cat": 30, "dog": 10}, {"dog": 20, "owl": 20}
    result = label_shift(a, b)
    p, q = np.array([0.75, 0.25, 0.0]), np.array([0.0, 0.5, 0.5])
    assert result["total_variation"] == pytest.approx(0.5 * np.abs(p - q).sum())
    assert result["jensen_shannon"] == pytest.approx(scipy.spatial.distance.jensenshannon(p, q, base=2) ** 2)
    assert result["only_in_a"] == ["cat"] and result["only_in_b"] == ["owl"] and result["shared"] == 1
    same = label_shift({"x": 5, "y": 5}, {"x": 50, "y": 50})
    assert same["total_variation"] == 0 and same["jensen_shannon"] == 0
    disjoint = label_shift({"x": 1}, {"y": 1})
    assert disjoint["total_variation"] == 1 and disjoint["jensen_shannon"] == pytest.approx(1)


@pytest.mark.parametrize("prior", [{}, {"x": 0}, {"x": -1}, {"x": math.nan}])
def test_label_shift_rejects_empty_or_negative_counts(prior: dict[str, float]) -> None:
    with pytest.raises(ProbeError):
        label_shift(prior, {"x": 1})


# ------------------------------------------------------------------------------------ classification


@pytest.mark.parametrize(
    ("early", "late", "labels", "kind"),
    [
        (0.0005, 0.001, 0.02, "none"),
        (0.05, 0.20, 0.0, "input-level"),  # already shifted at the first layers
        (0.05, 0.01, 0.5, "input-level"),  # the shallowest shift decides what to tune first
        (0.005, 0.08, 0.0, "semantic"),  # appears only deep in the network
        (0.005, 0.08, 0.9, "semantic"),
        (0.005, 0.01, 0.3, "label"),  # features match, priors do not
    ],
)
def test_classify_shift_follows_where_the_shift_shows(
    early: float, late: float, labels: float, kind: str
) -> None:
    assert classify_shift(early, late, labels) == kind


def test_classify_shift_thresholds_are_adjustable_and_inputs_checked() -> None:
    assert classify_shift(0.03, 0.03, 0.0, input_threshold=0.05, semantic_threshold=0.05) == "none"
    assert classify_shift(0.0, 0.0, 0.05, label_threshold=0.04) == "label"
    with pytest.raises(ProbeError, match="early_layer_shift"):
        classify_shift(math.nan, 0.0, 0.0)
    with pytest.raises(ProbeError, match="label_shift"):
        classify_shift(0.0, 0.0, -0.1)


# ----------------------------------------------------------------------------------------------- CKA


def cka_reference(x: np.ndarray, y: np.ndarray) -> float:
    """HSIC with the centring matrix H, straight from Kornblith et al. (2019)."""
    n = len(x)
    h = np.eye(n) - np.ones((n, n)) / n
    k, l_ = h @ x @ x.T @ h, h @ y @ y.T @ h
    return float(np.trace(k @ l_) / math.sqrt(np.trace(k @ k) * np.trace(l_ @ l_)))


@pytest.mark.parametrize(("n", "d1", "d2"), [(40, 5, 7), (12, 30, 20)], ids=["n>d", "n<d"])
def test_paired_cka_matches_the_hsic_formula(n: int, d1: int, d2: int) -> None:
    x = gaussian(n, d1, seed=20)
    y = torch.cat([x[:, :3] * 2, gaussian(n, d2 - 3, seed=21)], dim=1)
    assert paired_cka(x, y) == pytest.approx(cka_reference(x.numpy(), y.numpy()), rel=1e-10)


def test_cka_is_one_on_itself_and_invariant_to_rotation_and_isotropic_scaling() -> None:
    x = gaussian(100, 10, seed=22)
    rotation, _ = torch.linalg.qr(gaussian(10, 10, seed=23))
    y = gaussian(100, 6, seed=24)
    assert paired_cka(x, x) == pytest.approx(1.0)
    assert paired_cka(x, 3.5 * x @ rotation + 7.0) == pytest.approx(1.0)
    assert paired_cka(x @ rotation, y) == pytest.approx(paired_cka(x, y))
    assert linear_cka(x, 0.1 * y) == pytest.approx(paired_cka(x, y))


def test_cka_of_independent_representations_is_small() -> None:
    assert paired_cka(gaussian(2000, 10, seed=25), gaussian(2000, 12, seed=26)) < 0.05


def test_cka_needs_the_same_inputs_and_a_non_constant_representation() -> None:
    with pytest.raises(ProbeError, match="same inputs"):
        paired_cka(gaussian(10, 3, seed=1), gaussian(11, 3, seed=2))
    with pytest.raises(ProbeError, match="constant"):
        paired_cka(torch.ones(10, 3), gaussian(10, 3, seed=2))


# ------------------------------------------------------------------------------- layer shift, knee


@pytest.mark.parametrize("kernel", ["rbf", "linear"])
def test_layer_shift_score_is_near_zero_without_shift_and_grows_with_it(kernel: str) -> None:
    base = gaussian(400, 16, seed=27)
    scores = [
        layer_shift_score(base, gaussian(400, 16, seed=28, shift=s), kernel=kernel) for s in (0, 0.3, 1, 3)
    ]
    assert scores[0] < 0.005
    assert scores == sorted(scores) and scores[-1] > 0.3
    assert all(0 <= s <= 1 for s in scores)


def test_rbf_layer_shift_score_sees_a_change_of_scale() -> None:
    base = gaussian(400, 64, seed=29)
    assert layer_shift_score(base, gaussian(400, 64, seed=30, scale=2.0)) > 0.02
    assert layer_shift_score(base, gaussian(400, 64, seed=30, scale=2.0), kernel="linear") < 0.005


def test_layer_shift_score_rejects_different_layers_and_unknown_kernels() -> None:
    with pytest.raises(ProbeError, match="same layer"):
        layer_shift_score(gaussian(10, 3, seed=1), gaussian(10, 4, seed=2))
    with pytest.raises(ProbeError, match="kernel"):
        layer_shift_score(gaussian(10, 3, seed=1), gaussian(10, 3, seed=2), kernel="laplace")


@pytest.mark.parametrize(
    ("values", "knee"),
    [
        ([1.0, 1.0, 1.0, 0.5, 0.2], 2),  # plateau, then the drop after layer 2
        ([1.0, 0.5, 0.3, 0.2], 0),  # drops right after the first layer
        ([1.0, 0.95, 0.9, 0.4, 0.35], 2),
        ([1.0, 0.9, 0.5, 0.4], 1),
        ([0.8, 0.8, 0.8], 2),  # flat: everything looks general
        ([0.2, 0.5, 0.9], 2),  # rising: likewise
        ([0.7], 0),
    ],
)
def test_find_turning_point_picks_the_layer_before_the_sharpest_bend(values: list[float], knee: int) -> None:
    assert find_turning_point(values) == knee


def test_find_turning_point_accepts_distances() -> None:
    shift_scores = [0.01, 0.01, 0.02, 0.3, 0.5]
    assert find_turning_point(shift_scores, higher_is_similar=False) == 2
    with pytest.raises(ProbeError):
        find_turning_point([])
    with pytest.raises(ProbeError):
        find_turning_point([1.0, math.nan])


def test_shift_test_result_is_a_plain_record() -> None:
    result = ShiftTestResult(0.3, 0.01, "demo")
    assert result.shifted and result.alpha == 0.05 and result.details == {}

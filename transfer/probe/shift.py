"""Shift tests: has the target data moved away from what the model saw, where, and how?

Two-sample tests (each returns a ``ShiftTestResult``; ``result.shifted`` is ``p_value < alpha``):

* ``mmd_test``: kernel two-sample test on features, unbiased MMD^2 with an RBF kernel and a
  permutation p-value (Gretton et al. 2012).
* ``ks_test``: per-dimension Kolmogorov-Smirnov tests on softmax outputs with a Bonferroni
  correction (the "BBSDs" test of Rabanser et al. 2019, "Failing Loudly").
* ``domain_classifier_auc``: can a classifier tell the two sets apart? Held-out AUC, with a
  binomial test on its held-out accuracy (also from "Failing Loudly").

``label_shift`` compares class priors; ``classify_shift`` names the kind of shift from the
layer-wise shift scores (``similarity.layer_shift_score``) and the label shift, following surgical
fine-tuning (Lee et al. 2023): fine-tune the block where the shift lives.

Shapes: x (n, d) and y (m, d) float, rows are samples, the same d on both sides.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np
import scipy.stats
import torch
from torch import Tensor

from transfer.probe.estimators import ProbeError, fit_logistic_regression
from transfer.probe.similarity import pairwise_sq_distances, rbf_bandwidth

__all__ = [
    "SHIFT_KINDS",
    "ShiftTestResult",
    "classify_shift",
    "domain_classifier_auc",
    "ks_test",
    "label_shift",
    "mmd_test",
]

SHIFT_KINDS = ("none", "input-level", "semantic", "label")


@dataclass(frozen=True)
class ShiftTestResult:
    """One two-sample test: its statistic, p-value, the method's name, and details
    (sample sizes, bandwidth, the most shifted dimension, ...)."""

    statistic: float
    p_value: float
    method: str
    alpha: float = 0.05
    details: dict[str, float | int | str] = field(default_factory=dict)

    @property
    def shifted(self) -> bool:
        """Whether the test rejects "same distribution" at level ``alpha``."""
        return self.p_value < self.alpha


def _pair(x: Tensor, y: Tensor, min_rows: int = 2) -> tuple[Tensor, Tensor]:
    x, y = torch.as_tensor(x), torch.as_tensor(y)
    if x.ndim == 1:
        x = x[:, None]
    if y.ndim == 1:
        y = y[:, None]
    if x.ndim != 2 or y.ndim != 2:
        raise ProbeError(f"samples must be 2-D (samples, dims): got {tuple(x.shape)} and {tuple(y.shape)}.")
    if x.shape[1] != y.shape[1]:
        raise ProbeError(f"the two samples differ in width: {x.shape[1]} vs {y.shape[1]} dimensions.")
    if x.shape[0] < min_rows or y.shape[0] < min_rows:
        raise ProbeError(f"each sample needs at least {min_rows} rows: got {x.shape[0]} and {y.shape[0]}.")
    x = x.double()
    y = y.to(device=x.device, dtype=torch.float64)
    if not (bool(torch.isfinite(x).all()) and bool(torch.isfinite(y).all())):
        raise ProbeError("samples contain NaN or infinite values.")
    return x, y


def mmd_test(
    x: Tensor,
    y: Tensor,
    n_permutations: int = 500,
    seed: int = 0,
    *,
    alpha: float = 0.05,
    max_samples: int = 2000,
) -> ShiftTestResult:
    """Kernel two-sample test: unbiased MMD^2 with an RBF kernel and a permutation p-value.

    k(a, b) = exp(-|a - b|^2 / (2 h)) with h the median squared distance between distinct pooled
    rows (``similarity.rbf_bandwidth``). MMD^2_u = sum_{i != j} k(x_i, x_j) / (n (n-1)) +
    sum_{i != j} k(y_i, y_j) / (m (m-1)) - 2 sum k(x_i, y_j) / (n m). The pooled kernel matrix is
    computed once; each permutation only relabels rows, so all permutations' statistics come from
    one (P, n+m) x (n+m, n+m) product (in chunks). p = (1 + #{permuted >= observed}) / (1 + P).
    At most ``max_samples`` rows of each set are used (a seeded subsample).
    """
    x, y = _pair(x, y)
    if n_permutations < 1:
        raise ProbeError("the MMD test needs at least one permutation.")
    generator = torch.Generator().manual_seed(seed)
    if x.shape[0] > max_samples:
        x = x[torch.randperm(x.shape[0], generator=generator)[:max_samples].to(x.device)]
    if y.shape[0] > max_samples:
        y = y[torch.randperm(y.shape[0], generator=generator)[:max_samples].to(y.device)]
    n, m = x.shape[0], y.shape[0]
    total = n + m
    sq = pairwise_sq_distances(torch.cat([x, y]))
    bandwidth = rbf_bandwidth(sq)
    kernel = torch.exp(-sq / (2 * bandwidth))
    row_sums = kernel.sum(1)
    grand = row_sums.sum()
    diag = kernel.diagonal()
    trace = diag.sum()

    def statistics(member: Tensor) -> Tensor:
        """MMD^2_u for each row of ``member`` (P, n+m), 1 where a pooled row plays x."""
        xx = ((member @ kernel) * member).sum(1)  # a^T K a
        x_rows = member @ row_sums  # a^T K 1
        x_diag = member @ diag
        within_x = xx - x_diag
        within_y = grand - 2 * x_rows + xx - (trace - x_diag)
        cross = x_rows - xx
        return within_x / (n * (n - 1)) + within_y / (m * (m - 1)) - 2 * cross / (n * m)

    observed_member = torch.zeros(1, total, dtype=torch.float64, device=kernel.device)
    observed_member[0, :n] = 1
    observed = float(statistics(observed_member)[0])
    exceed = 0
    chunk = max(1, min(n_permutations, 2**24 // total))
    done = 0
    while done < n_permutations:
        size = min(chunk, n_permutations - done)
        order = torch.argsort(torch.rand(size, total, generator=generator), dim=1).to(kernel.device)
        member = torch.zeros(size, total, dtype=torch.float64, device=kernel.device)
        member.scatter_(1, order[:, :n], 1.0)
        exceed += int((statistics(member) >= observed).sum())
        done += size
    p_value = (1 + exceed) / (1 + n_permutations)
    return ShiftTestResult(
        observed,
        p_value,
        "mmd-rbf-permutation",
        alpha,
        {"bandwidth": bandwidth, "n_x": n, "n_y": m, "n_permutations": n_permutations},
    )


def ks_test(p: Tensor, q: Tensor, alpha: float = 0.05) -> ShiftTestResult:
    """Per-dimension two-sample KS tests with a Bonferroni correction, for softmax outputs (n, C), (m, C).

    Each of the C columns is tested with ``scipy.stats.ks_2samp`` (two-sided); the aggregated
    p-value is min(1, C * min_j p_j) and the statistic is the KS distance of that most shifted
    dimension (``details["dimension"]``). Any per-sample 1-D summary works too (a (n,) input is one
    column).
    """
    p_, q_ = _pair(p, q, min_rows=1)
    a, b = p_.cpu().numpy(), q_.cpu().numpy()
    dims = a.shape[1]
    stats = np.empty(dims)
    p_values = np.empty(dims)
    for j in range(dims):
        result = scipy.stats.ks_2samp(a[:, j], b[:, j])
        stats[j], p_values[j] = result.statistic, result.pvalue
    worst = int(np.argmin(p_values))
    corrected = min(1.0, float(p_values[worst]) * dims)
    return ShiftTestResult(
        float(stats[worst]),
        corrected,
        "ks-bonferroni",
        alpha,
        {"dimension": worst, "dimensions": dims, "min_p_value": float(p_values[worst])},
    )


def _auc(scores: np.ndarray, positive: np.ndarray) -> float:
    """Area under the ROC curve from the Mann-Whitney U statistic (ties count half)."""
    ranks = scipy.stats.rankdata(scores)
    n_pos = int(positive.sum())
    n_neg = positive.size - n_pos
    return float((ranks[positive].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def domain_classifier_auc(
    x: Tensor,
    y: Tensor,
    seed: int = 0,
    *,
    n_folds: int = 5,
    l2: float = 1e-2,
    alpha: float = 0.05,
) -> ShiftTestResult:
    """Domain classifier test: held-out AUC of a logistic regression telling x (label 0) from y (label 1).

    The larger set is first subsampled (seeded) to the size of the smaller, so chance accuracy is
    exactly 1/2. Stratified ``n_folds``-fold cross-fitting gives every row one out-of-fold
    probability from a model that never saw it (features standardised per fold, L2 ``l2``); the
    statistic is the AUC of those probabilities (0.5: indistinguishable, 1: fully separable).
    p-value: one-sided binomial test of the out-of-fold accuracy against 1/2, treating the held-out
    predictions as independent trials (as Rabanser et al. 2019 do; cross-fitting makes them only
    nearly so). A permutation test would be exact but costs n_folds fits per permutation. A linear
    classifier sees shifted means and correlations, not a pure change of spread: use ``mmd_test``
    for that.
    """
    x, y = _pair(x, y, min_rows=n_folds)
    if n_folds < 2:
        raise ProbeError("the domain classifier needs at least two folds.")
    generator = torch.Generator().manual_seed(seed)
    size = min(x.shape[0], y.shape[0])
    x = x[torch.randperm(x.shape[0], generator=generator)[:size].to(x.device)]
    y = y[torch.randperm(y.shape[0], generator=generator)[:size].to(y.device)]
    features = torch.cat([x, y])
    labels = torch.cat([torch.zeros(size, dtype=torch.long), torch.ones(size, dtype=torch.long)])
    # stratified folds: shuffle each domain, then deal its rows round-robin over the folds
    folds = torch.empty(2 * size, dtype=torch.long)
    for domain in (0, 1):
        rows = torch.randperm(size, generator=generator) + domain * size
        folds[rows] = torch.arange(size) % n_folds
    probabilities = torch.empty(2 * size, dtype=torch.float64)
    for fold in range(n_folds):
        test = (folds == fold).to(features.device)
        train = ~test
        mean = features[train].mean(0, keepdim=True)
        std = features[train].std(0, keepdim=True).clamp_min(1e-12)
        weight, bias = fit_logistic_regression(
            (features[train] - mean) / std, labels.to(features.device)[train], 2, l2=l2
        )
        logits = ((features[test] - mean) / std).to(weight.dtype) @ weight + bias
        probabilities[test.cpu()] = torch.softmax(logits.double(), dim=1)[:, 1].cpu()
    scores = probabilities.numpy()
    truth = labels.numpy().astype(bool)
    auc = _auc(scores, truth)
    correct = int(((scores > 0.5) == truth).sum())
    p_value = float(scipy.stats.binomtest(correct, 2 * size, 0.5, alternative="greater").pvalue)
    return ShiftTestResult(
        auc,
        p_value,
        "domain-classifier-auc",
        alpha,
        {"accuracy": correct / (2 * size), "n_per_domain": size, "n_folds": n_folds},
    )


def label_shift(prior_a: Mapping[str, int], prior_b: Mapping[str, int]) -> dict[str, float | int | list[str]]:
    """How far apart two label distributions are, from class counts (or weights) by class name.

    Over the union of the two label sets (a class missing on one side has probability 0 there):
    ``total_variation`` = 1/2 sum |p_a - p_b| in [0, 1]; ``jensen_shannon`` divergence in bits, in
    [0, 1]; ``only_in_a`` / ``only_in_b`` the classes one side lacks (concepts that differ);
    ``shared`` the number of classes present on both sides.
    """
    for name, prior in (("prior_a", prior_a), ("prior_b", prior_b)):
        if any((not math.isfinite(float(v))) or float(v) < 0 for v in prior.values()):
            raise ProbeError(f"{name} holds a negative or non-finite class count.")
        if sum(float(v) for v in prior.values()) <= 0:
            raise ProbeError(f"{name} is empty: a label distribution needs at least one counted class.")
    classes = sorted(set(prior_a) | set(prior_b), key=str)
    a = np.array([float(prior_a.get(c, 0)) for c in classes])
    b = np.array([float(prior_b.get(c, 0)) for c in classes])
    a, b = a / a.sum(), b / b.sum()
    mid = (a + b) / 2

    def kl_bits(p: np.ndarray) -> float:
        mask = p > 0
        return float((p[mask] * np.log2(p[mask] / mid[mask])).sum())

    return {
        "total_variation": float(np.abs(a - b).sum() / 2),
        "jensen_shannon": min(1.0, max(0.0, (kl_bits(a) + kl_bits(b)) / 2)),
        "only_in_a": [c for c, pa, pb in zip(classes, a, b, strict=True) if pa > 0 and pb == 0],
        "only_in_b": [c for c, pa, pb in zip(classes, a, b, strict=True) if pb > 0 and pa == 0],
        "shared": int(((a > 0) & (b > 0)).sum()),
    }


def classify_shift(
    early_layer_shift: float,
    late_layer_shift: float,
    label_shift: float,
    *,
    input_threshold: float = 0.02,
    semantic_threshold: float = 0.02,
    label_threshold: float = 0.1,
) -> str:
    """Name the shift between source and target: "none" | "input-level" | "semantic" | "label".

    Inputs: ``layer_shift_score`` (0..1) at an early and a late layer of the pretrained model, and
    the total variation between the class priors (``label_shift(...)["total_variation"]``, 0..1).
    Following surgical fine-tuning (Lee et al. 2023), the shift is named after the shallowest place
    it shows, since that is the first block to fine-tune:

    1. ``early >= input_threshold``: "input-level" (low-level statistics already differ: corruption,
       sensor, style; tune the first blocks).
    2. else ``late >= semantic_threshold``: "semantic" (early features match but the late ones do not:
       new concepts or a new feature distribution; tune the later blocks).
    3. else ``label >= label_threshold``: "label" (features match, class priors or label sets differ:
       re-fit the head / last layer).
    4. else "none".

    Default thresholds, measured on Gaussian features with 500 samples per set at 16 and 256
    dimensions: the RBF ``layer_shift_score`` between two samples of one distribution is about 3e-4;
    shifting every feature's mean by 0.25 standard deviations gives about 0.014, by 0.5 about 0.06,
    doubling the spread about 0.045, and ten classes moved to new centres about 0.04. So 0.02 sits
    far above sampling noise and below any shift worth a different fine-tuning plan. A total
    variation of 0.1 means a tenth of the probability mass sits on other classes. Calibrate them per
    model family once recorded outcomes allow.
    """
    values = {
        "early_layer_shift": early_layer_shift,
        "late_layer_shift": late_layer_shift,
        "label_shift": label_shift,
    }
    for name, value in values.items():
        if not math.isfinite(float(value)) or float(value) < 0:
            raise ProbeError(f"{name} must be a finite, non-negative score, got {value}.")
    if early_layer_shift >= input_threshold:
        return "input-level"
    if late_layer_shift >= semantic_threshold:
        return "semantic"
    if label_shift >= label_threshold:
        return "label"
    return "none"

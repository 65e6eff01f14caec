"""Transferability estimators against references written out from their definitions (numpy, scipy,
scikit-learn), their ranking of good and bad features, the N < D saturation pitfall, and bad input."""

from __future__ import annotations

import math
from collections import Counter

import numpy as np
import pytest
import scipy.linalg
import torch
from sklearn.covariance import LedoitWolf
from sklearn.linear_model import LogisticRegression

from ontology.vocab import ScoreRole, score_kinds
from transfer.probe import ProbeError
from transfer.probe.estimators import (
    Estimates,
    estimate_all,
    fit_logistic_regression,
    hscore,
    knn_accuracy,
    leep,
    linalg,
    linear_probe_accuracy,
    logme,
    logme_fit,
    nce,
    reduce_dim,
    sfda,
    stratified_split,
)


def make_features(
    n: int, d: int, classes: int, separation: float, seed: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Gaussian classes around random centres; separation 0 gives labels independent of features."""
    generator = torch.Generator().manual_seed(seed)
    labels = torch.arange(n) % classes
    centres = torch.randn(classes, d, generator=generator, dtype=torch.float64) * separation
    return centres[labels] + torch.randn(n, d, generator=generator, dtype=torch.float64), labels


# --------------------------------------------------------------------------------------------- LogME


def log_evidence(f: np.ndarray, y: np.ndarray, alpha: float, beta: float) -> float:
    """LogME's closed-form log evidence / N, straight from its definition in D dimensions."""
    n, d = f.shape
    a = alpha * np.eye(d) + beta * f.T @ f
    m = beta * np.linalg.solve(a, f.T @ y)
    _, logdet = np.linalg.slogdet(a)
    return (
        d / 2 * math.log(alpha)
        + n / 2 * math.log(beta)
        - logdet / 2
        - beta / 2 * float(np.sum((f @ m - y) ** 2))
        - alpha / 2 * float(m @ m)
        - n / 2 * math.log(2 * math.pi)
    ) / n


@pytest.mark.parametrize(("n", "d", "separation"), [(80, 6, 0.7), (24, 40, 0.3)], ids=["N>D", "N<D"])
def test_logme_matches_closed_form_at_a_stationary_point(n: int, d: int, separation: float) -> None:
    features, labels = make_features(n, d, 3 if n > d else 2, separation, seed=1)
    fit = logme_fit(features, labels)
    assert torch.isfinite(fit.alpha).all() and torch.isfinite(fit.beta).all()
    f, y = features.numpy(), labels.numpy()
    for c in range(int(labels.max()) + 1):
        target = (y == c).astype(np.float64)
        alpha, beta = float(fit.alpha[c]), float(fit.beta[c])
        best = log_evidence(f, target, alpha, beta)
        assert fit.evidence[c].item() == pytest.approx(best, rel=1e-9, abs=1e-9)
        # the fixed point maximises the evidence: moving alpha or beta either way lowers it
        for scale in (0.97, 1.03):
            assert log_evidence(f, target, alpha * scale, beta) < best
            assert log_evidence(f, target, alpha, beta * scale) < best
    assert fit.score == pytest.approx(float(fit.evidence.mean()))
    assert logme(features, labels) == pytest.approx(fit.score)


def test_logme_float32_path_agrees_with_float64() -> None:
    features, labels = make_features(600, 48, 6, 0.4, seed=2)
    assert logme(features.float(), labels) == pytest.approx(logme(features, labels), rel=1e-4)


def test_logme_unexplainable_labels_score_the_pure_noise_evidence() -> None:
    features, labels = make_features(400, 8, 4, 0.0, seed=3)
    fit = logme_fit(features, labels)
    noise = 0.5 * math.log(4) - 0.5 - 0.5 * math.log(2 * math.pi)  # N / |y|^2 = 4 for balanced classes
    assert fit.score == pytest.approx(noise, abs=5e-3)
    assert fit.score >= noise - 1e-12
    infinite = torch.isinf(fit.alpha)
    assert torch.allclose(fit.evidence[infinite], torch.full_like(fit.evidence[infinite], noise))


# ---------------------------------------------------------------------------------------- LEEP and NCE


def test_leep_matches_its_definition_written_with_loops() -> None:
    generator = torch.Generator().manual_seed(4)
    logits = torch.randn(50, 7, generator=generator, dtype=torch.float64) * 2
    labels = torch.randint(0, 4, (50,), generator=generator)
    labels[:4] = torch.arange(4)
    theta = np.exp(logits.numpy())
    theta /= theta.sum(1, keepdims=True)
    y = labels.numpy()
    n, num_source = theta.shape
    joint = np.zeros((4, num_source))
    for i in range(n):
        for z in range(num_source):
            joint[y[i], z] += theta[i, z] / n
    conditional = joint / joint.sum(0, keepdims=True)
    expected = 0.0
    for i in range(n):
        expected += math.log(sum(conditional[y[i], z] * theta[i, z] for z in range(num_source))) / n
    assert leep(None, labels, logits) == pytest.approx(expected, rel=1e-12)


def test_nce_matches_count_based_conditional_entropy() -> None:
    generator = torch.Generator().manual_seed(5)
    logits = torch.randn(120, 6, generator=generator)
    labels = (logits.argmax(1) + torch.randint(0, 2, (120,), generator=generator)) % 3
    z = logits.argmax(1).tolist()
    y = labels.tolist()
    pairs, source_counts = Counter(zip(y, z, strict=True)), Counter(z)
    entropy = -sum(count / 120 * math.log(count / source_counts[zz]) for (_, zz), count in pairs.items())
    assert nce(None, labels, logits) == pytest.approx(-entropy, rel=1e-12)
    assert nce(None, labels, logits) <= 0


def test_leep_and_nce_prefer_an_informative_source_head() -> None:
    labels = torch.arange(300) % 5
    generator = torch.Generator().manual_seed(6)
    noise = torch.randn(300, 10, generator=generator, dtype=torch.float64)
    informative = torch.nn.functional.one_hot(labels, 10).double() * 4 + noise
    random = torch.randn(300, 10, generator=generator)
    assert leep(None, labels, informative) > leep(None, labels, random)
    assert nce(None, labels, informative) > nce(None, labels, random)


# ------------------------------------------------------------------------------------------- H-score


@pytest.mark.parametrize(("n", "d"), [(200, 10), (40, 60)], ids=["N>D", "N<D"])
def test_hscore_without_shrinkage_matches_numpy_pinv_formula(n: int, d: int) -> None:
    features, labels = make_features(n, d, 4, 0.5, seed=7)
    f, y = features.numpy(), labels.numpy()
    g = np.zeros_like(f)
    for c in range(4):
        g[y == c] = f[y == c].mean(0)
    covariance = np.cov(f, rowvar=False)
    expected = np.trace(np.linalg.pinv(covariance, rcond=1e-10, hermitian=True) @ np.cov(g, rowvar=False))
    assert hscore(features, labels, shrinkage=False, reduce=False) == pytest.approx(expected, rel=1e-9)


def test_shrinkage_hscore_matches_ledoit_wolf_reference() -> None:
    features, labels = make_features(60, 40, 3, 0.4, seed=8)
    f, y = features.numpy(), labels.numpy()
    f = f - f.mean(0)
    lw = LedoitWolf(assume_centered=False).fit(f)
    g = np.zeros_like(f)
    for c in range(3):
        g[y == c] = f[y == c].mean(0)
    between = g.T @ g / len(f)  # 1/N, like the Ledoit-Wolf covariance
    expected = np.trace(np.linalg.pinv(lw.covariance_) @ ((1 - lw.shrinkage_) * between))
    assert hscore(features, labels) == pytest.approx(expected, rel=1e-8)


# ---------------------------------------------------------------------------------------------- SFDA


def fisher_posteriors_reference(
    x: np.ndarray, y: np.ndarray, shrinkage: float | None, fisher_space_only: bool
) -> tuple[np.ndarray, float]:
    """SFDA's discriminant as the authors describe it: generalised eigenproblem of (S_B, shrunk S_W)."""
    classes = np.unique(y)
    priors = np.array([(y == c).mean() for c in classes])
    means = np.stack([x[y == c].mean(0) for c in classes])
    s_w = sum(p * np.cov(x[y == c].T, bias=True) for p, c in zip(priors, classes, strict=True))
    if shrinkage is None:
        shrinkage = max(math.exp(-5 * np.linalg.eigvalsh(s_w)[-1]), 1e-10)
    d = x.shape[1]
    shrunk = (1 - shrinkage) * s_w + shrinkage * np.trace(s_w) / d * np.eye(d)
    centre = priors @ means
    s_b = sum(p * np.outer(m - centre, m - centre) for p, m in zip(priors, means, strict=True))
    evals, evecs = scipy.linalg.eigh(s_b, shrunk)
    evecs = evecs[:, np.argsort(evals)[::-1]]
    if fisher_space_only:
        evecs = evecs[:, : len(classes) - 1]  # project on the C - 1 Fisher directions
    projected_means = means @ evecs
    scores = (x @ evecs) @ projected_means.T - 0.5 * (projected_means**2).sum(1) + np.log(priors)
    scores -= scores.max(1, keepdims=True)
    probs = np.exp(scores)
    return probs / probs.sum(1, keepdims=True), shrinkage


def sfda_reference(x: np.ndarray, y: np.ndarray, fisher_space_only: bool) -> float:
    probs, shrinkage = fisher_posteriors_reference(x, y, None, fisher_space_only)
    soft = np.exp(probs) / np.exp(probs).sum(1, keepdims=True)
    classes = np.unique(y)
    means = np.stack([x[y == c].mean(0) for c in classes])
    x = x.copy()
    for c in classes:
        outer = (means.sum(0) - means[c]) / (len(classes) - 1)
        confidence = soft[y == c, c][:, None]
        x[y == c] = confidence * x[y == c] + (1 - confidence) * outer
    probs, _ = fisher_posteriors_reference(x, y, shrinkage, fisher_space_only)
    return float(probs[np.arange(len(y)), y].mean())


@pytest.mark.parametrize("fisher_space_only", [True, False], ids=["C-1 Fisher space", "all directions"])
def test_sfda_matches_generalised_eigenproblem_reference(fisher_space_only: bool) -> None:
    features, labels = make_features(150, 8, 4, 0.25, seed=9)
    features = features * 0.3  # small within-class scatter, so the adaptive shrinkage is not negligible
    expected = sfda_reference(features.numpy(), labels.numpy(), fisher_space_only)
    assert sfda(features, labels) == pytest.approx(expected, rel=1e-8)
    assert sfda(features.float(), labels) == pytest.approx(expected, rel=1e-4)  # float32 Gram products


@pytest.mark.parametrize("rank", [48, 256], ids=["rank-deficient, shrinkage at its floor", "full rank"])
def test_sfda_float32_factorisation_agrees_with_float64(rank: int) -> None:
    """Float32 features take a float32 Cholesky; where S is too ill-conditioned for one (a rank-48
    scatter in 256 dimensions at scale 10: exp(-5 lambda_max) is at its 1e-10 floor) it falls back
    to float64, so the score stays that of the float64 computation to float32 accuracy."""
    generator = torch.Generator().manual_seed(21)
    labels = torch.randint(0, 10, (3000,), generator=generator)
    basis = torch.randn(rank, 256, generator=generator, dtype=torch.float64)
    latent = torch.randn(3000, rank, generator=generator, dtype=torch.float64)
    latent += 0.5 * torch.randn(10, rank, generator=generator, dtype=torch.float64)[labels]
    features = latent @ basis * 10
    expected = sfda(features, labels, reduce=False)
    assert 0.3 < expected < 0.999  # neither saturated nor trivial
    assert sfda(features.float(), labels, reduce=False) == pytest.approx(expected, rel=1e-4)


# ------------------------------------------------------------------------------------------ k-NN, probe


def test_knn_accuracy_matches_brute_force_leave_one_out() -> None:
    features, labels = make_features(90, 6, 3, 0.4, seed=10)
    x = features.numpy() / np.linalg.norm(features.numpy(), axis=1, keepdims=True)
    y = labels.numpy()
    sims = x @ x.T
    correct = 0
    for i in range(len(y)):
        sims_i = sims[i].copy()
        sims_i[i] = -np.inf
        top = np.argsort(-sims_i, kind="stable")[:5]
        votes = Counter(y[top])
        weight = {c: sims_i[top][y[top] == c].sum() for c in votes}
        winner = max(votes, key=lambda c: (votes[c], weight[c]))
        correct += winner == y[i]
    assert knn_accuracy(features, labels) == pytest.approx(correct / len(y))


def test_stratified_split_keeps_every_class_on_both_sides_and_is_seeded() -> None:
    labels = torch.tensor([0] * 8 + [1] * 4 + [2] * 1)
    train, test = stratified_split(labels, 0.25, seed=3)
    assert sorted(torch.cat([train, test]).tolist()) == list(range(13))
    assert set(labels[test].tolist()) == {0, 1} and set(labels[train].tolist()) == {0, 1, 2}
    again = stratified_split(labels, 0.25, seed=3)
    assert torch.equal(train, again[0]) and torch.equal(test, again[1])


def test_logistic_regression_matches_scikit_learn() -> None:
    features, labels = make_features(150, 6, 3, 0.4, seed=20)
    x = (features - features.mean(0)) / features.std(0)
    weight, bias = fit_logistic_regression(x, labels, 3, l2=1e-2)
    # scikit-learn minimises |W|^2 / 2 + C * sum of losses: C = 1 / (l2 N) is the same objective
    reference = LogisticRegression(C=1 / (1e-2 * 150), tol=1e-10, max_iter=10_000)
    reference.fit(x.numpy(), labels.numpy())
    np.testing.assert_allclose(weight.numpy(), reference.coef_.T, atol=1e-4)
    np.testing.assert_allclose(bias.numpy() - bias.numpy().mean(), reference.intercept_, atol=1e-4)


def test_linear_probe_is_deterministic_for_a_seed() -> None:
    features, labels = make_features(200, 12, 4, 0.3, seed=11)
    first = linear_probe_accuracy(features, labels, seed=5)
    assert linear_probe_accuracy(features, labels, seed=5) == first
    assert 0.0 <= first <= 1.0


# ------------------------------------------------------------------------------------------- ranking


@pytest.mark.parametrize(
    "estimator",
    [logme, hscore, sfda, knn_accuracy, linear_probe_accuracy],
    ids=["logme", "hscore", "sfda", "knn", "linear_probe"],
)
def test_estimators_rank_separable_features_above_noise(estimator) -> None:
    good, labels = make_features(300, 32, 5, 0.5, seed=12)
    bad, _ = make_features(300, 32, 5, 0.0, seed=13)
    assert estimator(good, labels) > estimator(bad, labels)


# ----------------------------------------------------------------------------- saturation at N < D


def test_raw_scores_saturate_on_random_high_dimensional_features_and_defaults_do_not() -> None:
    """N=100, D=2048, labels independent of the features: a linear fit separates them anyway."""
    features, labels = make_features(100, 2048, 5, 0.0, seed=14)
    features = features.float()
    max_h = 5 - 1
    # the raw scores claim perfect separability ...
    assert hscore(features, labels, shrinkage=False, reduce=False) > 0.99 * max_h
    assert sfda(features, labels, reduce=False) > 0.99
    # ... the defaults (shrinkage, or PCA to N/2 dimensions) do not
    assert hscore(features, labels) < 0.5 * max_h
    assert hscore(features, labels, shrinkage=False) < 0.6 * max_h
    assert sfda(features, labels) < 0.8
    assert linear_probe_accuracy(features, labels) < 0.45  # chance is 0.2
    assert knn_accuracy(features, labels) < 0.45
    separable, _ = make_features(100, 2048, 5, 1.0, seed=15)
    noise_evidence = 0.5 * math.log(5) - 0.5 - 0.5 * math.log(2 * math.pi)
    assert logme(features, labels) < noise_evidence + 0.01 < logme(separable.float(), labels)


def test_reduce_dim_matches_pca_and_is_seeded() -> None:
    features, _ = make_features(100, 30, 2, 0.0, seed=16)
    reduced = reduce_dim(features, max_dim=8)
    assert reduced.shape == (100, 8)
    centred = features.numpy() - features.numpy().mean(0)
    vt = np.linalg.svd(centred, full_matrices=False)[2]
    expected = centred @ vt[:8].T
    signs = np.sign((reduced.numpy() * expected).sum(0))
    np.testing.assert_allclose(reduced.numpy() * signs, expected, atol=1e-8)
    assert reduce_dim(features, max_dim=500).shape == (100, 30)  # nothing to cut
    assert reduce_dim(features[:10], max_dim=8).shape == (10, 5)  # at most N / 2
    wide, _ = make_features(1100, 1050, 2, 0.0, seed=17)  # min(N, D) > 1024: randomised PCA
    first, second = reduce_dim(wide.float(), max_dim=16, seed=3), reduce_dim(wide.float(), max_dim=16, seed=3)
    assert first.shape == (1100, 16) and torch.equal(first, second)


@pytest.mark.parametrize("value", [0.0, 3.0], ids=["zero", "constant"])
def test_features_that_carry_no_information_give_chance_scores(value: float) -> None:
    labels = torch.arange(60) % 3
    features = torch.full((60, 8), value)
    noise_evidence = 0.5 * math.log(3) - 0.5 - 0.5 * math.log(2 * math.pi)
    if value == 0.0:
        assert logme(features, labels) == pytest.approx(noise_evidence)
    assert math.isfinite(logme(features, labels))
    assert hscore(features, labels) == 0.0
    assert sfda(features, labels) == pytest.approx(1 / 3)
    assert linear_probe_accuracy(features, labels) == pytest.approx(1 / 3)


# ------------------------------------------------------------------------------------------ all, errors


def test_estimate_all_runs_every_applicable_estimator_and_says_what_it_skipped() -> None:
    features, labels = make_features(120, 10, 3, 0.5, seed=18)
    scores = estimate_all(features, labels)
    assert isinstance(scores, Estimates) and isinstance(scores, dict)
    assert set(scores) == {"logme", "hscore", "sfda", "knn_accuracy", "linear_probe_accuracy"}
    assert set(scores.skipped) == {"leep", "nce"} and "source_logits" in scores.skipped["leep"]
    assert all(math.isfinite(v) for v in scores.values())
    logits = torch.randn(120, 7, generator=torch.Generator().manual_seed(0))
    with_head = estimate_all(features, labels, source_logits=logits)
    assert {"leep", "nce"} <= set(with_head) and with_head.skipped == {}
    # every name is an estimator score kind of the vocabulary, and every such kind is measured
    assert set(with_head) == set(score_kinds(ScoreRole.ESTIMATOR))
    # N >= 2 D: LogME, H-score and SFDA share one Gram product, and give what each gives alone
    alone = {
        "logme": logme(features, labels),
        "hscore": hscore(features, labels),
        "sfda": sfda(features, labels),
    }
    assert {k: with_head[k] for k in alone} == pytest.approx(alone, rel=1e-12)


@pytest.mark.parametrize(
    ("features", "labels", "message"),
    [
        (torch.randn(10, 3), torch.zeros(10, dtype=torch.long), "single class"),
        (torch.randn(3, 3), torch.tensor([0, 1, 2]), "more samples than classes"),
        (torch.tensor([[0.0, math.nan], [1.0, 2.0], [3.0, 4.0]]), torch.tensor([0, 1, 0]), "NaN"),
        (torch.tensor([[0.0, math.inf], [1.0, 2.0], [3.0, 4.0]]), torch.tensor([0, 1, 0]), "NaN or infinite"),
        (torch.randn(6, 3), torch.tensor([0, 1, 0, 1, 0]), "one label per sample"),
        (torch.randn(6), torch.tensor([0, 1, 0, 1, 0, 1]), "2-D"),
        (torch.randn(6, 3), torch.tensor([0.0, 1, 0, 1, 0, 1]), "integer"),
    ],
)
@pytest.mark.parametrize(
    "estimator", [logme, hscore, sfda, knn_accuracy, linear_probe_accuracy, estimate_all]
)
def test_bad_input_raises_one_clear_probe_error(estimator, features, labels, message: str) -> None:
    with pytest.raises(ProbeError, match=message) as info:
        estimator(features, labels)
    assert isinstance(info.value, ValueError)
    assert str(info.value).count(". ") == 0 and str(info.value).endswith(".")  # one sentence


@pytest.mark.parametrize("estimator", [leep, nce])
def test_leep_and_nce_without_the_source_head_say_what_is_missing(estimator) -> None:
    with pytest.raises(ProbeError, match=r"needs the source model's classifier head"):
        estimator(torch.randn(4, 3), torch.tensor([0, 1, 0, 1]))
    with pytest.raises(ProbeError, match="NaN or infinite"):
        estimator(None, torch.tensor([0, 1, 0, 1]), source_logits=torch.full((4, 3), math.nan))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_tensors_give_the_cpu_scores() -> None:
    features, labels = make_features(400, 24, 4, 0.4, seed=19)
    logits = torch.randn(400, 9, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    cpu = estimate_all(features, labels, logits)
    gpu = estimate_all(features.cuda(), labels.cuda(), logits.cuda())
    for name, value in cpu.items():
        assert gpu[name] == pytest.approx(value, rel=1e-6, abs=1e-6), name


# ------------------------------------------------------------------------------- shared linear algebra


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_gram_matches_the_plain_product(dtype: torch.dtype) -> None:
    x = torch.randn(6149, 40, generator=torch.Generator().manual_seed(20), dtype=dtype)
    product = linalg.gram(x)
    assert product.dtype == dtype and torch.equal(product, product.T)
    expected = x.double().T @ x.double()
    tol = 1e-4 if dtype == torch.float32 else 1e-10
    assert torch.allclose(product.double(), expected, rtol=tol, atol=tol * float(expected.abs().max()))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_eigen_projection_matches_a_full_eigendecomposition(dtype: torch.dtype) -> None:
    generator = torch.Generator().manual_seed(21)
    a = torch.randn(60, 45, generator=generator, dtype=torch.float64)
    sym = (a.T @ a).to(dtype)  # (45, 45), distinct eigenvalues
    rhs = torch.randn(45, 7, generator=generator, dtype=torch.float64)
    evals, projected = linalg.eigh_project(sym, rhs)
    ref_evals, ref_vecs = np.linalg.eigh(sym.double().numpy())
    ref_projected = ref_vecs.T @ rhs.numpy()
    tol = 2e-4 if dtype == torch.float32 else 1e-9
    assert evals.dtype == dtype and projected.shape == (45, 7)
    assert np.allclose(evals.double().numpy(), ref_evals, rtol=tol, atol=tol * ref_evals.max())
    # each eigenvector is defined up to its sign, so compare magnitudes
    assert np.allclose(np.abs(projected.double().numpy()), np.abs(ref_projected), atol=tol * 50)

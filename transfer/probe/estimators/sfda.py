"""SFDA (Shao et al. 2022): a self-challenging Fisher discriminant's mean posterior of the true class."""

from __future__ import annotations

import math

import torch
from torch import Tensor

from transfer.probe.estimators import linalg
from transfer.probe.estimators.inputs import check_inputs
from transfer.probe.estimators.moments import Moments, centred_moments
from transfer.probe.estimators.reduction import maybe_reduce


def _regularised_lda(
    s_w: Tensor, means: Tensor, shrinkage: float | None, dtype: torch.dtype = torch.float64
) -> tuple[Tensor, Tensor, float]:
    """Regularised Fisher discriminant: coefficients S^-1 mu_c (D, C), offsets -mu_c^T S^-1 mu_c / 2 (C,).

    ``s_w`` (D, D) float64 is sum_c prior_c cov_c (biased), and is overwritten with the shrunk
    S = (1 - l) S_W + l tr(S_W)/D I with, when not given, the adaptive
    l = max(exp(-5 lambda_max(S_W)), 1e-10). In the C-1 dimensional Fisher space of (S_B, S) the
    Bayes rule with a shared covariance scores class c by z^T mu_c - |mu_c|^2 / 2 + log prior_c,
    which equals x^T S^-1 mu_c - mu_c^T S^-1 mu_c / 2 +
    log prior_c in the original space: once S is whitened, the directions the projection drops carry
    no difference between class means. So one Cholesky solve replaces the generalised
    eigenproblem, and gives exactly what SFDA's reference code computes with all the eigenvectors.

    ``dtype`` is the precision the scatter was computed in: for float32 features (whose Gram product
    already carries float32 rounding, and whose scores are taken against float32 coefficients) the
    factorisation and solve run in float32, half the time of float64; when that factor does not
    exist (S nearly singular in float32) it falls back to float64 with the jitter below.
    """
    d = s_w.shape[0]
    mean_variance = float(torch.trace(s_w)) / d
    if shrinkage is None:
        largest = linalg.largest_eigenvalue(s_w) if mean_variance > 0 else 0.0
        shrinkage = max(math.exp(-5 * largest), 1e-10)
    shrunk = s_w.mul_(1 - shrinkage)  # in place (see above): D x D float64 copies cost page faults
    shrunk.diagonal().add_(shrinkage * mean_variance)
    if dtype == torch.float32:
        chol = linalg.cholesky(shrunk.float())
        if chol is not None:
            coef = linalg.cholesky_solve(chol, means.T.float().contiguous()).to(means.device).double()
            return coef, -0.5 * (means * coef.T).sum(1), shrinkage
    chol = linalg.cholesky(shrunk)
    # Rank-deficient S_W (N < D) with the 1e-10 floor can fail by rounding (float32 Grams especially):
    # add a jitter of D float32 epsilons times the mean variance (or, with no within-class variance
    # at all, times the mean square of the class means), growing tenfold until the factor exists.
    scale = mean_variance if mean_variance > 0 else float(means.square().mean()) or 1.0
    jitter = d * torch.finfo(torch.float32).eps * scale
    while chol is None:
        shrunk.diagonal().add_(jitter)
        jitter *= 10
        chol = linalg.cholesky(shrunk)
    coef = linalg.cholesky_solve(chol, means.T.contiguous()).to(means.device)  # (D, C)
    return coef, -0.5 * (means * coef.T).sum(1), shrinkage


def sfda(
    features: Tensor,
    labels: Tensor,
    *,
    reduce: bool | None = None,
    max_dim: int = 256,
    seed: int = 0,
) -> float:
    """SFDA (Shao et al. 2022): mean p(y_i | x_i) after a self-challenging Fisher discriminant, in (0, 1].

    1. Regularised Fisher discriminant analysis with the adaptive shrinkage
       l = exp(-5 lambda_max(S_W)) of the within-class scatter (see ``_regularised_lda``), giving
       p(y | x) for every sample.
    2. ConfMix, the self-challenge: soften p with a softmax over classes (as the authors' code does),
       and move each sample towards the mean of the *other* classes' means in proportion to how
       unsure the first model is: x' = a_i x_i + (1 - a_i) o_{y_i}, a_i the softened p(y_i | x_i),
       o_c the mean of the other classes' means.
    3. Refit the discriminant on x' with the same l; the score is the mean p(y_i | x_i') (the paper's
       log is dropped, as in the reference code, for stability).

    Simplifications, stated honestly: the Fisher projection is not materialised (it gives the same
    posteriors, see ``_regularised_lda``); lambda_max is computed exactly (Lanczos) where the
    reference code takes three power-iteration steps, which can underestimate it and so shrink more.
    Like the reference, the adaptive shrinkage depends on the features' scale. Scores are
    resubstitution estimates, so features are cut to their principal components when N < 2 D (see
    the module docstring).

    Cost: x' is never formed. The discriminant is translation invariant, so the features are centred
    once; S_W = (X^T X - sum_c n_c mu_c mu_c^T) / N, and with u_i = x_i - o_c the mixed scatter is
    sum_i a_i^2 u_i u_i^T - sum_c n_c m_c m_c^T (m_c the class mean of a u), whose one N x D^2 term is
    the Gram matrix of the rows a_i x_i; the rest are rank-C corrections. Two Gram products, no
    gathers.
    """
    checked = check_inputs(features, labels)
    f = maybe_reduce(checked.features, reduce, max_dim, seed)
    return sfda_from_moments(centred_moments(f, checked))


def sfda_from_moments(m: Moments) -> float:
    """SFDA from the centred moments (``sfda`` without its checks and dimension cut)."""
    x, y, num_classes, counts = m.x, m.labels, m.num_classes, m.counts
    n = x.shape[0]
    rows = torch.arange(n, device=x.device)
    log_priors = torch.log(counts / n)

    # Stage 1: the discriminant on the features themselves
    means = m.class_sums / counts[:, None]  # (C, D)
    s_w = (
        linalg.low_rank(means, counts[:, None] * means, x.dtype).sub_(m.gram).div_(-n)
    )  # (X^T X - M^T N M) / n
    coef, offset, shrinkage = _regularised_lda(s_w, means, None, x.dtype)
    probs = torch.softmax(linalg.matmul(x, coef.to(x.dtype)).double() + offset + log_priors, dim=1)

    # Stage 2: ConfMix, then the discriminant again with the same shrinkage
    a = torch.softmax(probs, dim=1)[rows, y]  # softened p(y_i | x_i), (N,)
    outer = (means.sum(0, keepdim=True) - means) / (num_classes - 1)  # o_c, (C, D)
    weight = a[:, None].to(x.dtype)
    z = x * weight  # rows a_i x_i, (N, D)
    sum_a = linalg.class_sums(z, y, num_classes)  # sum_{i in c} a_i x_i, (C, D)
    s_w_mixed = linalg.gram(z, torch.float64)
    sum_a2 = linalg.class_sums(z.mul_(weight), y, num_classes)  # sum_{i in c} a_i^2 x_i; z is spent
    a_per_class = torch.zeros_like(counts).index_add_(0, y, a)  # sum_{i in c} a_i, (C,)
    a2_per_class = torch.zeros_like(counts).index_add_(0, y, a.square())
    shift_means = (sum_a - a_per_class[:, None] * outer) / counts[:, None]  # m_c = mean_c(a u), (C, D)
    # sum_i a_i^2 u_i u_i^T = Z^T Z - S^T O - O^T S + O^T diag(q) O, then minus M^T diag(n) M, with
    # Z rows a_i x_i, S rows sum_{i in c} a_i^2 x_i, O rows o_c, M rows m_c, q_c = sum_{i in c} a_i^2
    left = torch.cat([sum_a2, outer, shift_means])  # (3C, D)
    right = torch.cat([-outer, a2_per_class[:, None] * outer - sum_a2, -counts[:, None] * shift_means])
    s_w_mixed.add_(linalg.low_rank(left, right, x.dtype)).div_(n)
    coef, offset, _ = _regularised_lda(s_w_mixed, outer + shift_means, shrinkage, x.dtype)
    # x'_i^T coef = o_c^T coef + a_i (x_i^T coef - o_c^T coef)
    outer_scores = (outer @ coef)[y]
    scores = outer_scores + a[:, None] * (linalg.matmul(x, coef.to(x.dtype)).double() - outer_scores)
    probs = torch.softmax(scores + offset + log_priors, dim=1)
    return float(probs[rows, y].mean())

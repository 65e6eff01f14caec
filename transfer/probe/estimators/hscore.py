"""H-score (Bao et al. 2019) and its Ledoit-Wolf shrinkage form (Ibrahim et al. 2022): how much of
the features' variance lies between the class means."""

from __future__ import annotations

import torch
from torch import Tensor

from transfer.probe.estimators import linalg
from transfer.probe.estimators.inputs import check_inputs
from transfer.probe.estimators.moments import Moments, centred_moments
from transfer.probe.estimators.reduction import maybe_reduce, reduce_dim


def _ledoit_wolf_shrinkage(x: Tensor, cov: Tensor) -> float:
    """Ledoit-Wolf (2004) shrinkage intensity for centred ``x`` (N, D) with ``cov = x^T x / N``.

    The same estimator as ``sklearn.covariance.ledoit_wolf_shrinkage``; its sum over X2^T X2 equals
    sum_i |x_i|^4, which is O(N D) instead of a second Gram product.
    """
    n, d = x.shape
    mu = float(torch.trace(cov)) / d
    row_sq = torch.linalg.vector_norm(x, dim=1).double().square()
    beta_ = float(row_sq.square().sum())
    delta_ = float(cov.square().sum())
    beta = (beta_ / n - delta_) / (d * n)
    delta = (delta_ - d * mu**2) / d
    beta = min(beta, delta)
    return 0.0 if beta <= 0 else beta / delta


def hscore(
    features: Tensor,
    labels: Tensor,
    *,
    shrinkage: bool = True,
    reduce: bool | None = None,
    max_dim: int = 256,
    seed: int = 0,
) -> float:
    """H-score: tr(cov(f)^-1 cov(E[f | y])), in [0, C - 1]; higher is better.

    With ``shrinkage`` (default) it is the regularised H-score of Ibrahim et al. 2022: the feature
    covariance is the Ledoit-Wolf estimate (1 - a) S + a tr(S)/D I, and the between-class covariance
    is scaled by (1 - a) alike, so H = tr(S_a^-1 (1 - a) cov(E[f|y])); the shrunk covariance is
    positive definite, so a Cholesky solve replaces the pseudo-inverse. Without shrinkage it is Bao
    et al.'s score with a pseudo-inverse (cut-off max(N, D) * eps * largest eigenvalue, eps of the
    features' precision; from the N x N Gram matrix when N < D); that one saturates at C - 1 when
    N < 2 D, so it is computed on ``reduce_dim`` features there unless ``reduce=False``. Covariances
    use 1/N throughout (TLlib's numpy version mixes 1/N and 1/(N-1)).
    """
    checked = check_inputs(features, labels)
    f = checked.features
    if not shrinkage:
        f = maybe_reduce(f, reduce, max_dim, seed)
    elif reduce:
        f = reduce_dim(f, max_dim=max_dim, seed=seed)
    n, d = f.shape
    if shrinkage or n >= d:
        return hscore_from_moments(centred_moments(f, checked), shrinkage=shrinkage)
    # N-dim form: with F = U S V^T (centred), tr(pinv(cov) cov(E[f|y])) = sum_c n_c |mean_c(U)|^2
    f = f.to(linalg.compute_dtype(f))
    evals, u = linalg.eigh(linalg.gram((f - f.mean(0, keepdim=True)).T))
    evals, u = evals.to(f.device), u.to(f.device)
    keep = evals > max(n, d) * torch.finfo(f.dtype).eps * float(evals.max().clamp_min(0))
    counts = checked.counts.double()
    class_means = linalg.class_sums(u[:, keep], checked.labels, checked.num_classes) / counts[:, None]
    return float((counts[:, None] * class_means.square()).sum())


def hscore_from_moments(m: Moments, *, shrinkage: bool = True) -> float:
    """The H-score from the centred moments (``hscore`` without its checks and dimension cut)."""
    n, d = m.x.shape
    cov = m.gram / n
    # sqrt(n_c / N) * class mean of the centred features, so cov(E[f|y]) = means_w^T means_w, (C, D)
    means_w = m.class_sums / m.counts[:, None] * (m.counts / n).sqrt()[:, None]
    between_scale = 1.0
    if shrinkage:
        a = _ledoit_wolf_shrinkage(m.x, cov)
        mean_variance = float(torch.trace(cov)) / d
        shrunk = cov.mul_(1 - a)  # in place: cov is a fresh copy, and not read again unshrunk
        shrunk.diagonal().add_(a * mean_variance)
        chol = linalg.cholesky(shrunk)
        if chol is not None:
            return float((1 - a) * linalg.solve_lower(chol, means_w.T.contiguous()).square().sum())
        cov, between_scale = shrunk, 1 - a  # singular even after shrinkage (constant features)
    evals, evecs = linalg.eigh(cov)
    evals, evecs = evals.to(cov.device), evecs.to(cov.device)
    cutoff = max(n, d) * torch.finfo(m.x.dtype).eps * float(evals.max().clamp_min(0))
    keep = evals > cutoff
    projected = means_w @ evecs[:, keep]  # pinv(cov) = V diag(1/l) V^T on the kept eigenvalues
    return float(between_scale * (projected.square() / evals[keep]).sum())

"""LogME (You et al. 2021): the maximum log evidence of a Bayesian linear model on the features."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from transfer.probe.estimators import linalg
from transfer.probe.estimators.inputs import check_inputs
from transfer.probe.estimators.moments import Moments, centred_moments


@dataclass(frozen=True)
class LogMEFit:
    """LogME's converged per-class hyper-parameters.

    ``evidence`` (C,) is each class's maximum log evidence divided by N; ``score`` is its mean;
    ``alpha`` (C,) the prior precision of the weights, ``beta`` (C,) the noise precision;
    ``iterations`` the fixed-point steps taken by the slowest class.
    """

    score: float
    evidence: Tensor
    alpha: Tensor
    beta: Tensor
    iterations: int


def logme_fit(features: Tensor, labels: Tensor, *, max_iter: int = 200, tol: float = 1e-9) -> LogMEFit:
    """LogME (You et al. 2021) with its hyper-parameters, for inspection and tests.

    For each class c, one-vs-rest targets y (N,) are modelled as y = F w + noise with
    w ~ N(0, alpha^-1 I_D) and noise ~ N(0, beta^-1). The log evidence is::

        L = D/2 log a + N/2 log b - 1/2 log|A| - b/2 |F m - y|^2 - a/2 |m|^2 - N/2 log 2 pi
        A = a I + b F^T F,   m = b A^-1 F^T y

    maximised by MacKay's fixed point gamma = sum_i b s_i / (a + b s_i), a = gamma / |m|^2,
    b = (N - gamma) / |F m - y|^2, with s_i the eigenvalues of F^T F. One eigen-decomposition serves
    every class: of F^T F (D x D) when N >= D, else of F F^T (N x N), whose N eigenvalues hold the
    non-zero part of the spectrum (the other D - N contribute log a each to log|A|). With t = a / b:
    when N >= D, c = V^T F^T y gives |m|^2 = sum c^2 / (t + s)^2 and |F m - y|^2 = |y|^2 - sum
    c^2 (2t + s) / (t + s)^2 (no 1 / s, so rank-deficient features are safe); when N < D,
    x = U^T y over the complete basis U gives |m|^2 = sum s x^2 / (t + s)^2 and
    |F m - y|^2 = sum x^2 t^2 / (t + s)^2, which stays accurate as the fit interpolates. All
    classes iterate together; the evidence is then evaluated exactly at the converged (a, b).
    Features are used as given (not centred), as in the paper.

    Two boundaries are handled explicitly. Labels the features cannot explain send a -> infinity:
    the evidence then tends to that of pure noise, which is returned (with ``alpha = inf``) when it
    beats the fixed point. With N <= D and separable classes the fit interpolates and b -> infinity;
    the evidence has a finite limit there, reached once t = a / b hits its floor (1e-15 of the top
    eigenvalue). Neither is a saturation: random features score the noise value, not a high one.
    """
    checked = check_inputs(features, labels)
    n, d = checked.features.shape
    if n >= d:
        return logme_from_moments(centred_moments(checked.features, checked), max_iter=max_iter, tol=tol)
    f = checked.features.to(linalg.compute_dtype(checked.features))
    onehot = linalg.onehot(checked.labels, checked.num_classes, f.dtype)
    sigma, x = linalg.eigh_project(
        linalg.gram(f.T), onehot
    )  # F F^T (N, N), x = U^T y over the complete basis U
    x2 = x.double().square().cpu().numpy()  # c^2 = s x^2
    sigma = sigma.double().clamp_min(0).cpu().numpy()[:, None]  # (N, 1)

    def fit_terms(t: np.ndarray, cols: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """|m|^2 and |F m - y|^2 at t = alpha / beta, without cancellation near interpolation."""
        x2_cols = x2[:, cols]
        denom = np.square(sigma + t)
        return (sigma * x2_cols / denom).sum(0), (x2_cols * np.square(t) / denom).sum(0)

    return _logme_fixed_point(sigma, fit_terms, n, d, checked.counts.double().cpu().numpy(), max_iter, tol)


def logme_from_moments(m: Moments, *, max_iter: int = 200, tol: float = 1e-9) -> LogMEFit:
    """LogME for N >= D from the centred moments: F^T F = X^T X + N mu mu^T, F^T y_c = sum_c + n_c mu."""
    n, d = m.x.shape
    gram = m.gram + n * torch.outer(m.mean, m.mean)
    sums = m.class_sums + m.counts[:, None] * m.mean[None, :]  # (C, D) = (F^T Y)^T
    # in the features' precision, see the module docstring; c = V^T F^T y, (D, C)
    sigma, c = linalg.eigh_project(gram.to(m.x.dtype), sums.T)
    c2 = c.double().square().cpu().numpy()
    sigma = sigma.double().clamp_min(0).cpu().numpy()[:, None]  # (D, 1)
    n_c = m.counts.cpu().numpy()

    def fit_terms(t: np.ndarray, cols: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """|m|^2 and |F m - y|^2 at t = alpha / beta for the classes ``cols``."""
        weighted = c2[:, cols] / np.square(sigma + t)
        res2 = n_c[cols] - (weighted * (2 * t + sigma)).sum(0)
        return weighted.sum(0), np.maximum(res2, 1e-12 * n_c[cols])

    return _logme_fixed_point(sigma, fit_terms, n, d, n_c, max_iter, tol)


def _logme_fixed_point(
    sigma: np.ndarray,
    fit_terms: Callable[[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]],
    n: int,
    d: int,
    n_c: np.ndarray,
    max_iter: int,
    tol: float,
) -> LogMEFit:
    """MacKay's fixed point for every class at once, then the exact evidence at the result.

    ``sigma`` (r, 1) is the spectrum of F^T F (r = min(N, D) values); ``fit_terms(t, cols)`` gives
    |m|^2 and |F m - y|^2 at t = alpha / beta for the classes ``cols``. NumPy on the host: a few
    hundred small steps would mostly wait on torch's thread synchronisation.
    """
    num_classes = n_c.shape[0]
    tiny = np.finfo(np.float64).tiny
    # Labels the features cannot explain drive alpha to infinity (w = 0): the supremum is then the
    # evidence of pure noise, y ~ N(0, 1/beta) with beta = N / |y|^2, which the iteration only
    # approaches; it is taken below wherever it is higher.
    at_infinity = (n / 2 * np.log(n / n_c) - n / 2 - n / 2 * math.log(2 * math.pi)) / n
    scale = float(sigma.max())
    if scale <= 0:  # all-zero features explain nothing
        inf = torch.full((num_classes,), math.inf, dtype=torch.float64)
        return LogMEFit(
            float(at_infinity.mean()), torch.from_numpy(at_infinity), inf, torch.from_numpy(n / n_c), 0
        )
    t_lo, t_hi = scale * 1e-15, scale * 1e15  # keep t = alpha / beta finite whatever the data

    def moments(t: np.ndarray, cols: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        m2, res2 = fit_terms(t, cols)
        return (sigma / (sigma + t)).sum(0), m2, np.maximum(res2, tiny)

    alpha = np.ones(num_classes)
    t = np.clip(alpha, t_lo, t_hi)  # alpha = beta = 1 to start, as in the reference code
    active = np.arange(num_classes)  # classes still iterating
    iterations = 0
    while active.size > 0 and iterations < max_iter:
        iterations += 1
        gamma, m2, res2 = moments(t[active], active)
        new_alpha = gamma / np.maximum(m2, tiny)
        new_t = np.clip(new_alpha * res2 / np.maximum(n - gamma, tiny), t_lo, t_hi)  # alpha / beta
        converged = np.abs(new_t - t[active]) <= tol * t[active]
        alpha[active], t[active] = new_alpha, new_t
        active = active[~converged]
    alpha = np.maximum(alpha, tiny)
    beta = alpha / t  # the (alpha, beta) pair of the final t
    _, m2, res2 = moments(t, np.arange(num_classes))
    r = sigma.shape[0]
    logdet = np.log(alpha + beta * sigma).sum(0) + (d - r) * np.log(alpha)
    evidence = (
        d / 2 * np.log(alpha)
        + n / 2 * np.log(beta)
        - logdet / 2
        - beta / 2 * res2
        - alpha / 2 * m2
        - n / 2 * math.log(2 * math.pi)
    ) / n
    noise_only = at_infinity > evidence
    evidence = np.where(noise_only, at_infinity, evidence)
    alpha = np.where(noise_only, math.inf, alpha)
    beta = np.where(noise_only, n / n_c, beta)
    return LogMEFit(
        float(evidence.mean()),
        torch.from_numpy(evidence),
        torch.from_numpy(alpha),
        torch.from_numpy(beta),
        iterations,
    )


def logme(features: Tensor, labels: Tensor) -> float:
    """LogME: mean over classes of the maximum log evidence / N (higher is better). See ``logme_fit``."""
    return logme_fit(features, labels).score

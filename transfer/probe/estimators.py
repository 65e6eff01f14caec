"""Transferability estimators: how well would a pretrained model's features serve a target task?

Every estimator reads the target samples' features from the pretrained model (before its head) and
the target labels; LEEP and NCE also read the source head's raw logits on the same samples.
Higher is better for every score. Shapes::

    features       float (N, D)   any float dtype, CPU or CUDA
    labels         int   (N,)     any integer labels; remapped to 0..C-1 in sorted order
    source_logits  float (N, C_s) raw logits of the source model's classifier head

=============  ==========================================================  ===============
estimator      what it measures                                            dimension cut
=============  ==========================================================  ===============
logme          mean per-class log evidence / N of Bayesian linear           no
               regression (You et al. 2021)
leep           log expected empirical prediction (Nguyen et al. 2020)      n/a
nce            negative conditional entropy -H(Y|Z) (Tran et al. 2019)     n/a
hscore         tr(cov(f)^-1 cov(E[f|y])) with Ledoit-Wolf shrinkage        only without
               (Bao et al. 2019; Ibrahim et al. 2022)                       shrinkage
sfda           self-challenging Fisher discriminant (Shao et al. 2022)     yes
knn_accuracy   leave-one-out k-NN accuracy, cosine similarity              no
linear_probe   held-out accuracy of an L2 multinomial logistic regression  yes
=============  ==========================================================  ===============

Few samples in many dimensions (N < 2 D) make a linear classifier fit anything: the plain H-score
reaches its maximum C - 1, resubstituted Fisher discriminants (SFDA) call every sample correct, and
a logistic regression separates random labels. The estimators marked "yes" above therefore first
project the features on their leading principal components (``reduce_dim``, to at most N / 2
dimensions) when N < 2 D; ``reduce=False`` turns that off, ``reduce=True`` forces it. LogME needs
no cut: its evidence penalises the fit through the prior precision alpha, and it uses the N-dim
form of the SVD when N < D. The shrinkage H-score needs none either: the shrinkage keeps the
covariance invertible. k-NN has nothing to fit.

Precision and cost: the N x D^2 Gram products run as symmetric rank-k updates (BLAS ``syrk``)
in the input's precision (float32 stays float32; anything else becomes float64), on centred data
wherever the estimator centres, so float32 loses little to cancellation; on CPU long inputs are cut
into row blocks, one ``syrk`` per Python thread (``_gram``). LogME's eigen-decomposition also runs
in the input's precision: the Gram matrix of float32 features is only float32-accurate anyway, and
on 10,000 x 2,048 features a float32 decomposition moved the score by 3e-8 relative. It never
forms the eigenvectors on CPU: LogME needs only their products with the (D, C) right-hand side,
which the tridiagonal reduction's reflectors give without the D^3 back-transformation
(``_eigh_project``). Everything after that (fixed points, Cholesky factors, solves, shrinkages) is
float64. On CPU the D x D factorisations and the (N, D) x (D, C) products go through SciPy's and
NumPy's OpenBLAS on one thread (``_one_blas_thread``): on the shared 2-core machine we measured,
two BLAS threads made ``eigh`` of a 2,048 x 2,048 matrix 3-15x slower than one whenever another
process held a core, and torch's MKL was slower than OpenBLAS on these AMD CPUs either way. Small
iterative parts (LogME's fixed point, the probe's L-BFGS) run in NumPy for the same reason: many
tiny steps mostly wait on thread synchronisation in torch. CUDA tensors stay on their device and
use torch's linear algebra; only small arrays (LogME's (D, C) projections, the probe's parameters)
visit the host.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import scipy.linalg
import scipy.optimize
import torch
from scipy.linalg import blas, get_lapack_funcs
from scipy.sparse.linalg import LinearOperator, eigsh
from threadpoolctl import ThreadpoolController
from torch import Tensor

from kg.errors import UserError

__all__ = [
    "Estimates",
    "LogMEFit",
    "ProbeError",
    "estimate_all",
    "fit_logistic_regression",
    "hscore",
    "knn_accuracy",
    "leep",
    "linear_probe_accuracy",
    "logme",
    "logme_fit",
    "nce",
    "reduce_dim",
    "sfda",
    "stratified_split",
]


class ProbeError(UserError, ValueError):
    """A probe cannot run on the inputs it was given; the message is one sentence for the user."""


# ---------------------------------------------------------------------------------------------------
# Input checks and shared linear algebra


@dataclass(frozen=True)
class _Checked:
    features: Tensor  # (N, D) floating
    labels: Tensor  # (N,) int64 in 0..C-1, on features' device
    counts: Tensor  # (C,) int64
    num_classes: int


def _check(features: Tensor, labels: Tensor) -> _Checked:
    """Validate features and labels and remap the labels to 0..C-1."""
    features = torch.as_tensor(features)
    labels = torch.as_tensor(labels)
    if features.ndim != 2:
        raise ProbeError(f"features must be a 2-D (samples, dims) tensor, got shape {tuple(features.shape)}.")
    if labels.ndim != 1 or labels.shape[0] != features.shape[0]:
        raise ProbeError(
            f"labels must be 1-D with one label per sample: {tuple(labels.shape)} labels "
            f"for {features.shape[0]} samples."
        )
    if features.shape[0] == 0 or features.shape[1] == 0:
        raise ProbeError("features are empty: there is nothing to probe.")
    if labels.dtype.is_floating_point or labels.dtype.is_complex or labels.dtype == torch.bool:
        raise ProbeError(f"labels must be integer class indices, got dtype {labels.dtype}.")
    if not features.dtype.is_floating_point:
        features = features.float()
    if not _all_finite(features):
        raise ProbeError("features contain NaN or infinite values; check the feature extraction.")
    classes, inverse, counts = torch.unique(labels, return_inverse=True, return_counts=True)
    num_classes = int(classes.numel())
    n = features.shape[0]
    if num_classes < 2:
        raise ProbeError("labels hold a single class: transferability needs at least two classes.")
    if n <= num_classes:
        raise ProbeError(f"{n} samples for {num_classes} classes: probes need more samples than classes.")
    return _Checked(features, inverse.to(features.device), counts.to(features.device), num_classes)


def _check_logits(source_logits: Tensor | None, n: int, estimator: str) -> Tensor:
    if source_logits is None:
        raise ProbeError(
            f"{estimator} needs the source model's classifier head (source_logits); "
            "this model has none, so use a feature-based estimator such as LogME."
        )
    logits = torch.as_tensor(source_logits)
    if logits.ndim != 2 or logits.shape[0] != n:
        raise ProbeError(
            f"source_logits must be (samples, source classes) with {n} samples, got {tuple(logits.shape)}."
        )
    if not logits.dtype.is_floating_point:
        logits = logits.float()
    if not _all_finite(logits):
        raise ProbeError("source_logits contain NaN or infinite values; check the source head.")
    return logits


def _all_finite(x: Tensor) -> bool:
    """True when no entry is NaN or infinite; one reduction instead of an (N, D) mask in the usual case."""
    if bool(torch.isfinite(x.sum())):
        return True
    return bool(torch.isfinite(x).all())  # the sum may also overflow on huge but finite values


def _gram(x: Tensor, dtype: torch.dtype | None = None) -> Tensor:
    """``x.T @ x`` (D, D) for ``x`` (N, D), symmetric, in ``dtype`` (default: x's dtype).

    CPU: one BLAS ``syrk`` (half a GEMM) through SciPy's OpenBLAS on its own threads, which ran the
    product 1.5-2x faster than torch's MKL on our AMD CPUs. (Splitting the rows over Python threads
    does not help: SciPy's BLAS wrappers hold the GIL, so the blocks ran one after another.) The
    triangle is mirrored straight into the output dtype, so a float64 result costs one D x D pass,
    not a float32 copy and then a float64 one.
    """
    dtype = dtype or x.dtype
    if x.device.type != "cpu" or x.dtype not in (torch.float32, torch.float64):
        return (x.T @ x).to(dtype)
    a = x.detach().contiguous().numpy()
    syrk = blas.ssyrk if x.dtype == torch.float32 else blas.dsyrk
    # a.T is Fortran-ordered, so no copy; syrk fills the upper triangle of a zeroed matrix
    upper = torch.from_numpy(syrk(1.0, a.T, trans=0, lower=0))
    full = upper.to(dtype, copy=True)
    full += upper.T
    full.diagonal().mul_(0.5)
    return full


@lru_cache(maxsize=1)
def _blas_controller() -> ThreadpoolController:
    """The BLAS libraries loaded in this process (NumPy's and SciPy's OpenBLAS), inspected once:
    ``threadpool_limits`` walks every loaded library on each call, about 3 ms with torch loaded."""
    return ThreadpoolController()


@contextmanager
def _one_blas_thread() -> Iterator[None]:
    """Run SciPy's LAPACK on one thread: factorising a D x D matrix is largely memory-bound (the
    tridiagonal reduction is BLAS-2), and on a shared 2-core machine two BLAS threads waiting on
    each other made ``eigh`` up to 15x and ``cholesky`` 2.5x slower than one thread."""
    with _blas_controller().limit(limits=1, user_api="blas"):
        yield


def _eigh(sym: Tensor) -> tuple[Tensor, Tensor]:
    """Eigenvalues (ascending) and eigenvectors of a symmetric matrix, in its dtype."""
    if sym.device.type == "cpu":
        # SciPy's LAPACK divide-and-conquer: torch's MKL syevd was 3-10x slower on our AMD CPUs.
        # .T: the Fortran-ordered view LAPACK takes without a transposing copy (same symmetric matrix)
        with _one_blas_thread():
            evals, evecs = scipy.linalg.eigh(sym.numpy().T, driver="evd", check_finite=False)
        return torch.from_numpy(evals), torch.from_numpy(evecs)
    return torch.linalg.eigh(sym)


def _eigh_project(sym: Tensor, rhs: Tensor) -> tuple[Tensor, Tensor]:
    """Eigenvalues (ascending) of a symmetric (D, D) matrix and ``V^T rhs`` (D, K), in sym's dtype,
    where V holds the eigenvectors, without forming V on CPU.

    A full ``eigh`` is three steps: reduction to tridiagonal form Q^T A Q = T (``sytrd``), the
    eigenvectors W of T, and the back-transformation V = Q W (a D x D x D product). Only V^T rhs
    = W^T (Q^T rhs) is needed, so Q^T is applied to the K columns of rhs from its Householder
    reflectors (``ormqr``, as LAPACK's ``ormtr`` does) and the back-transformation is skipped; W
    comes from the MRRR solver (``stemr``). On 2,048 x 2,048 float32 this took about half the time
    of ``eigh(driver="evd")``. CUDA: ``torch.linalg.eigh``.
    """
    if sym.device.type != "cpu" or sym.shape[0] < 3:
        evals, evecs = _eigh(sym)
        return evals, evecs.T @ rhs.to(device=evecs.device, dtype=evecs.dtype)
    a = sym.numpy()
    b = rhs.to(sym.dtype).contiguous().numpy()
    d = a.shape[0]
    sytrd, sytrd_lwork, ormqr = get_lapack_funcs(("sytrd", "sytrd_lwork", "ormqr"), (a,))
    with _one_blas_thread():
        # .T: the Fortran-ordered view LAPACK takes without a transposing copy (same symmetric matrix)
        lwork, info = sytrd_lwork(d, lower=1)
        packed, diag, off, tau, info = sytrd(a.T, lower=1, lwork=int(lwork))
        if info != 0:
            raise np.linalg.LinAlgError(f"sytrd failed with info={info}")
        evals, w = scipy.linalg.eigh_tridiagonal(diag, off, check_finite=False)
        # lower storage: Q = H(1) ... H(D-1), the reflectors of a QR factorisation of packed[1:, :-1]
        # acting on rows 1..D-1, which is how LAPACK's ormtr applies them
        reflectors = np.asfortranarray(packed[1:, :-1])
        _, work, _ = ormqr("L", "T", reflectors, tau, b[1:], -1)
        lwork = max(int(work[0]), b.shape[1], 1)
        qtb = b.copy()
        qtb[1:], _, info = ormqr("L", "T", reflectors, tau, b[1:], lwork)
        if info != 0:
            raise np.linalg.LinAlgError(f"ormqr failed with info={info}")
        projected = w.T @ qtb
    return torch.from_numpy(evals), torch.from_numpy(projected)


def _cholesky(sym: Tensor) -> Tensor | None:
    """Lower Cholesky factor of a symmetric matrix, or None when it is not (numerically) positive definite."""
    if sym.device.type == "cpu":
        try:
            with _one_blas_thread():
                factor = scipy.linalg.cholesky(sym.numpy().T, lower=True, check_finite=False)
            return torch.from_numpy(factor)
        except np.linalg.LinAlgError:
            return None
    chol, info = torch.linalg.cholesky_ex(sym)
    return chol if int(info) == 0 else None


def _solve_lower(chol: Tensor, rhs: Tensor) -> Tensor:
    """L^-1 rhs for a lower-triangular L."""
    if chol.device.type == "cpu":
        with _one_blas_thread():
            return torch.from_numpy(
                scipy.linalg.solve_triangular(chol.numpy(), rhs.numpy(), lower=True, check_finite=False)
            )
    return torch.linalg.solve_triangular(chol, rhs, upper=False)


def _cholesky_solve(chol: Tensor, rhs: Tensor) -> Tensor:
    """(L L^T)^-1 rhs for a lower Cholesky factor L."""
    if chol.device.type == "cpu":
        with _one_blas_thread():
            return torch.from_numpy(
                scipy.linalg.cho_solve((chol.numpy(), True), rhs.numpy(), check_finite=False)
            )
    return torch.cholesky_solve(rhs, chol)


def _compute_dtype(x: Tensor) -> torch.dtype:
    """float32 stays float32 for the N*D^2 products; everything else becomes float64."""
    return torch.float32 if x.dtype == torch.float32 else torch.float64


def _onehot(labels: Tensor, num_classes: int, dtype: torch.dtype) -> Tensor:
    """(N, C) indicator matrix of the labels."""
    out = torch.zeros(labels.shape[0], num_classes, dtype=dtype, device=labels.device)
    out[torch.arange(labels.shape[0], device=labels.device), labels] = 1.0
    return out


def _class_sums(x: Tensor, labels: Tensor, num_classes: int) -> Tensor:
    """(C, D) sums of the rows of ``x`` per class, as float64: one pass of ``index_add_`` on CPU
    (3x faster than a GEMM with the indicator matrix there), that GEMM on CUDA (deterministic)."""
    if x.device.type == "cpu":
        return torch.zeros(num_classes, x.shape[1], dtype=x.dtype).index_add_(0, labels, x).double()
    return (_onehot(labels, num_classes, x.dtype).T @ x).double()


# ---------------------------------------------------------------------------------------------------
# Dimension reduction


def reduce_dim(features: Tensor, max_dim: int = 256, seed: int = 0) -> Tensor:
    """Project centred features on their leading principal components: (N, D) -> (N, q).

    ``q = min(max_dim, N // 2, D)``. Exact (an eigen-decomposition of the smaller Gram matrix) when
    ``min(N, D) <= 1024``; otherwise randomised PCA (range finder with four power iterations) drawn
    from a generator seeded with ``seed``, so the result is reproducible without touching the
    global random state. Returns features unchanged (as float) when ``q >= D``.
    """
    features = torch.as_tensor(features)
    if not features.dtype.is_floating_point:
        features = features.float()
    n, d = features.shape
    q = max(1, min(int(max_dim), n // 2, d))
    if q >= d:
        return features
    x = features.double() - features.double().mean(0, keepdim=True)
    if min(n, d) <= 1024:
        if n <= d:
            evals, evecs = _eigh(x @ x.T)  # (N, N): scores are U * sqrt(lambda)
            top = torch.flip(torch.arange(n - q, n, device=evecs.device), dims=[0])
            scores = evecs[:, top] * evals[top].clamp_min(0).sqrt()
        else:
            evals, evecs = _eigh(x.T @ x)
            top = torch.flip(torch.arange(d - q, d, device=evecs.device), dims=[0])
            scores = x @ evecs[:, top]
        return scores.to(features.dtype)
    # Randomised range finder with power iterations (Halko et al. 2011, as torch.pca_lowrank does),
    # written out so that its own seeded generator, not the global random state, draws the test matrix.
    generator = torch.Generator(device=x.device).manual_seed(seed)
    omega = torch.randn(d, min(q + 10, n, d), generator=generator, device=x.device, dtype=x.dtype)
    basis, _ = torch.linalg.qr(x @ omega)
    for _ in range(4):
        basis, _ = torch.linalg.qr(x @ torch.linalg.qr(x.T @ basis)[0])
    _, _, vh = torch.linalg.svd(basis.T @ x, full_matrices=False)
    return (x @ vh[:q].T).to(features.dtype)


def _maybe_reduce(features: Tensor, reduce: bool | None, max_dim: int, seed: int) -> Tensor:
    n, d = features.shape
    if reduce is None:
        reduce = n < 2 * d
    return reduce_dim(features, max_dim=max_dim, seed=seed) if reduce else features


@dataclass(frozen=True)
class _Moments:
    """Centred features and the sums LogME, the H-score and SFDA all start from; ``estimate_all``
    computes them once, so the three share one N x D^2 Gram product."""

    x: Tensor  # (N, D) features minus their mean, in the compute dtype
    mean: Tensor  # (D,) float64
    gram: Tensor  # (D, D) float64, x^T x
    class_sums: Tensor  # (C, D) float64, per-class sums of the rows of x
    labels: Tensor  # (N,) in 0..C-1
    counts: Tensor  # (C,) float64
    num_classes: int


def _moments(features: Tensor, checked: _Checked) -> _Moments:
    f = features.to(_compute_dtype(features))
    mean = f.mean(0, keepdim=True)
    x = f - mean
    sums = _class_sums(x, checked.labels, checked.num_classes)
    return _Moments(
        x,
        mean[0].double(),
        _gram(x, torch.float64),
        sums,
        checked.labels,
        checked.counts.double(),
        checked.num_classes,
    )


# ---------------------------------------------------------------------------------------------------
# LogME


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
    checked = _check(features, labels)
    n, d = checked.features.shape
    if n >= d:
        return _logme_from_moments(_moments(checked.features, checked), max_iter=max_iter, tol=tol)
    f = checked.features.to(_compute_dtype(checked.features))
    onehot = _onehot(checked.labels, checked.num_classes, f.dtype)
    sigma, x = _eigh_project(_gram(f.T), onehot)  # F F^T (N, N), x = U^T y over the complete basis U
    x2 = x.double().square().cpu().numpy()  # c^2 = s x^2
    sigma = sigma.double().clamp_min(0).cpu().numpy()[:, None]  # (N, 1)

    def fit_terms(t: np.ndarray, cols: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """|m|^2 and |F m - y|^2 at t = alpha / beta, without cancellation near interpolation."""
        x2_cols = x2[:, cols]
        denom = np.square(sigma + t)
        return (sigma * x2_cols / denom).sum(0), (x2_cols * np.square(t) / denom).sum(0)

    return _logme_fixed_point(sigma, fit_terms, n, d, checked.counts.double().cpu().numpy(), max_iter, tol)


def _logme_from_moments(m: _Moments, *, max_iter: int = 200, tol: float = 1e-9) -> LogMEFit:
    """LogME for N >= D from the centred moments: F^T F = X^T X + N mu mu^T, F^T y_c = sum_c + n_c mu."""
    n, d = m.x.shape
    gram = m.gram + n * torch.outer(m.mean, m.mean)
    sums = m.class_sums + m.counts[:, None] * m.mean[None, :]  # (C, D) = (F^T Y)^T
    # in the features' precision, see the module docstring; c = V^T F^T y, (D, C)
    sigma, c = _eigh_project(gram.to(m.x.dtype), sums.T)
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


# ---------------------------------------------------------------------------------------------------
# LEEP and NCE


def leep(features: Tensor | None, labels: Tensor, source_logits: Tensor | None = None) -> float:
    """LEEP (Nguyen et al. 2020): mean log of the expected empirical prediction (<= 0; higher is better).

    theta = softmax(source_logits) (N, C_s); P(y, z) = 1/N sum_{i: y_i = y} theta_i(z);
    P(y | z) = P(y, z) / P(z); LEEP = 1/N sum_i log sum_z P(y_i | z) theta_i(z). ``features`` is not
    read (LEEP sees only the source head's output); it keeps every estimator's call alike,
    ``estimator(features, labels, source_logits=...)``, and may be None.
    """
    labels = torch.as_tensor(labels)
    n = labels.shape[0] if labels.ndim == 1 else -1
    logits = _check_logits(source_logits, n, "LEEP")
    checked = _check(logits, labels)
    theta = torch.softmax(logits.double(), dim=1)
    y = checked.labels.to(theta.device)
    joint = torch.zeros(checked.num_classes, theta.shape[1], dtype=torch.float64, device=theta.device)
    joint.index_add_(0, y, theta).div_(n)
    p_z = joint.sum(0, keepdim=True)
    conditional = joint / p_z.clamp_min(torch.finfo(torch.float64).tiny)  # P(y | z), (C, C_s)
    eep = (theta * conditional[y]).sum(1)
    return float(torch.log(eep).mean())


def nce(features: Tensor | None, labels: Tensor, source_logits: Tensor | None = None) -> float:
    """NCE (Tran et al. 2019): -H(Y | Z) with Z = argmax of the source logits (<= 0; higher is better).

    From the empirical joint of counts P(y, z): NCE = sum_{y, z} P(y, z) log (P(y, z) / P(z)).
    ``features`` is not read, as for ``leep``.
    """
    labels = torch.as_tensor(labels)
    n = labels.shape[0] if labels.ndim == 1 else -1
    logits = _check_logits(source_logits, n, "NCE")
    checked = _check(logits, labels)
    z = logits.argmax(1).to(checked.labels.device)
    num_source = logits.shape[1]
    counts = torch.bincount(checked.labels * num_source + z, minlength=checked.num_classes * num_source)
    joint = counts.double().reshape(checked.num_classes, num_source) / n
    p_z = joint.sum(0, keepdim=True).expand_as(joint)
    nonzero = joint > 0
    return float((joint[nonzero] * torch.log(joint[nonzero] / p_z[nonzero])).sum())


# ---------------------------------------------------------------------------------------------------
# H-score


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
    checked = _check(features, labels)
    f = checked.features
    if not shrinkage:
        f = _maybe_reduce(f, reduce, max_dim, seed)
    elif reduce:
        f = reduce_dim(f, max_dim=max_dim, seed=seed)
    n, d = f.shape
    if shrinkage or n >= d:
        return _hscore_from_moments(_moments(f, checked), shrinkage=shrinkage)
    # N-dim form: with F = U S V^T (centred), tr(pinv(cov) cov(E[f|y])) = sum_c n_c |mean_c(U)|^2
    f = f.to(_compute_dtype(f))
    evals, u = _eigh(_gram((f - f.mean(0, keepdim=True)).T))
    evals, u = evals.to(f.device), u.to(f.device)
    keep = evals > max(n, d) * torch.finfo(f.dtype).eps * float(evals.max().clamp_min(0))
    counts = checked.counts.double()
    class_means = _class_sums(u[:, keep], checked.labels, checked.num_classes) / counts[:, None]
    return float((counts[:, None] * class_means.square()).sum())


def _hscore_from_moments(m: _Moments, *, shrinkage: bool = True) -> float:
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
        chol = _cholesky(shrunk)
        if chol is not None:
            return float((1 - a) * _solve_lower(chol, means_w.T.contiguous()).square().sum())
        cov, between_scale = shrunk, 1 - a  # singular even after shrinkage (constant features)
    evals, evecs = _eigh(cov)
    evals, evecs = evals.to(cov.device), evecs.to(cov.device)
    cutoff = max(n, d) * torch.finfo(m.x.dtype).eps * float(evals.max().clamp_min(0))
    keep = evals > cutoff
    projected = means_w @ evecs[:, keep]  # pinv(cov) = V diag(1/l) V^T on the kept eigenvalues
    return float(between_scale * (projected.square() / evals[keep]).sum())


# ---------------------------------------------------------------------------------------------------
# SFDA


def _low_rank(left: Tensor, right: Tensor, dtype: torch.dtype) -> Tensor:
    """left^T right, (D, D) float64, for (k, D) factors with k << D whose product is symmetric up to
    rounding; one GEMM in ``dtype`` (the Gram product it corrects is no more precise). Not
    re-symmetrised: its consumers (Cholesky, eigh, Lanczos) read one triangle or tolerate it."""
    return _matmul(left.to(dtype).T, right.to(dtype)).double()


def _matmul(a: Tensor, b: Tensor) -> Tensor:
    """``a @ b``; on CPU through NumPy's OpenBLAS on one thread, which on our AMD CPUs ran these
    (N, D) x (D, C) and (D, k) x (k, D) products 1.2-2x faster than torch's MKL and does not
    stall when another process holds the second core."""
    if a.device.type != "cpu" or a.dtype != b.dtype or a.dtype not in (torch.float32, torch.float64):
        return a @ b
    with _one_blas_thread():
        return torch.from_numpy(a.detach().numpy() @ b.detach().numpy())


def _largest_eigenvalue(sym: Tensor) -> float:
    """Largest eigenvalue of a symmetric float64 matrix.

    CPU: Lanczos (ARPACK ``eigsh``) started from the row sums, as SFDA's power iteration starts, so it
    is deterministic; within-class scatters often have a tiny top gap, where power iteration stalls.
    The products with the matrix run in float32 (they are memory-bound; the scatter came from a
    float32 Gram product anyway), the Lanczos recurrence in float64, to a 1e-4 residual tolerance,
    which leaves the eigenvalue within ~1e-7 (Ritz values converge quadratically): ample for
    exp(-5 lambda). CUDA: a full ``eigvalsh``, which is cheap there.
    """
    if sym.device.type != "cpu":
        return float(torch.linalg.eigvalsh(sym)[-1])
    a = sym.numpy()
    if a.shape[0] <= 2:
        return float(np.linalg.eigvalsh(a)[-1])
    start = a.sum(1)
    if not np.any(start):
        start = np.ones(a.shape[0])
    a32 = a.astype(np.float32)
    operator = LinearOperator(
        a.shape, matvec=lambda v: (a32 @ v.astype(np.float32)).astype(np.float64), dtype=np.float64
    )
    with _one_blas_thread():
        return float(eigsh(operator, k=1, which="LA", v0=start, tol=1e-4, return_eigenvectors=False)[0])


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
        largest = _largest_eigenvalue(s_w) if mean_variance > 0 else 0.0
        shrinkage = max(math.exp(-5 * largest), 1e-10)
    shrunk = s_w.mul_(1 - shrinkage)  # in place (see above): D x D float64 copies cost page faults
    shrunk.diagonal().add_(shrinkage * mean_variance)
    if dtype == torch.float32:
        chol = _cholesky(shrunk.float())
        if chol is not None:
            coef = _cholesky_solve(chol, means.T.float().contiguous()).to(means.device).double()
            return coef, -0.5 * (means * coef.T).sum(1), shrinkage
    chol = _cholesky(shrunk)
    # Rank-deficient S_W (N < D) with the 1e-10 floor can fail by rounding (float32 Grams especially):
    # add a jitter of D float32 epsilons times the mean variance (or, with no within-class variance
    # at all, times the mean square of the class means), growing tenfold until the factor exists.
    scale = mean_variance if mean_variance > 0 else float(means.square().mean()) or 1.0
    jitter = d * torch.finfo(torch.float32).eps * scale
    while chol is None:
        shrunk.diagonal().add_(jitter)
        jitter *= 10
        chol = _cholesky(shrunk)
    coef = _cholesky_solve(chol, means.T.contiguous()).to(means.device)  # (D, C)
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
    checked = _check(features, labels)
    f = _maybe_reduce(checked.features, reduce, max_dim, seed)
    return _sfda_from_moments(_moments(f, checked))


def _sfda_from_moments(m: _Moments) -> float:
    x, y, num_classes, counts = m.x, m.labels, m.num_classes, m.counts
    n = x.shape[0]
    rows = torch.arange(n, device=x.device)
    log_priors = torch.log(counts / n)

    # Stage 1: the discriminant on the features themselves
    means = m.class_sums / counts[:, None]  # (C, D)
    s_w = _low_rank(means, counts[:, None] * means, x.dtype).sub_(m.gram).div_(-n)  # (X^T X - M^T N M) / n
    coef, offset, shrinkage = _regularised_lda(s_w, means, None, x.dtype)
    probs = torch.softmax(_matmul(x, coef.to(x.dtype)).double() + offset + log_priors, dim=1)

    # Stage 2: ConfMix, then the discriminant again with the same shrinkage
    a = torch.softmax(probs, dim=1)[rows, y]  # softened p(y_i | x_i), (N,)
    outer = (means.sum(0, keepdim=True) - means) / (num_classes - 1)  # o_c, (C, D)
    weight = a[:, None].to(x.dtype)
    z = x * weight  # rows a_i x_i, (N, D)
    sum_a = _class_sums(z, y, num_classes)  # sum_{i in c} a_i x_i, (C, D)
    s_w_mixed = _gram(z, torch.float64)
    sum_a2 = _class_sums(z.mul_(weight), y, num_classes)  # sum_{i in c} a_i^2 x_i; z is spent
    a_per_class = torch.zeros_like(counts).index_add_(0, y, a)  # sum_{i in c} a_i, (C,)
    a2_per_class = torch.zeros_like(counts).index_add_(0, y, a.square())
    shift_means = (sum_a - a_per_class[:, None] * outer) / counts[:, None]  # m_c = mean_c(a u), (C, D)
    # sum_i a_i^2 u_i u_i^T = Z^T Z - S^T O - O^T S + O^T diag(q) O, then minus M^T diag(n) M, with
    # Z rows a_i x_i, S rows sum_{i in c} a_i^2 x_i, O rows o_c, M rows m_c, q_c = sum_{i in c} a_i^2
    left = torch.cat([sum_a2, outer, shift_means])  # (3C, D)
    right = torch.cat([-outer, a2_per_class[:, None] * outer - sum_a2, -counts[:, None] * shift_means])
    s_w_mixed.add_(_low_rank(left, right, x.dtype)).div_(n)
    coef, offset, _ = _regularised_lda(s_w_mixed, outer + shift_means, shrinkage, x.dtype)
    # x'_i^T coef = o_c^T coef + a_i (x_i^T coef - o_c^T coef)
    outer_scores = (outer @ coef)[y]
    scores = outer_scores + a[:, None] * (_matmul(x, coef.to(x.dtype)).double() - outer_scores)
    probs = torch.softmax(scores + offset + log_priors, dim=1)
    return float(probs[rows, y].mean())


# ---------------------------------------------------------------------------------------------------
# k-NN and linear probe


def knn_accuracy(features: Tensor, labels: Tensor, *, k: int = 5, chunk_size: int = 2048) -> float:
    """Leave-one-out k-NN accuracy with cosine similarity, in [0, 1].

    Each sample is classified by the majority label of its k most similar other samples; ties go to
    the class with the larger summed similarity. Deterministic; memory is chunk_size x N.
    """
    checked = _check(features, labels)
    f, y, num_classes = checked.features, checked.labels, checked.num_classes
    n = f.shape[0]
    k = max(1, min(k, n - 1))
    x = torch.nn.functional.normalize(f.to(_compute_dtype(f)), dim=1)
    correct = 0
    for start in range(0, n, chunk_size):
        stop = min(start + chunk_size, n)
        sims = x[start:stop] @ x.T  # (chunk, N)
        rows = torch.arange(stop - start, device=x.device)
        sims[rows, rows + start] = -float("inf")  # leave the sample itself out
        top_sims, top_idx = sims.topk(k, dim=1)
        votes = torch.zeros(stop - start, num_classes, dtype=torch.float64, device=x.device)
        votes.scatter_add_(1, y[top_idx], torch.ones_like(top_sims, dtype=torch.float64))
        # summed similarity / (2k + 1) lies in (-1/2, 1/2): it only ever breaks ties between counts
        votes.scatter_add_(1, y[top_idx], top_sims.double() / (2 * k + 1))
        correct += int((votes.argmax(1) == y[start:stop]).sum())
    return correct / n


def stratified_split(labels: Tensor, test_fraction: float = 0.25, seed: int = 0) -> tuple[Tensor, Tensor]:
    """Seeded stratified split: (train indices, test indices), each class keeping at least one train sample.

    Every class with at least two samples puts round(test_fraction * n_c) (at least one) of them in the
    test set; single-sample classes stay in training.
    """
    labels = torch.as_tensor(labels).cpu()
    generator = torch.Generator().manual_seed(seed)
    train, test = [], []
    for cls in torch.unique(labels):
        idx = torch.nonzero(labels == cls).flatten()
        idx = idx[torch.randperm(idx.numel(), generator=generator)]
        n_test = 0 if idx.numel() < 2 else min(idx.numel() - 1, max(1, round(test_fraction * idx.numel())))
        test.append(idx[:n_test])
        train.append(idx[n_test:])
    return torch.sort(torch.cat(train)).values, torch.sort(torch.cat(test)).values


def fit_logistic_regression(
    x: Tensor, labels: Tensor, num_classes: int, *, l2: float = 1e-3, max_iter: int = 200
) -> tuple[Tensor, Tensor]:
    """Multinomial logistic regression by full-batch L-BFGS: weights (D, C) and bias (C,).

    Minimises mean cross-entropy + l2 / 2 |W|^2 (the bias is not penalised) from zeros, so the result
    is deterministic. SciPy's L-BFGS-B steps the (D + 1) x C parameters; the loss and its analytic
    gradient run in NumPy for CPU tensors (the many small steps would mostly wait on torch's thread
    synchronisation) and in torch on x's device otherwise, in x's dtype (at least float32).
    (torch.optim.LBFGS would do too, but its first step imports torch._dynamo, seconds per process.)
    """
    dtype = torch.float64 if x.dtype == torch.float64 else torch.float32
    x = x.to(dtype)
    n, d = x.shape
    targets = _onehot(labels.to(x.device), num_classes, dtype)
    on_cpu = x.device.type == "cpu"
    x_np, targets_np = (x.numpy(), targets.numpy()) if on_cpu else (None, None)

    def loss_and_grad(params: np.ndarray) -> tuple[float, np.ndarray]:
        if on_cpu:
            theta = params.reshape(d + 1, num_classes).astype(x_np.dtype, copy=False)
            weight, bias = theta[:d], theta[d]
            logits = x_np @ weight + bias
            logits -= logits.max(1, keepdims=True)
            log_probs = logits - np.log(np.exp(logits).sum(1, keepdims=True))
            loss = -(targets_np * log_probs).sum() / n + l2 / 2 * np.square(weight).sum()
            residual = (np.exp(log_probs) - targets_np) / n  # d loss / d logits
            grad = np.concatenate([x_np.T @ residual + l2 * weight, residual.sum(0, keepdims=True)])
            return float(loss), grad.astype(np.float64).ravel()
        theta_t = torch.from_numpy(params).to(device=x.device, dtype=dtype).reshape(d + 1, num_classes)
        weight_t, bias_t = theta_t[:d], theta_t[d]
        log_probs_t = torch.log_softmax(x @ weight_t + bias_t, dim=1)
        loss_t = -(targets * log_probs_t).sum() / n + l2 / 2 * weight_t.square().sum()
        residual_t = (log_probs_t.exp() - targets) / n
        grad_t = torch.cat([x.T @ residual_t + l2 * weight_t, residual_t.sum(0, keepdim=True)])
        return float(loss_t), grad_t.double().cpu().numpy().ravel()

    result = scipy.optimize.minimize(
        loss_and_grad,
        np.zeros((d + 1) * num_classes),
        jac=True,
        method="L-BFGS-B",
        options={"maxiter": max_iter, "gtol": 1e-6},
    )
    theta = torch.from_numpy(result.x).to(device=x.device, dtype=dtype).reshape(d + 1, num_classes)
    return theta[:d].contiguous(), theta[d].contiguous()


def linear_probe_accuracy(
    features: Tensor,
    labels: Tensor,
    *,
    test_fraction: float = 0.25,
    l2: float = 1e-3,
    max_iter: int = 200,
    reduce: bool | None = None,
    max_dim: int = 256,
    seed: int = 0,
) -> float:
    """Held-out accuracy of a quick linear probe, in [0, 1].

    Seeded stratified split (``stratified_split``), features standardised with the training split's
    statistics, multinomial logistic regression with L2 (``fit_logistic_regression``). Features are
    cut to their principal components first when N < 2 D (fitted on all samples, labels unused).
    """
    checked = _check(features, labels)
    f = _maybe_reduce(checked.features, reduce, max_dim, seed)
    y = checked.labels
    train, test = stratified_split(y, test_fraction, seed)
    if test.numel() == 0:
        raise ProbeError("too few samples per class to hold out a test split for the linear probe.")
    train, test = train.to(f.device), test.to(f.device)
    x_train, x_test = f[train], f[test]
    mean, std = x_train.mean(0, keepdim=True), x_train.std(0, keepdim=True).clamp_min(1e-12)
    weight, bias = fit_logistic_regression(
        (x_train - mean) / std, y[train], checked.num_classes, l2=l2, max_iter=max_iter
    )
    predictions = (((x_test - mean) / std).to(weight.dtype) @ weight + bias).argmax(1)
    return float((predictions == y[test]).double().mean())


# ---------------------------------------------------------------------------------------------------
# All of them


class Estimates(dict[str, float]):
    """Every applicable estimator's score by name (a plain ``dict[str, float]``), plus ``skipped``:
    the estimators that did not run, each with the reason."""

    def __init__(self, scores: dict[str, float] | None = None, skipped: dict[str, str] | None = None):
        super().__init__(scores or {})
        self.skipped: dict[str, str] = dict(skipped or {})


def estimate_all(
    features: Tensor,
    labels: Tensor,
    source_logits: Tensor | None = None,
    seed: int = 0,
) -> Estimates:
    """Run every applicable estimator: LogME, H-score, SFDA, k-NN, linear probe, and LEEP and NCE when
    the source head's logits are given (otherwise they appear in ``.skipped`` with the reason)."""
    checked = _check(features, labels)  # fail once, early, with the input error
    f, y = checked.features, labels
    n, d = f.shape
    if n >= 2 * d:  # nothing is cut to principal components: one Gram product serves all three
        shared = _moments(f, checked)
        scores = {
            "logme": _logme_from_moments(shared).score,
            "hscore": _hscore_from_moments(shared),
            "sfda": _sfda_from_moments(shared),
        }
    else:
        scores = {"logme": logme(f, y), "hscore": hscore(f, y, seed=seed), "sfda": sfda(f, y, seed=seed)}
    scores["knn_accuracy"] = knn_accuracy(f, y)
    scores["linear_probe_accuracy"] = linear_probe_accuracy(f, y, seed=seed)
    skipped: dict[str, str] = {}
    if source_logits is None:
        reason = "no source_logits: the model has no classifier head to read"
        skipped = {"leep": reason, "nce": reason}
    else:
        scores["leep"] = leep(f, y, source_logits)
        scores["nce"] = nce(f, y, source_logits)
    return Estimates(scores, skipped)

"""Shared linear algebra of the estimators: Gram products, eigen-decompositions, Cholesky solves.

Precision and cost: the N x D^2 Gram products run as symmetric rank-k updates (BLAS ``syrk``)
in the input's precision (float32 stays float32; anything else becomes float64), on centred data
wherever the estimator centres, so float32 loses little to cancellation (``gram``). LogME's
eigen-decomposition also runs in the input's precision: the Gram matrix of float32 features is only
float32-accurate anyway, and on 10,000 x 2,048 features a float32 decomposition moved the score by
3e-8 relative. It never forms the eigenvectors on CPU: LogME needs only their products with the
(D, C) right-hand side, which the tridiagonal reduction's reflectors give without the D^3
back-transformation (``eigh_project``). Everything after that (fixed points, Cholesky factors,
solves, shrinkages) is float64. On CPU the D x D factorisations and the (N, D) x (D, C) products go
through SciPy's and NumPy's OpenBLAS on one thread (``one_blas_thread``): on the shared 2-core
machine we measured, two BLAS threads made ``eigh`` of a 2,048 x 2,048 matrix 3-15x slower than
one whenever another process held a core, and torch's MKL was slower than OpenBLAS on these AMD
CPUs either way. Small iterative parts (LogME's fixed point, the probe's L-BFGS) run in NumPy for
the same reason: many tiny steps mostly wait on thread synchronisation in torch. CUDA tensors stay
on their device and use torch's linear algebra; only small arrays (LogME's (D, C) projections, the
probe's parameters) visit the host.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from functools import lru_cache

import numpy as np
import scipy.linalg
import torch
from scipy.linalg import blas, get_lapack_funcs
from scipy.sparse.linalg import LinearOperator, eigsh
from threadpoolctl import ThreadpoolController
from torch import Tensor


def gram(x: Tensor, dtype: torch.dtype | None = None) -> Tensor:
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
def one_blas_thread() -> Iterator[None]:
    """Run SciPy's LAPACK on one thread: factorising a D x D matrix is largely memory-bound (the
    tridiagonal reduction is BLAS-2), and on a shared 2-core machine two BLAS threads waiting on
    each other made ``eigh`` up to 15x and ``cholesky`` 2.5x slower than one thread."""
    with _blas_controller().limit(limits=1, user_api="blas"):
        yield


def eigh(sym: Tensor) -> tuple[Tensor, Tensor]:
    """Eigenvalues (ascending) and eigenvectors of a symmetric matrix, in its dtype."""
    if sym.device.type == "cpu":
        # SciPy's LAPACK divide-and-conquer: torch's MKL syevd was 3-10x slower on our AMD CPUs.
        # .T: the Fortran-ordered view LAPACK takes without a transposing copy (same symmetric matrix)
        with one_blas_thread():
            evals, evecs = scipy.linalg.eigh(sym.numpy().T, driver="evd", check_finite=False)
        return torch.from_numpy(evals), torch.from_numpy(evecs)
    return torch.linalg.eigh(sym)


def eigh_project(sym: Tensor, rhs: Tensor) -> tuple[Tensor, Tensor]:
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
        evals, evecs = eigh(sym)
        return evals, evecs.T @ rhs.to(device=evecs.device, dtype=evecs.dtype)
    a = sym.numpy()
    b = rhs.to(sym.dtype).contiguous().numpy()
    d = a.shape[0]
    sytrd, sytrd_lwork, ormqr = get_lapack_funcs(("sytrd", "sytrd_lwork", "ormqr"), (a,))
    with one_blas_thread():
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


def cholesky(sym: Tensor) -> Tensor | None:
    """Lower Cholesky factor of a symmetric matrix, or None when it is not (numerically) positive definite."""
    if sym.device.type == "cpu":
        try:
            with one_blas_thread():
                factor = scipy.linalg.cholesky(sym.numpy().T, lower=True, check_finite=False)
            return torch.from_numpy(factor)
        except np.linalg.LinAlgError:
            return None
    chol, info = torch.linalg.cholesky_ex(sym)
    return chol if int(info) == 0 else None


def solve_lower(chol: Tensor, rhs: Tensor) -> Tensor:
    """L^-1 rhs for a lower-triangular L."""
    if chol.device.type == "cpu":
        with one_blas_thread():
            return torch.from_numpy(
                scipy.linalg.solve_triangular(chol.numpy(), rhs.numpy(), lower=True, check_finite=False)
            )
    return torch.linalg.solve_triangular(chol, rhs, upper=False)


def cholesky_solve(chol: Tensor, rhs: Tensor) -> Tensor:
    """(L L^T)^-1 rhs for a lower Cholesky factor L."""
    if chol.device.type == "cpu":
        with one_blas_thread():
            return torch.from_numpy(
                scipy.linalg.cho_solve((chol.numpy(), True), rhs.numpy(), check_finite=False)
            )
    return torch.cholesky_solve(rhs, chol)


def compute_dtype(x: Tensor) -> torch.dtype:
    """float32 stays float32 for the N*D^2 products; everything else becomes float64."""
    return torch.float32 if x.dtype == torch.float32 else torch.float64


def onehot(labels: Tensor, num_classes: int, dtype: torch.dtype) -> Tensor:
    """(N, C) indicator matrix of the labels."""
    out = torch.zeros(labels.shape[0], num_classes, dtype=dtype, device=labels.device)
    out[torch.arange(labels.shape[0], device=labels.device), labels] = 1.0
    return out


def class_sums(x: Tensor, labels: Tensor, num_classes: int) -> Tensor:
    """(C, D) sums of the rows of ``x`` per class, as float64: one pass of ``index_add_`` on CPU
    (3x faster than a GEMM with the indicator matrix there), that GEMM on CUDA (deterministic)."""
    if x.device.type == "cpu":
        return torch.zeros(num_classes, x.shape[1], dtype=x.dtype).index_add_(0, labels, x).double()
    return (onehot(labels, num_classes, x.dtype).T @ x).double()


def low_rank(left: Tensor, right: Tensor, dtype: torch.dtype) -> Tensor:
    """left^T right, (D, D) float64, for (k, D) factors with k << D whose product is symmetric up to
    rounding; one GEMM in ``dtype`` (the Gram product it corrects is no more precise). Not
    re-symmetrised: its consumers (Cholesky, eigh, Lanczos) read one triangle or tolerate it."""
    return matmul(left.to(dtype).T, right.to(dtype)).double()


def matmul(a: Tensor, b: Tensor) -> Tensor:
    """``a @ b``; on CPU through NumPy's OpenBLAS on one thread, which on our AMD CPUs ran these
    (N, D) x (D, C) and (D, k) x (k, D) products 1.2-2x faster than torch's MKL and does not
    stall when another process holds the second core."""
    if a.device.type != "cpu" or a.dtype != b.dtype or a.dtype not in (torch.float32, torch.float64):
        return a @ b
    with one_blas_thread():
        return torch.from_numpy(a.detach().numpy() @ b.detach().numpy())


def largest_eigenvalue(sym: Tensor) -> float:
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
    with one_blas_thread():
        return float(eigsh(operator, k=1, which="LA", v0=start, tol=1e-4, return_eigenvectors=False)[0])

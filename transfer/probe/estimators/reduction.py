"""Dimension reduction before the estimators that fit a classifier (H-score without shrinkage, SFDA,
the linear probe): few samples in many dimensions (N < 2 D) let a linear classifier fit anything, so
their features are first projected on the leading principal components (see the package docstring).
"""

from __future__ import annotations

import torch
from torch import Tensor

from transfer.probe.estimators import linalg


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
            evals, evecs = linalg.eigh(x @ x.T)  # (N, N): scores are U * sqrt(lambda)
            top = torch.flip(torch.arange(n - q, n, device=evecs.device), dims=[0])
            scores = evecs[:, top] * evals[top].clamp_min(0).sqrt()
        else:
            evals, evecs = linalg.eigh(x.T @ x)
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


def maybe_reduce(features: Tensor, reduce: bool | None, max_dim: int, seed: int) -> Tensor:
    """``reduce_dim`` when ``reduce`` is True, or is None and N < 2 D; otherwise the features as given."""
    n, d = features.shape
    if reduce is None:
        reduce = n < 2 * d
    return reduce_dim(features, max_dim=max_dim, seed=seed) if reduce else features

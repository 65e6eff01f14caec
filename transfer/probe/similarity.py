"""Layer-wise similarity: where does a pretrained network stop being general for a target task?

Two kinds of comparison, because source and target datasets hold different images.

* Paired (the same n inputs seen by two representations: two layers, or one layer of two models
  such as the pretrained and the fine-tuned network on the same target images): ``paired_cka``,
  linear CKA (Kornblith et al. 2019), invariant to rotations and isotropic scaling.
* Unpaired (source samples and target samples through the same layer of the pretrained model): CKA
  compares the Gram matrices of the *same* rows, so it is undefined here; any pairing of a source
  image with a target image would be arbitrary, and pairing by class fails when the label sets
  differ. What is defined is how far apart the two distributions of activations are:
  ``layer_shift_score``, an MMD normalised to [0, 1] (0: the same distribution; 1: far apart).
  Computed per layer on the pretrained model it rises with depth where layers turn specific to the
  source task; 1 - score is the layer-wise generality curve.
* ``find_turning_point`` picks the knee of such a curve, the layer after which the curve bends down
  most: the layers up to it look general (freeze them), the later ones specific (fine-tune them).

Shapes: representations are float (n, d), one row per input; pool or flatten convolutional maps
(e.g. global average pooling of (n, c, h, w) to (n, c)) before calling.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor

from transfer.probe.estimators import ProbeError

__all__ = [
    "find_turning_point",
    "layer_shift_score",
    "linear_cka",
    "paired_cka",
    "pairwise_sq_distances",
    "rbf_bandwidth",
]


def _as_matrix(x: Tensor, name: str) -> Tensor:
    x = torch.as_tensor(x)
    if x.ndim != 2 or x.shape[0] == 0 or x.shape[1] == 0:
        raise ProbeError(f"{name} must be a non-empty 2-D (samples, dims) tensor, got {tuple(x.shape)}.")
    if not x.dtype.is_floating_point:
        x = x.float()
    if not bool(torch.isfinite(x).all()):
        raise ProbeError(f"{name} contains NaN or infinite values.")
    return x


def paired_cka(x: Tensor, y: Tensor) -> float:
    """Linear CKA between two representations of the same n inputs: x (n, d1), y (n, d2), in [0, 1].

    With both centred over samples, CKA = HSIC(K, L) / sqrt(HSIC(K, K) HSIC(L, L)) for the linear
    kernels K = x x^T, L = y y^T, i.e. |y^T x|_F^2 / (|x^T x|_F |y^T y|_F). Computed in float64 from
    whichever side is smaller (n x n Grams or d x d cross-products). 1 when y is a rotation or an
    isotropic scaling of x; near 0 for independent representations with n >> d.
    """
    x = _as_matrix(x, "x").double()
    y = _as_matrix(y, "y").to(device=x.device, dtype=torch.float64)
    n = x.shape[0]
    if y.shape[0] != n:
        raise ProbeError(f"paired CKA needs the same inputs in both: {n} rows against {y.shape[0]}.")
    if n < 2:
        raise ProbeError("paired CKA needs at least two inputs.")
    x = x - x.mean(0, keepdim=True)
    y = y - y.mean(0, keepdim=True)
    d1, d2 = x.shape[1], y.shape[1]
    if n * n * (d1 + d2) < n * (d1 * d2 + d1 * d1 + d2 * d2):
        k, l_ = x @ x.T, y @ y.T
        cross, self_x, self_y = (k * l_).sum(), k.square().sum(), l_.square().sum()
    else:
        cross = (y.T @ x).square().sum()
        self_x, self_y = (x.T @ x).square().sum(), (y.T @ y).square().sum()
    if float(self_x) == 0.0 or float(self_y) == 0.0:
        raise ProbeError("paired CKA is undefined for a constant representation (all rows equal).")
    return float(cross / torch.sqrt(self_x * self_y))


linear_cka = paired_cka  # the name in Kornblith et al.


def _subsample(x: Tensor, max_samples: int, generator: torch.Generator) -> Tensor:
    if x.shape[0] <= max_samples:
        return x
    keep = torch.randperm(x.shape[0], generator=generator)[:max_samples]
    return x[keep.to(x.device)]


def pairwise_sq_distances(z: Tensor) -> Tensor:
    """(n, n) squared Euclidean distances of the rows of z (float64)."""
    sq = z.square().sum(1)
    return (sq[:, None] + sq[None, :] - 2 * z @ z.T).clamp_min_(0)


def rbf_bandwidth(sq_dists: Tensor, max_rows: int = 1000) -> float:
    """Median heuristic: the median squared distance h between distinct rows; the kernel is
    exp(-d^2 / (2 h)). Beyond ``max_rows`` rows, the median is taken over the pairs among evenly
    spaced rows (deterministic, and spread over both sets when they are stacked). Falls back to the
    mean of the non-zero squared distances when most pairs coincide, and to 1 when all do."""
    n = sq_dists.shape[0]
    if n > max_rows:
        rows = torch.linspace(0, n - 1, max_rows, device=sq_dists.device).round().long()
        sq_dists = sq_dists[rows][:, rows]
        n = max_rows
    iu = torch.triu_indices(n, n, offset=1, device=sq_dists.device)
    pairs = sq_dists[iu[0], iu[1]]
    median = float(pairs.median()) if pairs.numel() else 0.0
    if median > 0:
        return median
    positive = pairs[pairs > 0]
    return float(positive.mean()) if positive.numel() else 1.0


def layer_shift_score(
    source: Tensor,
    target: Tensor,
    *,
    kernel: str = "rbf",
    max_samples: int = 2000,
    seed: int = 0,
) -> float:
    """Distribution distance between two unpaired sets of one layer's activations, in [0, 1].

    ``kernel="rbf"`` (default): the unbiased squared MMD under an RBF kernel with the median-heuristic
    bandwidth of the pooled sets, divided by the sum of the two within-set kernel means:
    MMD^2 / (E k(s, s') + E k(t, t')) = 1 - 2 E k(s, t) / (E k(s, s') + E k(t, t')). Kernel values
    lie in (0, 1], so the score lies in [0, 1]; the bandwidth adapts to each layer's scale and width,
    so scores compare across layers. (The cosine between mean embeddings would be the other obvious
    normalisation, but in wide layers the RBF kernel depends mostly on norms and that cosine stays
    near 1 even when one set is twice the scale of the other.)
    ``kernel="linear"``: |m_s - m_t|^2 / (|m_s - m_t|^2 + 2 tr C_s + 2 tr C_t), the share of the
    pooled (equal-weight) variance explained by which set a row came from, with the unbiased
    estimate of |m_s - m_t|^2. Either score is clipped to [0, 1]; at most ``max_samples`` rows of
    each set are used (a seeded subsample).
    """
    source = _as_matrix(source, "source").double()
    target = _as_matrix(target, "target").to(device=source.device, dtype=torch.float64)
    if source.shape[1] != target.shape[1]:
        raise ProbeError(
            f"source and target activations differ in width ({source.shape[1]} vs {target.shape[1]}): "
            "compare the same layer."
        )
    if source.shape[0] < 2 or target.shape[0] < 2:
        raise ProbeError("a layer shift score needs at least two rows in each set.")
    generator = torch.Generator().manual_seed(seed)
    source = _subsample(source, max_samples, generator)
    target = _subsample(target, max_samples, generator)
    n, m = source.shape[0], target.shape[0]
    if kernel == "linear":
        gap = (source.mean(0) - target.mean(0)).square().sum()
        var_s, var_t = source.var(0).sum(), target.var(0).sum()
        gap = (gap - var_s / n - var_t / m).clamp_min(0)  # E|mean_s - mean_t|^2 = gap + tr C_s/n + tr C_t/m
        total = gap + 2 * var_s + 2 * var_t
        return 0.0 if float(total) == 0.0 else float(gap / total)
    if kernel != "rbf":
        raise ProbeError(f"unknown kernel {kernel!r}: use 'rbf' or 'linear'.")
    pooled = torch.cat([source, target])
    sq = pairwise_sq_distances(pooled)
    k = torch.exp(-sq / (2 * rbf_bandwidth(sq)))
    k_ss, k_tt, k_st = k[:n, :n], k[n:, n:], k[:n, n:]
    self_s = (k_ss.sum() - k_ss.diagonal().sum()) / (n * (n - 1))
    self_t = (k_tt.sum() - k_tt.diagonal().sum()) / (m * (m - 1))
    return float((1 - 2 * k_st.mean() / (self_s + self_t)).clamp(0, 1))


def find_turning_point(values: Sequence[float], *, higher_is_similar: bool = True) -> int:
    """Index of the knee of a layer-wise curve: the last layer that still looks general.

    ``values[i]`` is a per-layer similarity between source and target (e.g. 1 - layer_shift_score,
    or a CKA), expected to fall with depth; pass ``higher_is_similar=False`` for a distance such as
    ``layer_shift_score`` itself. The knee is the most negative second difference
    v[i-1] - 2 v[i] + v[i+1], where the curve bends down most, i.e. the layer after which the
    drop starts; the curve is padded flat at both ends (v[-1] = v[0], v[L] = v[L-1]) so that a drop
    right after the first layer, or none before the last, is found too. Ties go to the earlier
    layer. A straight decline bends at the start (index 0); a curve that never bends down (flat or
    rising) returns the last index: every layer looks as general as the first. Recommend freezing
    layers 0..index.
    """
    curve = [float(v) for v in values]
    if not curve:
        raise ProbeError("a turning point needs at least one layer's value.")
    if not all(math.isfinite(v) for v in curve):
        raise ProbeError("layer-wise values contain NaN or infinite entries.")
    if not higher_is_similar:
        curve = [-v for v in curve]
    padded = [curve[0], *curve, curve[-1]]
    second = [padded[i] - 2 * padded[i + 1] + padded[i + 2] for i in range(len(curve))]
    spread = max(curve) - min(curve)
    best = min(range(len(curve)), key=lambda i: (second[i], i))
    if second[best] >= -1e-9 * max(spread, 1e-300):
        return len(curve) - 1
    return best

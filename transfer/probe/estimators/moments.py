"""The centred moments (mean, Gram matrix, per-class sums) that LogME, the H-score and SFDA share,
so that ``estimate_all`` computes the one N x D^2 Gram product once for all three."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from transfer.probe.estimators import linalg
from transfer.probe.estimators.inputs import CheckedInputs


@dataclass(frozen=True)
class Moments:
    """Centred features and the sums LogME, the H-score and SFDA all start from; ``estimate_all``
    computes them once, so the three share one N x D^2 Gram product."""

    x: Tensor  # (N, D) features minus their mean, in the compute dtype
    mean: Tensor  # (D,) float64
    gram: Tensor  # (D, D) float64, x^T x
    class_sums: Tensor  # (C, D) float64, per-class sums of the rows of x
    labels: Tensor  # (N,) in 0..C-1
    counts: Tensor  # (C,) float64
    num_classes: int


def centred_moments(features: Tensor, checked: CheckedInputs) -> Moments:
    """The ``Moments`` of ``features`` (checked, possibly reduced) in the compute dtype."""
    f = features.to(linalg.compute_dtype(features))
    mean = f.mean(0, keepdim=True)
    x = f - mean
    sums = linalg.class_sums(x, checked.labels, checked.num_classes)
    return Moments(
        x,
        mean[0].double(),
        linalg.gram(x, torch.float64),
        sums,
        checked.labels,
        checked.counts.double(),
        checked.num_classes,
    )

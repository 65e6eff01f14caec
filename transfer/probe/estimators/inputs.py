"""Input checks every estimator starts from: ``ProbeError`` and the validated, remapped labels.

Shapes: features float (N, D); labels any integer (N,), remapped to 0..C-1 in sorted order;
source_logits float (N, C_s). Every refusal is a ``ProbeError``: one sentence for the user.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from kg.errors import UserError


class ProbeError(UserError, ValueError):
    """A probe cannot run on the inputs it was given; the message is one sentence for the user."""


@dataclass(frozen=True)
class CheckedInputs:
    """Features and labels after ``check_inputs``: floating features, labels remapped to 0..C-1."""

    features: Tensor  # (N, D) floating
    labels: Tensor  # (N,) int64 in 0..C-1, on features' device
    counts: Tensor  # (C,) int64
    num_classes: int


def check_inputs(features: Tensor, labels: Tensor) -> CheckedInputs:
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
    return CheckedInputs(features, inverse.to(features.device), counts.to(features.device), num_classes)


def check_logits(source_logits: Tensor | None, n: int, estimator: str) -> Tensor:
    """Validate the source head's logits (N, C_s) for ``estimator``; refuse a model without a head."""
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

"""Estimators that read the source model's classifier head: LEEP (Nguyen et al. 2020) and NCE (Tran
et al. 2019). Both take ``source_logits`` (N, C_s), the head's raw logits on the target samples."""

from __future__ import annotations

import torch
from torch import Tensor

from transfer.probe.estimators.inputs import check_inputs, check_logits


def leep(features: Tensor | None, labels: Tensor, source_logits: Tensor | None = None) -> float:
    """LEEP (Nguyen et al. 2020): mean log of the expected empirical prediction (<= 0; higher is better).

    theta = softmax(source_logits) (N, C_s); P(y, z) = 1/N sum_{i: y_i = y} theta_i(z);
    P(y | z) = P(y, z) / P(z); LEEP = 1/N sum_i log sum_z P(y_i | z) theta_i(z). ``features`` is not
    read (LEEP sees only the source head's output); it keeps every estimator's call alike,
    ``estimator(features, labels, source_logits=...)``, and may be None.
    """
    labels = torch.as_tensor(labels)
    n = labels.shape[0] if labels.ndim == 1 else -1
    logits = check_logits(source_logits, n, "LEEP")
    checked = check_inputs(logits, labels)
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
    logits = check_logits(source_logits, n, "NCE")
    checked = check_inputs(logits, labels)
    z = logits.argmax(1).to(checked.labels.device)
    num_source = logits.shape[1]
    counts = torch.bincount(checked.labels * num_source + z, minlength=checked.num_classes * num_source)
    joint = counts.double().reshape(checked.num_classes, num_source) / n
    p_z = joint.sum(0, keepdim=True).expand_as(joint)
    nonzero = joint > 0
    return float((joint[nonzero] * torch.log(joint[nonzero] / p_z[nonzero])).sum())

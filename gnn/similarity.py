"""How alike two target datasets are, from their own records (size, classes, image statistics).

A source's outcomes on targets that look like this one say more about it than its outcomes on
targets that do not: on the TransferGraph records, weighting a model's within-target z on the other
targets by this similarity predicts a held-out target better than the plain mean (see
docs/benchmarks.md). Both the GNN's history readout and the ``near-z`` baseline use it.

Dataset features (``builder.dataset_features``) are (value, has) pairs plus image statistics with
one "has" flag. Only the value columns enter the kernel, standardised over the targets that record
them; for one column and a pair of datasets the squared gap is

* ((a - b) / sd)^2 when both record it,
* ``MISSING_GAP`` when only one does (a target without records is a stranger, not a twin),
* 0 when neither does.

and the weight of a recorded outcome on dataset d for target t is softmax_d(-sum_k s_k gap_k(t, d)),
s_k a per-column scale (1 for the baseline, learned by the GNN).
"""

from __future__ import annotations

import torch
from torch import Tensor

_PAIRS = ((0, 1), (2, 3), (4, 5), (6, 7), (8, 9))
_STATS, _STATS_FLAG = tuple(range(10, 16)), 16
VALUE_COLUMNS: tuple[int, ...] = tuple(v for v, _ in _PAIRS) + _STATS
"""Dataset feature columns compared by the kernel."""
PRESENT_COLUMNS: tuple[int, ...] = tuple(f for _, f in _PAIRS) + (_STATS_FLAG,) * len(_STATS)
"""For each of ``VALUE_COLUMNS``, the column that says whether the dataset records it."""
MISSING_GAP = 1.0


def kernel_statistics(x_targets: Tensor) -> tuple[Tensor, Tensor]:
    """(mean, sd) [len(VALUE_COLUMNS)] of each value column over the targets that record it
    (sd 1 where fewer than two do or they all agree)."""
    values = x_targets[:, list(VALUE_COLUMNS)].double()
    present = x_targets[:, list(PRESENT_COLUMNS)].double() > 0
    n = present.sum(0)
    mean = (values * present).sum(0) / n.clamp(min=1)
    var = (((values - mean) ** 2) * present).sum(0) / n.clamp(min=1)
    sd = torch.where((n >= 2) & (var > 1e-12), var.sqrt(), torch.ones_like(var))
    return mean.float(), sd.float()


def squared_gaps(left: Tensor, right: Tensor, mean: Tensor, sd: Tensor) -> Tensor:
    """[K, len(VALUE_COLUMNS)] squared standardised gaps between the rows of ``left`` and ``right``
    (raw dataset features, both [K, 17]); see the module docstring for missing values."""
    a_present = left[:, list(PRESENT_COLUMNS)] > 0
    b_present = right[:, list(PRESENT_COLUMNS)] > 0
    a = (left[:, list(VALUE_COLUMNS)] - mean) / sd
    b = (right[:, list(VALUE_COLUMNS)] - mean) / sd
    both = a_present & b_present
    one = a_present ^ b_present
    return torch.where(both, (a - b) ** 2, torch.where(one, MISSING_GAP, 0.0))

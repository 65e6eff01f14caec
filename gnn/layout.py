"""A saved scorer's feature layout against today's: columns matched by name.

A scorer saves the names of its pair-feature columns (``GnnConfig.pair_features``) and of the
SCORED_ON kinds its measurement edges were one-hot over (``GnnConfig.score_kinds``). When the
vocabulary grows (a new estimator in ``ontology.vocab.SCORE_KINDS``), today's builder emits more
columns; ``to_layout`` hands the saved scorer exactly the columns it was trained on, by name, and
zeros for any it knew that no longer exist. So a new estimator does not invalidate saved scorers.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor
from torch_geometric.data import HeteroData

from gnn.builder import PAIR_FEATURES, REV_SCORED, SCORE_KINDS, SCORED

SCORED_EXTRA: tuple[str, ...] = ("value_z", "has_p_value", "neg_log10_p")
"""The SCORED_ON attribute columns after the kind one-hot (``builder._scored_attr``)."""


def to_layout(x: Tensor, current: Sequence[str], saved: Sequence[str]) -> Tensor:
    """[N, len(saved)]: the columns of ``x`` [N, len(current)] named ``saved``, in that order; a
    saved name that ``current`` lacks is a zero column."""
    if tuple(current) == tuple(saved):
        return x
    index = {name: i for i, name in enumerate(current)}
    out = torch.zeros((x.shape[0], len(saved)), dtype=x.dtype)
    for j, name in enumerate(saved):
        if name in index:
            out[:, j] = x[:, index[name]]
    return out


def adapt(
    pair_x: Tensor,
    edge_attr: dict[tuple[str, str, str], Tensor],
    pair_features: Sequence[str],
    score_kinds: Sequence[str],
) -> tuple[Tensor, dict[tuple[str, str, str], Tensor]]:
    """Today's pair features and message-passing edge attributes in a scorer's saved layout."""
    pair_x = to_layout(pair_x, PAIR_FEATURES, pair_features)
    if tuple(score_kinds) != SCORE_KINDS:
        current, saved = (*SCORE_KINDS, *SCORED_EXTRA), (*score_kinds, *SCORED_EXTRA)
        edge_attr = dict(edge_attr)
        for et in (SCORED, REV_SCORED):
            edge_attr[et] = to_layout(edge_attr[et], current, saved)
    return pair_x, edge_attr


def data_in_layout(data: HeteroData, score_kinds: Sequence[str]) -> HeteroData:
    """``data`` with its SCORED_ON edge attributes in a layout over ``score_kinds`` (a copy when it
    differs from today's; ``data`` itself otherwise)."""
    if tuple(score_kinds) == SCORE_KINDS:
        return data
    data = data.clone()
    current, saved = (*SCORE_KINDS, *SCORED_EXTRA), (*score_kinds, *SCORED_EXTRA)
    for et in (SCORED, REV_SCORED):
        data[et].edge_attr = to_layout(data[et].edge_attr, current, saved)
    return data

"""The target's own evidence: estimator measurements re-order the candidates they were taken on.

For a target with no recorded outcomes the GNN's prediction is a prior built from other targets'
history. Probing (``kgraft recommend TARGET --probe K``) measures transferability estimators of a
shortlist of candidates on a sample of the target itself (SCORED_ON; ``builder.PairContext`` gives
their z-scores within the target). This module folds that evidence into the ranking, outside the
learned head, as the ``seen_prior`` rule is:

    P      = the candidates with at least one estimator measurement on the target        (|P| >= 2)
    e_i    = mean of i's estimator z-scores, standardised within P
    g_i    = the GNN's z for i, standardised within P: (z_i - mean_P z) / sd_P z
    b_i    = (1 - w) g_i + w e_i, standardised within P
    z'_i   = mean_P z + sd_P z * b_i                                  for i in P; z'_i = z_i otherwise

The shortlist keeps its place and spread among the other candidates (probing says which of the
probed candidates is better, not how the probed ones compare with the unprobed), and inside it the
order blends the prior with the target's evidence by ``w`` (``GnnConfig.estimator_weight``). With
w = 0 the blend changes nothing; with w = 1 the estimators alone order the shortlist. A scorer whose
training outcomes had estimator measurements beside them reads the estimators through its head
(pair features) and learned how far to trust them, so it blends with w = 0
(``Ensemble.effective_weight``); the blend is for scorers that never saw an estimator.
"""

from __future__ import annotations

import numpy as np

from gnn.builder import ESTIMATOR_KINDS, PAIR_FEATURES

_Z = PAIR_FEATURES.index(f"{ESTIMATOR_KINDS[0]}_z")
_HAS = PAIR_FEATURES.index(f"has_{ESTIMATOR_KINDS[0]}")
_K = len(ESTIMATOR_KINDS)


def estimator_evidence(pair_x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(e [P], probed [P] bool): each pair's mean estimator z and whether it has any measurement;
    ``pair_x`` [P, len(PAIR_FEATURES)] from ``PairContext.features``."""
    values, has = pair_x[:, _Z : _Z + _K], pair_x[:, _HAS : _HAS + _K]
    counts = has.sum(1)
    probed = counts > 0
    mean = np.where(probed, (values * has).sum(1) / np.maximum(counts, 1), 0.0)
    return mean, probed


def blend(z: np.ndarray, evidence: np.ndarray, probed: np.ndarray, weight: float) -> np.ndarray:
    """The ranking scores with the probed shortlist re-ordered (see the module docstring).

    ``z`` [..., P] (one row per ensemble member, or one row), ``evidence`` and ``probed`` [P].
    """
    out = np.array(z, dtype=np.float64, copy=True)
    if weight == 0 or probed.sum() < 2:
        return out
    sel = np.flatnonzero(probed)
    inside = out[..., sel]
    centre = inside.mean(-1, keepdims=True)
    spread = inside.std(-1, keepdims=True)
    mixed = (1 - weight) * _standardise(inside) + weight * _standardise(np.asarray(evidence)[sel])
    out[..., sel] = centre + np.where(spread > 1e-9, spread, 1.0) * _standardise(mixed)
    return out


def _standardise(x: np.ndarray) -> np.ndarray:
    """Zero mean, unit standard deviation along the last axis (all zeros where it is constant)."""
    centre, spread = x.mean(-1, keepdims=True), x.std(-1, keepdims=True)
    return np.where(spread > 1e-9, (x - centre) / np.where(spread > 1e-9, spread, 1.0), 0.0)

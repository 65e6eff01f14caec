"""Every applicable estimator in one call (``estimate_all``), sharing one Gram product where it can.
The names are the estimator score kinds of ``ontology.vocab.SCORE_KINDS``."""

from __future__ import annotations

from torch import Tensor

from transfer.probe.estimators.hscore import hscore, hscore_from_moments
from transfer.probe.estimators.inputs import check_inputs
from transfer.probe.estimators.knn import knn_accuracy
from transfer.probe.estimators.linear_probe import linear_probe_accuracy
from transfer.probe.estimators.logme import logme, logme_from_moments
from transfer.probe.estimators.moments import centred_moments
from transfer.probe.estimators.sfda import sfda, sfda_from_moments
from transfer.probe.estimators.source_head import leep, nce


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
    checked = check_inputs(features, labels)  # fail once, early, with the input error
    f, y = checked.features, labels
    n, d = f.shape
    if n >= 2 * d:  # nothing is cut to principal components: one Gram product serves all three
        shared = centred_moments(f, checked)
        scores = {
            "logme": logme_from_moments(shared).score,
            "hscore": hscore_from_moments(shared),
            "sfda": sfda_from_moments(shared),
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

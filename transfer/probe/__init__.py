"""Probes: how well a pretrained model's features suit a target task, and how far the target has shifted.

``features``    penultimate features, source logits and per-group pooled activations, cached.
``estimators``  transferability scores from features, labels and the source head's logits
                (LogME, LEEP, NCE, shrinkage H-score, SFDA, k-NN and linear-probe accuracy).
``similarity``  layer-wise similarity: paired linear CKA, an unpaired layer shift score, and the
                turning point of a layer-wise curve (where to cut the frozen part of a network).
``shift``       two-sample shift tests (MMD, Bonferroni KS, domain classifier), label shift, and
                the kind of shift (input-level, semantic, label) that decides what to fine-tune.
``run``         ``kgraft probe``: all of the above for one (model, target) pair, recorded in the graph.

``estimators``, ``similarity`` and ``shift`` are pure tensor maths: no graph, no models, no files.
"""

from transfer.probe.estimators import ProbeError

__all__ = ["ProbeError"]

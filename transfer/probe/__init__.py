"""Probes: how well a pretrained model's features suit a target task, and how far the target has shifted.

``estimators``  transferability scores from features, labels and the source head's logits
                (LogME, LEEP, NCE, shrinkage H-score, SFDA, k-NN and linear-probe accuracy).
``similarity``  layer-wise similarity: paired linear CKA, an unpaired layer shift score, and the
                turning point of a layer-wise curve (where to cut the frozen part of a network).
``shift``       two-sample shift tests (MMD, Bonferroni KS, domain classifier), label shift, and
                the kind of shift (input-level, semantic, label) that decides what to fine-tune.

Everything here is pure tensor maths: no graph, no models, no files. A caller extracts the features
(``transfer`` orchestrates) and records the numbers in the knowledge graph.
"""

from transfer.probe.estimators import ProbeError

__all__ = ["ProbeError"]

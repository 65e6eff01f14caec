"""Transferability estimators: how well would a pretrained model's features serve a target task?

Every estimator reads the target samples' features from the pretrained model (before its head) and
the target labels; LEEP and NCE also read the source head's raw logits on the same samples.
Higher is better for every score. Shapes::

    features       float (N, D)   any float dtype, CPU or CUDA
    labels         int   (N,)     any integer labels; remapped to 0..C-1 in sorted order
    source_logits  float (N, C_s) raw logits of the source model's classifier head

=============  ==========================================================  ===============
estimator      what it measures                                            dimension cut
=============  ==========================================================  ===============
logme          mean per-class log evidence / N of Bayesian linear           no
               regression (You et al. 2021)
leep           log expected empirical prediction (Nguyen et al. 2020)      n/a
nce            negative conditional entropy -H(Y|Z) (Tran et al. 2019)     n/a
hscore         tr(cov(f)^-1 cov(E[f|y])) with Ledoit-Wolf shrinkage        only without
               (Bao et al. 2019; Ibrahim et al. 2022)                       shrinkage
sfda           self-challenging Fisher discriminant (Shao et al. 2022)     yes
knn_accuracy   leave-one-out k-NN accuracy, cosine similarity              no
linear_probe   held-out accuracy of an L2 multinomial logistic regression  yes
=============  ==========================================================  ===============

Few samples in many dimensions (N < 2 D) make a linear classifier fit anything: the plain H-score
reaches its maximum C - 1, resubstituted Fisher discriminants (SFDA) call every sample correct, and
a logistic regression separates random labels. The estimators marked "yes" above therefore first
project the features on their leading principal components (``reduce_dim``, to at most N / 2
dimensions) when N < 2 D; ``reduce=False`` turns that off, ``reduce=True`` forces it. LogME needs
no cut: its evidence penalises the fit through the prior precision alpha, and it uses the N-dim
form of the SVD when N < D. The shrinkage H-score needs none either: the shrinkage keeps the
covariance invertible. k-NN has nothing to fit.

One module per job:

================  ===================================================================================
``inputs``        ``ProbeError`` and the input checks every estimator starts from
``linalg``        shared linear algebra (Gram products, eigen-decompositions, Cholesky solves) and
                  its precision and cost choices
``reduction``     ``reduce_dim``: principal components before the estimators that fit a classifier
``moments``       centred moments that LogME, the H-score and SFDA share (one Gram product)
``logme``         LogME
``source_head``   LEEP and NCE, from the source head's logits
``hscore``        H-score, with and without shrinkage
``sfda``          SFDA
``knn``           k-NN accuracy
``linear_probe``  the linear probe, its stratified split and its logistic regression
``combined``      ``estimate_all``: every applicable estimator in one call
================  ===================================================================================

A new estimator goes in a module of its own, is called from ``combined.estimate_all`` under its
score kind's name, and gets that kind in ``ontology.vocab.SCORE_KINDS``.
"""

from transfer.probe.estimators.combined import Estimates, estimate_all
from transfer.probe.estimators.hscore import hscore
from transfer.probe.estimators.inputs import ProbeError
from transfer.probe.estimators.knn import knn_accuracy
from transfer.probe.estimators.linear_probe import (
    fit_logistic_regression,
    linear_probe_accuracy,
    stratified_split,
)
from transfer.probe.estimators.logme import LogMEFit, logme, logme_fit
from transfer.probe.estimators.reduction import reduce_dim
from transfer.probe.estimators.sfda import sfda
from transfer.probe.estimators.source_head import leep, nce

__all__ = [
    "Estimates",
    "LogMEFit",
    "ProbeError",
    "estimate_all",
    "fit_logistic_regression",
    "hscore",
    "knn_accuracy",
    "leep",
    "linear_probe_accuracy",
    "logme",
    "logme_fit",
    "nce",
    "reduce_dim",
    "sfda",
    "stratified_split",
]

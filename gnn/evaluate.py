"""Leave-one-target-out (LOTO) evaluation of the scorer against simple baselines, in one run.

For each target dataset t with recorded outcomes: hide ALL of t's outcomes (from training, from
message passing and from every source's history), train on the rest, predict the fine-tuned
accuracy (as a within-target z) of every model that has an outcome on t, and compare with the
recorded accuracies: Pearson r and weighted Kendall tau (``scipy.stats.weightedtau``, hyperbolic
weights, so the top of the ranking counts most).

Baselines, on the same folds (each sees exactly what the GNN sees):

* ``mean-z``: the model's mean within-target z-scored accuracy on the other targets;
* ``mean-z+seen``: mean-z plus the GNN's ``seen_prior`` for sources already trained on the target's
  data (``PairContext.trained_on_data``), so a table shows how much of the GNN's lead is that rule;
* ``near-z+seen``: mean-z+seen with each of the model's outcomes weighted by how alike its target's
  records (size, classes, image statistics) are to the held-out target's (``gnn.similarity``, no
  learning: every column at scale 1, i.e. a kernel of one standard deviation of the targets);
* ``reported``: the model's own reported accuracy (``metrics``), over the models that report one;
* ``gbr``: sklearn ``HistGradientBoostingRegressor`` on [model features || target features]
  (``builder`` node features, no graph), fit to the other targets' z-scores;
* ``estimators``: the mean within-target z of the transferability estimators recorded as
  SCORED_ON for the pair (LogME, LEEP, ...), where the graph holds any;
* each estimator alone (``logme``, ``leep``, ``nce``, ``hscore``, ``sfda``, ``knn_accuracy``,
  ``linear_probe_accuracy``: ``builder.ESTIMATOR_KINDS``), a column for every kind recorded for at
  least 3 of a target's models (``LotoResult.methods`` lists only the kinds seen).

``select`` (a list of candidate configurations) picks, inside each fold and from the training
targets only, the candidate with the best mean r + tau over a grouped inner split (``select_config``),
so hyper-parameters never see the held-out target.

``evaluate_graph(store, targets)`` builds the graph from a store and runs ``loto`` on every target or
on the named ones (what ``kgraft gnn eval`` prints).

``leak=True`` plants a leak: the held-out target's outcomes stay in training and in the sources'
histories at prediction time; the tests use it to show that the protocol really hides them.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
import scipy.stats
import torch
from torch_geometric.data import HeteroData

from gnn.builder import ESTIMATOR_KINDS, OUTCOME, IdMaps, PairContext, build_hetero
from gnn.evidence import blend
from gnn.model import GnnConfig
from gnn.similarity import kernel_statistics, squared_gaps
from gnn.train import Outcomes, ScorerError, TrainConfig, fit, outcome_table
from kg.store import GraphStore
from ontology.vocab import Label

METHODS = ("gnn", "mean-z", "mean-z+seen", "near-z+seen", "reported", "gbr", "estimators")
MIN_OUTCOMES = 5
_REPORTED = 4  # column of the model features holding the reported accuracy (and 5: has it)


def pearson(predicted: np.ndarray, actual: np.ndarray) -> float:
    """Pearson r, NaN when either side is constant or there are fewer than 3 pairs."""
    predicted, actual = np.asarray(predicted, float), np.asarray(actual, float)
    if len(actual) < 3 or np.ptp(predicted) == 0 or np.ptp(actual) == 0:
        return math.nan
    return float(scipy.stats.pearsonr(predicted, actual).statistic)


def weighted_tau(predicted: np.ndarray, actual: np.ndarray) -> float:
    """Weighted Kendall tau (hyperbolic weights on rank), NaN when undefined."""
    predicted, actual = np.asarray(predicted, float), np.asarray(actual, float)
    if len(actual) < 3 or np.ptp(predicted) == 0 or np.ptp(actual) == 0:
        return math.nan
    return float(scipy.stats.weightedtau(actual, predicted).statistic)


@dataclass
class TargetResult:
    """One held-out target: its row, name, number of models and (r, tau) per method."""

    target: int
    name: str
    n_models: int
    scores: dict[str, tuple[float, float]]
    coverage: dict[str, int] = field(default_factory=dict)
    """Number of models each method could score (``reported`` misses models without a report)."""
    train_seconds: float = 0.0
    chosen: str = ""
    """Which candidate the inner selection picked (``select`` only)."""
    actual: np.ndarray | None = None
    """[n_models] recorded accuracies; ``predictions`` holds the same models' predicted scores of
    ``gnn`` (with the scorer's ``seen_prior`` in it) and ``mean-z``; ``seen`` [n_models] 1.0 where
    the source was trained on the target's data."""
    predictions: dict[str, np.ndarray] = field(default_factory=dict)
    seen: np.ndarray | None = None
    seen_prior: float = 0.0
    models: np.ndarray | None = None
    """[n_models] the model rows ``actual`` and ``predictions`` are about."""
    learned: np.ndarray | None = None
    """[n_models] the GNN's z before the estimator evidence; ``evidence`` / ``probed`` as in
    ``gnn.train.Prediction``."""
    evidence: np.ndarray | None = None
    probed: np.ndarray | None = None

    def scores_with_estimator_weight(self, weight: float) -> tuple[float, float]:
        """(r, tau) of the GNN had ``GnnConfig.estimator_weight`` been ``weight`` (the blend comes after
        the learned prediction, so this needs no retraining)."""
        if self.learned is None or self.evidence is None or self.probed is None or self.actual is None:
            return math.nan, math.nan
        z = blend(self.learned, self.evidence, self.probed, weight)
        return pearson(z, self.actual), weighted_tau(z, self.actual)

    def scores_with_prior(self, method: str, prior: float) -> tuple[float, float]:
        """(r, tau) of ``method`` ("gnn" or "mean-z") with ``prior`` z added for sources trained on the
        target's data (replacing the GNN's own ``seen_prior``): the prior is added after the learned
        prediction, so this needs no retraining."""
        predicted = self.predictions.get(method)
        if predicted is None or self.actual is None or self.seen is None:
            return math.nan, math.nan
        already = self.seen_prior if method == "gnn" else 0.0
        z = predicted + (prior - already) * self.seen
        return pearson(z, self.actual), weighted_tau(z, self.actual)


@dataclass
class LotoResult:
    """Per-target results and their means (NaN targets skipped, counted in ``n_scored``)."""

    targets: list[TargetResult]
    methods: tuple[str, ...]
    notes: list[str]
    seconds: float

    def mean(self, method: str) -> tuple[float, float, int]:
        """(mean r, mean tau, number of targets where the method had a score)."""
        rs = [t.scores[method][0] for t in self.targets if method in t.scores]
        taus = [t.scores[method][1] for t in self.targets if method in t.scores]
        rs = [r for r in rs if not math.isnan(r)]
        taus = [x for x in taus if not math.isnan(x)]
        return (
            float(np.mean(rs)) if rs else math.nan,
            float(np.mean(taus)) if taus else math.nan,
            len(rs),
        )

    def mean_with_estimator_weight(self, weight: float) -> tuple[float, float]:
        """Mean (r, tau) of the GNN over the targets had ``estimator_weight`` been ``weight``."""
        pairs = np.array([t.scores_with_estimator_weight(weight) for t in self.targets], dtype=float)
        if not len(pairs):
            return math.nan, math.nan
        return float(np.nanmean(pairs[:, 0])), float(np.nanmean(pairs[:, 1]))

    def ranking_agreement(self, method: str, min_shared: int = 10) -> float:
        """Mean Spearman correlation between the rankings ``method`` gave two different held-out
        targets, over the models both were scored on (pairs sharing >= ``min_shared``); ``"actual"``
        gives the same for the recorded accuracies. Near 1: one ranking for every target."""
        rows = []
        for t in self.targets:
            values = t.actual if method == "actual" else t.predictions.get(method)
            if values is not None and t.models is not None:
                rows.append(dict(zip(t.models.tolist(), np.asarray(values, float).tolist(), strict=True)))
        rhos = []
        for i in range(len(rows)):
            for j in range(i + 1, len(rows)):
                shared = sorted(rows[i].keys() & rows[j].keys())
                if len(shared) >= min_shared:
                    a = [rows[i][m] for m in shared]
                    b = [rows[j][m] for m in shared]
                    if np.ptp(a) > 0 and np.ptp(b) > 0:
                        rhos.append(float(scipy.stats.spearmanr(a, b).statistic))
        return float(np.mean(rhos)) if rhos else math.nan


def _mean_z_baseline(
    train_src: np.ndarray,
    train_z: np.ndarray,
    models: np.ndarray,
    n_models: int,
    weight: np.ndarray | None = None,
) -> np.ndarray:
    """Each model's (``weight``-ed) mean of its outcomes' z; 0 for a model without outcomes."""
    weight = np.ones(len(train_z)) if weight is None else weight
    sums = np.bincount(train_src, weights=weight * train_z, minlength=n_models)
    total = np.bincount(train_src, weights=weight, minlength=n_models)
    return np.where(total > 0, sums / np.where(total > 0, total, 1.0), 0.0)[models]


def _near_z_baseline(
    data: HeteroData,
    train_src: np.ndarray,
    train_dst: np.ndarray,
    train_z: np.ndarray,
    models: np.ndarray,
    target: int,
    n_models: int,
) -> np.ndarray:
    """mean-z with each outcome weighted by how alike its target's records are to ``target``'s
    (``gnn.similarity``, every column at scale 1)."""
    x = data["dataset"].x
    mean, sd = kernel_statistics(x[torch.from_numpy(np.unique(train_dst))])
    gaps = squared_gaps(x[[target]].expand(len(train_dst), -1), x[torch.from_numpy(train_dst)], mean, sd)
    distance = gaps.sum(-1).double().numpy()
    weight = np.exp(-(distance - distance.min()))  # shifted: a far target must not underflow to 0
    return _mean_z_baseline(train_src, train_z, models, n_models, weight)


def _gbr_baseline(
    data: HeteroData,
    train_src: np.ndarray,
    train_dst: np.ndarray,
    train_z: np.ndarray,
    models: np.ndarray,
    target: int,
    seed: int,
) -> np.ndarray:
    from sklearn.ensemble import HistGradientBoostingRegressor

    xm, xd = data["model"].x.numpy(), data["dataset"].x.numpy()
    features = np.concatenate([xm[train_src], xd[train_dst]], axis=1)
    regressor = HistGradientBoostingRegressor(random_state=seed, max_iter=200, learning_rate=0.05)
    regressor.fit(features, train_z)
    query = np.concatenate([xm[models], np.repeat(xd[[target]], len(models), axis=0)], axis=1)
    return regressor.predict(query)


def _estimator_baselines(context: PairContext, models: np.ndarray, target: int) -> dict[str, np.ndarray]:
    """Per estimator kind scored for at least 3 of ``models`` on ``target``: its within-target z
    (NaN where unscored); and under ``estimators`` the mean over the kinds each pair has."""
    pair = context.features(models, np.full(len(models), target))
    k = len(ESTIMATOR_KINDS)
    values, has = pair[:, 6 : 6 + k], pair[:, 6 + k : 6 + 2 * k]
    out: dict[str, np.ndarray] = {}
    counts = has.sum(1)
    if (counts > 0).sum() >= 3:
        out["estimators"] = np.where(counts > 0, (values * has).sum(1) / np.maximum(counts, 1), np.nan)
    for i, kind in enumerate(ESTIMATOR_KINDS):
        if (has[:, i] > 0).sum() >= 3:
            out[kind] = np.where(has[:, i] > 0, values[:, i], np.nan)
    return out


Candidate = tuple[GnnConfig, TrainConfig]


def select_config(
    data: HeteroData,
    candidates: Sequence[Candidate],
    targets: Sequence[int],
    *,
    seed: int = 0,
    folds: int = 3,
    context: PairContext | None = None,
) -> tuple[int, list[float]]:
    """Index of the best candidate by grouped inner cross-validation over ``targets`` (and each
    candidate's mean r + tau): each group of targets is hidden in turn, one ensemble member per fit."""
    context = context or PairContext(data)
    rng = np.random.default_rng(seed)
    groups = np.array_split(rng.permutation(np.asarray(targets)), min(folds, len(targets)))
    full = outcome_table(data)
    quality = []
    for gnn, train in candidates:
        inner = TrainConfig.from_dict({**train.to_dict(), "ensemble": 1})
        rs, taus = [], []
        for group in groups:
            fitted = fit(
                data, gnn=gnn, train=inner, seed=seed, exclude_targets=group.tolist(), context=context
            )
            seen = outcome_table(data, group.tolist(), inner.z_clip)
            for target in group.tolist():
                on = full.dst == target
                z = fitted.ensemble.predict(data, context, seen, target, full.src[on]).z
                rs.append(pearson(z, full.accuracy[on]))
                taus.append(weighted_tau(z, full.accuracy[on]))
        quality.append(float(np.nanmean(rs) + np.nanmean(taus)))
    return int(np.argmax(quality)), quality


def loto(
    data: HeteroData,
    *,
    names: Sequence[str] | None = None,
    targets: Sequence[int] | None = None,
    gnn: GnnConfig | None = None,
    train: TrainConfig | None = None,
    seed: int = 0,
    leak: bool = False,
    baselines: bool = True,
    select: Sequence[Candidate] | None = None,
    progress: Callable[[str], None] | None = None,
) -> LotoResult:
    """Leave-one-target-out over ``targets`` (default: every dataset with >= 5 outcomes).

    ``names`` gives each dataset row a display name (e.g. ``IdMaps.names["dataset"]``).
    """
    started = time.perf_counter()
    gnn, train = gnn or GnnConfig(), train or TrainConfig()
    context = PairContext(data)
    full = outcome_table(data, (), train.z_clip)
    if targets is None:
        counts = np.bincount(full.dst, minlength=data["dataset"].num_nodes)
        targets = [int(t) for t in np.flatnonzero(counts >= MIN_OUTCOMES)]
    notes: list[str] = []
    if data[OUTCOME].edge_index.shape[1] == 0:
        notes.append("the graph holds no outcomes: nothing to evaluate.")
    rows: list[TargetResult] = []
    estimator_seen: set[str] = set()
    for target in targets:
        name = names[target] if names is not None else str(target)
        fold_gnn, fold_train, chosen = gnn, train, ""
        if select:  # the inner selection sees the other targets only
            others = [t for t in targets if t != target]
            best, _ = select_config(data, select, others, seed=seed, context=context)
            fold_gnn, fold_train = select[best]
            chosen = f" [candidate {best}]"
        row, estimators = _held_out_fold(
            data, context, full, target, fold_gnn, fold_train, seed=seed, leak=leak, baselines=baselines
        )
        row.name, row.chosen = name, chosen.strip()
        rows.append(row)
        estimator_seen |= estimators
        if progress:
            r, tau = row.scores["gnn"]
            progress(f"{name}: r={r:.3f} tau={tau:.3f} ({row.train_seconds:.1f} s){chosen}")
    if baselines and not estimator_seen:
        notes.append(
            "estimators: the graph holds no SCORED_ON estimator measurements for these targets (n/a)."
        )
    if leak:
        notes.append("LEAKED: each held-out target's outcomes were in training and in the histories.")
    methods = (*METHODS, *(k for k in ESTIMATOR_KINDS if k in estimator_seen)) if baselines else ("gnn",)
    return LotoResult(rows, methods, notes, time.perf_counter() - started)


def _held_out_fold(
    data: HeteroData,
    context: PairContext,
    full: Outcomes,
    target: int,
    gnn: GnnConfig,
    train: TrainConfig,
    *,
    seed: int,
    leak: bool,
    baselines: bool,
) -> tuple[TargetResult, set[str]]:
    """Train without ``target``'s outcomes, score its models, and (with ``baselines``) score the
    baselines on the same fold; returns the row (unnamed) and the estimator methods measured."""
    on_target = full.dst == target
    models, actual = full.src[on_target], full.accuracy[on_target]
    rest = outcome_table(data, [target], train.z_clip)
    exclude = () if leak else [target]
    result = fit(data, gnn=gnn, train=train, seed=seed, exclude_targets=exclude, context=context)
    if leak:  # the planted leak: the target's outcomes in training and in the sources' histories
        prediction = result.ensemble.predict(data, context, full, target, models, hide_target=False)
    else:
        prediction = result.ensemble.predict(data, context, rest, target, models)
    seen = prediction.seen.astype(np.float64)
    fold = _FoldScores(actual)
    fold.add("gnn", prediction.z, keep=True)
    estimators: set[str] = set()
    if baselines:
        estimators = _score_baselines(fold, data, context, rest, models, target, seen, gnn.seen_prior, seed)
    row = TargetResult(
        target,
        "",
        len(models),
        fold.scores,
        fold.coverage,
        result.seconds,
        actual=np.asarray(actual, dtype=np.float64),
        predictions=fold.predictions,
        seen=seen,
        seen_prior=gnn.seen_prior,
        models=np.asarray(models, dtype=np.int64),
        learned=prediction.learned,
        evidence=prediction.evidence,
        probed=prediction.probed,
    )
    return row, estimators


class _FoldScores:
    """(r, tau), coverage and (for some methods) the predictions of each method on one fold."""

    def __init__(self, actual: np.ndarray) -> None:
        self.actual = actual
        self.scores: dict[str, tuple[float, float]] = {}
        self.coverage: dict[str, int] = {}
        self.predictions: dict[str, np.ndarray] = {}

    def add(
        self, method: str, predicted: np.ndarray, mask: np.ndarray | None = None, keep: bool = False
    ) -> None:
        """Score ``predicted`` against the recorded accuracies (on ``mask``'s models only, if given)."""
        got, want = (predicted, self.actual) if mask is None else (predicted[mask], self.actual[mask])
        self.scores[method] = (pearson(got, want), weighted_tau(got, want))
        self.coverage[method] = len(self.actual) if mask is None else int(mask.sum())
        if keep:
            self.predictions[method] = predicted


def _score_baselines(
    fold: _FoldScores,
    data: HeteroData,
    context: PairContext,
    rest: Outcomes,
    models: np.ndarray,
    target: int,
    seen: np.ndarray,
    seen_prior: float,
    seed: int,
) -> set[str]:
    """Add every baseline's scores to ``fold`` (see the module docstring); returns the estimator
    methods that had measurements."""
    n_models = data["model"].num_nodes
    raw = outcome_table(data, [target], z_clip=math.inf, ddof=1)  # as the README defines it
    mean_z = _mean_z_baseline(raw.src, raw.z, models, n_models)
    fold.add("mean-z", mean_z, keep=True)
    fold.add("mean-z+seen", mean_z + seen_prior * seen)
    near_z = _near_z_baseline(data, raw.src, raw.dst, raw.z, models, target, n_models)
    fold.add("near-z+seen", near_z + seen_prior * seen)
    xm = data["model"].x.numpy()
    fold.add("reported", xm[models, _REPORTED], mask=xm[models, _REPORTED + 1] > 0)
    fold.add("gbr", _gbr_baseline(data, rest.src, rest.dst, rest.z, models, target, seed))
    estimated = _estimator_baselines(context, models, target)
    for method, values in estimated.items():
        fold.add(method, values, mask=np.isfinite(values))
    return set(estimated)


def _named_target_rows(
    store: GraphStore, data: HeteroData, maps: IdMaps, targets: Sequence[str]
) -> list[int]:
    """The dataset rows of ``targets`` (ids or names), each with at least ``MIN_OUTCOMES`` outcomes."""
    counts = data[OUTCOME].edge_index[1].bincount(minlength=data["dataset"].num_nodes)
    rows = []
    for name in targets:
        _, dataset_id = store.resolve(name, (Label.DATASET,))
        row = maps.index["dataset"].get(dataset_id)
        if row is None or int(counts[row]) < MIN_OUTCOMES:
            have = 0 if row is None else int(counts[row])
            raise ScorerError(
                f"{name!r} has {have} recorded outcomes; leave-one-target-out needs at least "
                f"{MIN_OUTCOMES} for a target."
            )
        rows.append(row)
    return rows


def evaluate_graph(
    store: GraphStore,
    targets: Sequence[str] = (),
    *,
    train: TrainConfig | None = None,
    seed: int = 0,
) -> LotoResult:
    """``loto`` on the graph in ``store``: every target with enough outcomes, or the named ``targets``
    (dataset ids or names). Raises ``ScorerError`` (one sentence) when the graph holds no outcomes
    or a named target has fewer than ``MIN_OUTCOMES``."""
    data, maps = build_hetero(store)
    if data[OUTCOME].edge_index.shape[1] == 0:
        raise ScorerError(
            "the graph holds no TRANSFERRED_TO outcomes, so there is nothing to evaluate; record "
            "fine-tuning runs (kgraft finetune) or import some (kgraft import transfergraph DIR)."
        )
    rows = _named_target_rows(store, data, maps, targets) if targets else None
    return loto(data, names=maps.ids["dataset"], targets=rows, train=train, seed=seed)

"""Scores for a (source model, target dataset) pair, each with the few facts that drove it.

* ``compatibility`` in [0, 1]: Phi(z_hat), the predicted percentile of the source's fine-tuned
  accuracy among sources on this target (z_hat from the GNN ensemble), with the ensemble's spread as
  uncertainty. A scorer trained on a graph without outcomes falls back to the mean within-target z of
  the transferability estimators recorded for the pair (SCORED_ON), else to the self-supervised
  TRAINED_ON link probability ("does the target look like what this model was trained on"), and says
  so in ``basis`` and its facts.
* ``shift_risk`` in [0, 1]: from SCORED_ON shift tests where present (per test 1 - p, or 2 (AUC - 0.5)
  for a domain classifier without p; the largest counts) blended 60/40 with a graph term: 0 when the
  source was trained on the target itself, 0.2 when they share DERIVED_FROM lineage, else 1 - the best
  of the domain and class-concept overlaps (Jaccard), 0.5 when the graph holds neither.
* ``bias_risk`` in [0, 1]: the known biases reaching the source through its lineage
  (``kg.lineage.biases_reaching``), each weighted by severity (low 0.25, medium 0.5, high 0.85, else
  0.5), by distance (x0.8 per hop beyond the source's own data) and by the share of the target's
  classes it touches (the holder's class concepts, or the bias's own ``extra.concepts``, against the
  target's); 1 - prod(1 - w_i). Without class information on either side a bias counts in full.

``recommend`` ranks every model in the graph for a target by compatibility and adds both risks to
the top ones. A model whose recorded runs collapsed to chance under a regime like the one the user
will run (``kg.outcomes``: train size within 4x, batch size within 2x) is ranked by its expected z,
(1 - rate) z + rate * ``Z_COLLAPSED`` with rate = collapses / (alike runs + 1), and the warning is its
first fact. It warns (``StaleScorerWarning``, and in each recommendation's ``notes``) when outcomes
were recorded after the scorer was trained, and notes a target with no profile.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, field

import numpy as np
import scipy.stats
from torch_geometric.data import HeteroData

from gnn.builder import (
    ESTIMATOR_KINDS,
    SCORE_KINDS,
    SCORED,
    SHIFT_KINDS,
    IdMaps,
    PairContext,
    canonical_dataset,
)
from gnn.train import Ensemble, Outcomes, ScorerInfo, graph_and_context, load_scorer, outcome_table
from kg.errors import NotFound
from kg.lineage import biases_reaching
from kg.outcomes import RecordedRun, collapse_rate, collapse_warning, recorded_runs
from kg.store import GraphStore
from ontology.vocab import Label

SEVERITY = {"low": 0.25, "medium": 0.5, "moderate": 0.5, "high": 0.85, "critical": 0.95}
DEFAULT_SEVERITY = 0.5
HOP_DECAY = 0.8
ALPHA = 0.05


class StaleScorerWarning(UserWarning):
    """The scorer was trained before the newest outcomes in the graph."""


@dataclass(frozen=True)
class Score:
    """A score in [0, 1], its uncertainty where known, and the facts that drove it."""

    value: float
    uncertainty: float | None
    facts: tuple[str, ...]


@dataclass(frozen=True)
class Recommendation:
    """One ranked source model for a target."""

    rank: int
    model_id: str
    name: str
    compatibility: float
    uncertainty: float
    shift_risk: float
    bias_risk: float
    facts: dict[str, tuple[str, ...]]
    """Keys ``compatibility``, ``shift_risk``, ``bias_risk``."""
    basis: str
    """``outcomes`` (GNN trained on recorded outcomes), ``estimators`` or ``self-supervised``."""
    predicted_z: float | None = None
    predicted_accuracy: float | None = None
    """Accuracy implied by the predicted z and the target's recorded outcomes (3 or more), else None."""
    recorded_accuracy: float | None = None
    notes: tuple[str, ...] = ()


@dataclass
class ScoringContext:
    """Everything scoring needs, read once: the graph, its id maps and pair context, the current
    outcomes, the scorer and its record."""

    data: HeteroData
    maps: IdMaps
    pairs: PairContext
    outcomes: Outcomes
    ensemble: Ensemble
    info: ScorerInfo
    notes: list[str] = field(default_factory=list)


def stale_message(info: ScorerInfo, data: HeteroData) -> str | None:
    """Why the scorer is out of date with the graph's outcomes, or ``None``."""
    newer = data.newest_outcome_time and info.created and str(data.newest_outcome_time) > info.created
    if info.outcome_digest == data.outcome_digest and not newer:
        return None
    now = int(data.n_outcome_runs)
    if newer:
        when = f"outcomes were recorded after it was trained (newest {data.newest_outcome_time})"
    else:
        when = f"the graph's outcomes changed since (it saw {info.n_outcomes}, the graph holds {now})"
    return f"the GNN scorer {info.id} is stale: {when}; retrain it with `kgraft gnn train`."


def scoring_context(store: GraphStore, scorer_id: str | None = None) -> ScoringContext:
    """Load the scorer and read the graph; adds the stale / fallback notes (and warns when stale)."""
    ensemble, info = load_scorer(store, scorer_id)
    data, maps, pairs = graph_and_context(store)
    ctx = ScoringContext(data, maps, pairs, outcome_table(data), ensemble, info)
    message = stale_message(info, data)
    if message:
        ctx.notes.append(message)
        warnings.warn(message, StaleScorerWarning, stacklevel=2)
    if ensemble.basis != "outcomes":
        ctx.notes.append(
            "no recorded outcomes when the scorer was trained: compatibility falls back to estimator "
            "scores where recorded, else to the self-supervised graph signal."
        )
    return ctx


def _target_row(store: GraphStore, data: HeteroData, maps: IdMaps, target: str) -> int:
    """The dataset row a target is scored as: its alias group's canonical row (``canonical_dataset``)."""
    _, dataset_id = store.resolve(target, (Label.DATASET,))
    row = maps.index["dataset"].get(dataset_id)
    if row is None:
        raise NotFound(f"{dataset_id!r} is a scorer's outcome snapshot, not a target dataset.")
    return canonical_dataset(data, row)


PROFILE_FLAGS = [1, 3, 5, 7, 9, 16]
"""Dataset feature columns that say whether a profile field is known (``builder.dataset_features``)."""


def no_profile_note(data: HeteroData, maps: IdMaps, target: int) -> str | None:
    """A note when the target dataset has no profile (size, classes, image size, statistics), else None."""
    if float(data["dataset"].x[target, PROFILE_FLAGS].sum()) > 0:
        return None
    name = maps.name_of("dataset", target)
    return (
        f"the target {name!r} has no profile (size, classes, image size unknown): its scores rest on the "
        "sources' records and the graph links alone; record the data with `kgraft dataset add` to profile it."
    )


# ----------------------------------------------------------------------------- compatibility


def compatibility(
    ctx: ScoringContext, target: int, models: np.ndarray
) -> tuple[list[Score], np.ndarray, str]:
    """Compatibility of each of ``models`` (model rows) with dataset row ``target``.

    Returns the scores, the predicted z [P] (NaN on a fallback) and the basis.
    """
    models = np.asarray(models, dtype=np.int64)
    prediction = ctx.ensemble.predict(ctx.data, ctx.pairs, ctx.outcomes, target, models)
    pair = ctx.pairs.features(models, np.full(len(models), target))
    names = ctx.maps.names["dataset"]
    recorded = _recorded(ctx.outcomes, target)
    scores: list[Score] = []
    k = len(ESTIMATOR_KINDS)
    basis = ctx.ensemble.basis
    if basis == "outcomes":
        value = scipy.stats.norm.cdf(prediction.z)
        spread = scipy.stats.norm.cdf(prediction.members).std(0)
        for i, m in enumerate(models.tolist()):
            facts = [f"predicted {prediction.z[i]:+.2f} SD from the mean source on this target"]
            drawn = prediction.attention[i][:2]
            if drawn:
                parts = ", ".join(f"{names[d] or d} (z {z:+.2f}, weight {w:.2f})" for d, w, z in drawn)
                facts.append(f"drew most on its recorded results on {parts}")
            else:
                facts.append(
                    "no recorded outcomes of this source elsewhere: from its features and graph only"
                )
            facts += _pair_facts(pair[i])
            if prediction.seen[i] and ctx.ensemble.gnn.seen_prior:
                facts.append(
                    f"already trained on this target's data: {ctx.ensemble.gnn.seen_prior:+.1f} SD "
                    "added to the learned prediction"
                )
            if prediction.probed is not None and prediction.probed[i] and int(prediction.probed.sum()) >= 2:
                weight = ctx.ensemble.effective_weight
                how = (
                    f"they re-ordered the probed shortlist with weight {weight:.2f}"
                    if weight
                    else "the scorer learned from its training outcomes how far to trust them"
                )
                facts.append(
                    f"probed on the target: estimators put it {prediction.evidence[i]:+.2f} SD from the "
                    f"{int(prediction.probed.sum())} probed candidates' mean; {how}"
                )
            if m in recorded:
                facts.append(
                    f"recorded accuracy on this target: {recorded[m]:.3f} (hidden from the prediction)"
                )
            scores.append(Score(float(value[i]), float(spread[i]), tuple(facts)))
        return scores, prediction.z, basis
    values, has = pair[:, 6 : 6 + k], pair[:, 6 + k : 6 + 2 * k]
    counts = has.sum(1)
    any_estimator = bool((counts > 0).any())
    for i in range(len(models)):
        if counts[i] > 0:
            z = float((values[i] * has[i]).sum() / counts[i])
            used = ", ".join(ESTIMATOR_KINDS[j] for j in np.flatnonzero(has[i]))
            fact = f"fallback (no outcomes to learn from): mean within-target z of {used} is {z:+.2f}"
            value, spread = float(scipy.stats.norm.cdf(z)), None
        else:
            fact = (
                "fallback (no outcomes to learn from): self-supervised link score, how much the target "
                f"looks like this model's training data: {prediction.link[i]:.2f}"
            )
            value, spread = float(prediction.link[i]), float(prediction.link_std[i])
        scores.append(Score(value, spread, (fact, *_pair_facts(pair[i]))))
    return scores, np.full(len(models), np.nan), "estimators" if any_estimator else "self-supervised"


def _recorded(outcomes: Outcomes, target: int) -> dict[int, float]:
    sel = outcomes.dst == target
    return {int(m): float(a) for m, a in zip(outcomes.src[sel], outcomes.accuracy[sel], strict=True)}


def _pair_facts(row: np.ndarray) -> list[str]:
    facts = []
    if row[0]:
        facts.append("trained on the target dataset itself")
    elif row[1]:
        facts.append("its training data shares DERIVED_FROM lineage with the target")
    return facts


# ----------------------------------------------------------------------------- shift risk


def shift_risk(ctx: ScoringContext, model: int, target: int) -> Score:
    """Shift risk of moving model row ``model`` to dataset row ``target`` (see the module docstring)."""
    facts: list[str] = []
    scored = ctx.data[SCORED]
    ei = scored.edge_index.numpy()
    sel = np.flatnonzero((ei[0] == model) & (ei[1] == target))
    test_risks = []
    p_col = len(SCORE_KINDS) + 1
    for e in sel.tolist():
        kind = SCORE_KINDS[int(scored.edge_kind[e])]
        if kind not in SHIFT_KINDS:
            continue
        attr = scored.edge_attr[e].numpy()
        value = float(scored.edge_value[e])
        if attr[p_col] > 0:
            p = float(10 ** (-attr[p_col + 1] * 10.0))
            risk = 1.0 - p
            verdict = "shifted" if p < ALPHA else "not shifted"
            facts.append(f"{kind} shift test: p = {p:.3g} ({verdict})")
        elif kind == "domain_classifier":
            risk = float(np.clip(2.0 * (value - 0.5), 0.0, 1.0))
            facts.append(f"domain classifier AUC {value:.2f}")
        else:
            continue
        test_risks.append(risk)
    pair = ctx.pairs.features(np.array([model]), np.array([target]))[0]
    if pair[0]:
        graph_risk = 0.0
        facts.append("trained on the target dataset itself")
    elif pair[1]:
        graph_risk = 0.2
        facts.append("its training data shares DERIVED_FROM lineage with the target")
    else:
        overlaps = []
        if pair[3]:
            overlaps.append(pair[2])
            facts.append(f"domain overlap with its training data: {pair[2]:.0%}")
        if pair[5]:
            overlaps.append(pair[4])
            facts.append(f"class-concept overlap with its training data: {pair[4]:.0%}")
        if overlaps:
            graph_risk = 1.0 - max(overlaps)
        else:
            graph_risk = 0.5
            facts.append(
                "the graph holds no domain or class information linking its training data to the target"
            )
    if test_risks:
        value = 0.6 * max(test_risks) + 0.4 * graph_risk
    else:
        value = graph_risk
        facts.append("no shift test recorded for this pair")
    return Score(float(np.clip(value, 0.0, 1.0)), None, tuple(facts))


# ----------------------------------------------------------------------------- bias risk


def bias_risk(store: GraphStore, ctx: ScoringContext, model: int, target: int) -> Score:
    """Bias risk of model row ``model`` for dataset row ``target`` (see the module docstring)."""
    model_id = ctx.maps.id_of("model", model)
    reaches = biases_reaching(store, Label.MODEL, model_id)
    if not reaches:
        return Score(0.0, None, ("no known bias reaches this model through its lineage",))
    target_concepts = set(ctx.pairs.concepts[target].indices.tolist())
    concept_index = ctx.maps.index["concept"]
    keep = 1.0
    facts: list[tuple[float, str]] = []
    for reach in reaches:
        props = reach.properties
        severity = str(props.get("severity") or "unknown").lower()
        weight = SEVERITY.get(severity, DEFAULT_SEVERITY)
        decay = HOP_DECAY ** max(0, reach.distance - 2)
        holder = reach.path[-2] if len(reach.path) >= 2 else None
        touched: set[int] | None = None
        extra = props.get("extra") if isinstance(props.get("extra"), dict) else {}
        if extra.get("concepts"):
            touched = {concept_index[c] for c in extra["concepts"] if c in concept_index}
        elif holder is not None and holder.label == Label.DATASET and holder.id in ctx.maps.index["dataset"]:
            row = ctx.maps.index["dataset"][holder.id]
            touched = set(ctx.pairs.concepts[row].indices.tolist()) or None
        if touched is not None and target_concepts:
            share = len(touched & target_concepts) / len(target_concepts)
            reach_text = f"touches {share:.0%} of the target's classes"
        else:
            share = 1.0
            reach_text = "no class information to compare, counted in full"
        w = weight * decay * share
        keep *= 1.0 - w
        kind = props.get("kind") or props.get("name") or reach.id
        facts.append((w, f"{kind} ({severity}) via {reach.path_text(model_id)}; {reach_text}"))
    ordered = tuple(text for _, text in sorted(facts, key=lambda f: -f[0]))[:4]
    return Score(float(1.0 - keep), None, ordered)


def pair_compatibility(
    store: GraphStore, target_dataset_id: str, model_id: str, *, scorer_id: str | None = None
) -> tuple[Score, str] | None:
    """The compatibility of one source with a target (id or name) and its basis, as ``recommend`` ranks
    it, without the shift and bias risks it adds per model; ``None`` when the model is not in the
    scorer's graph."""
    ctx = scoring_context(store, scorer_id)
    target = _target_row(store, ctx.data, ctx.maps, target_dataset_id)
    row = ctx.maps.index["model"].get(model_id)
    if row is None:
        return None
    scores, _, basis = compatibility(ctx, target, np.arange(ctx.data["model"].num_nodes))
    return scores[row], basis


# ----------------------------------------------------------------------------- recommend


def recommend(
    store: GraphStore,
    target_dataset_id: str,
    top: int = 10,
    *,
    scorer_id: str | None = None,
    train_size: int | None = None,
    batch_size: int | None = None,
    context: ScoringContext | None = None,
) -> list[Recommendation]:
    """The ``top`` source models for a target dataset (id or name), best first, with both risks.

    ``train_size`` and ``batch_size`` describe the regime the user will fine-tune under (default:
    the target's recorded size, any batch size); a candidate whose recorded runs collapsed to chance
    under a similar regime gets a warning among its compatibility facts (``kg.outcomes``). A server
    answering many requests passes ``context`` (``scoring_context``, read once) instead of reading
    the graph and the scorer again each time."""
    ctx = context or scoring_context(store, scorer_id)
    target = _target_row(store, ctx.data, ctx.maps, target_dataset_id)
    profile_note = no_profile_note(ctx.data, ctx.maps, target)
    notes = (*ctx.notes, profile_note) if profile_note else tuple(ctx.notes)
    models = np.arange(ctx.data["model"].num_nodes)
    if len(models) == 0:
        return []
    scores, z, basis = compatibility(ctx, target, models)
    ids = ctx.maps.ids["model"]
    rates, warnings_of = _collapses(store, ctx, target, train_size, batch_size)
    if basis == "outcomes":  # rank by the expected z under each source's collapse rate
        rate = np.array([rates.get(model_id, 0.0) for model_id in ids])
        z = (1.0 - rate) * z + rate * Z_COLLAPSED
        scores = [
            Score(float(scipy.stats.norm.cdf(z[i])), s.uncertainty, s.facts) if rate[i] > 0 else s
            for i, s in enumerate(scores)
        ]
    order = sorted(range(len(models)), key=lambda i: (-scores[i].value, ids[i]))[: max(top, 0)]
    mean, std, n = ctx.outcomes.stats(target)
    recorded = _recorded(ctx.outcomes, target)
    out = []
    for rank, i in enumerate(order, start=1):
        shift = shift_risk(ctx, int(models[i]), target)
        bias = bias_risk(store, ctx, int(models[i]), target)
        predicted_z = None if math.isnan(z[i]) else float(z[i])
        predicted_accuracy = (
            float(np.clip(mean + predicted_z * std, 0.0, 1.0)) if predicted_z is not None and n >= 3 else None
        )
        out.append(
            Recommendation(
                rank=rank,
                model_id=ids[i],
                name=ctx.maps.name_of("model", int(models[i])),
                compatibility=scores[i].value,
                uncertainty=scores[i].uncertainty if scores[i].uncertainty is not None else math.nan,
                shift_risk=shift.value,
                bias_risk=bias.value,
                facts={
                    "compatibility": warnings_of.get(ids[i], ()) + scores[i].facts,  # a warning first
                    "shift_risk": shift.facts,
                    "bias_risk": bias.facts,
                },
                basis=basis,
                predicted_z=predicted_z,
                predicted_accuracy=predicted_accuracy,
                recorded_accuracy=recorded.get(int(models[i])),
                notes=notes,
            )
        )
    return out


Z_COLLAPSED = -4.0
"""Within-target z a collapsed run is taken to reach. The failed runs in the TransferGraph records lie
4 to 12 standard deviations below the mean of the runs that trained on their target; -4 is the
conservative end."""


def _collapses(
    store: GraphStore,
    ctx: ScoringContext,
    target: int,
    train_size: int | None,
    batch_size: int | None,
) -> tuple[dict[str, float], dict[str, tuple[str, ...]]]:
    """(model id -> collapse rate under a regime like this one, model id -> a one-fact warning), for
    the models whose recorded runs collapsed (``kg.outcomes``; one query for every model)."""
    if train_size is None:
        raw = float(ctx.data["dataset"].x[target, 0])  # log1p n_samples (builder.dataset_features)
        known = float(ctx.data["dataset"].x[target, 1]) > 0
        train_size = round(math.expm1(raw)) if known else None
    by_model: dict[str, list[RecordedRun]] = {}
    for run in recorded_runs(store):
        by_model.setdefault(run.model_id, []).append(run)
    rates, facts = {}, {}
    for model_id, runs in by_model.items():
        warning = collapse_warning(runs, train_size=train_size, batch_size=batch_size)
        if warning:
            rate = collapse_rate(runs, train_size=train_size, batch_size=batch_size)
            rates[model_id] = rate
            facts[model_id] = (
                f"warning: {warning}; ranked by its expected z with a collapse rate of {rate:.2f}",
            )
    return rates, facts

"""``--source auto``: the source to fine-tune for a target, chosen from the scorer's ranking.

The ranking is the GNN scorer's (``transfer.loop.rank_target``, the same list the suitability report
shows); the choice is the best-ranked candidate that can actually be fine-tuned here:

* a classifier (``kind`` ``classifier``; the GNN scorer itself and other kinds are not sources);
* with a record the engine can rebuild and a checkpoint file on disk (external TransferGraph records,
  timm records without saved weights and moved checkpoints are skipped, each with the reason);
* not already trained on the target itself (that is no transfer: fine-tuned copies of earlier runs on
  this target would otherwise win their own ranking).

``transfer.loop.plan`` makes the choice once; the report and ``finetune`` read it from the plan, so what
the report recommends and what ``finetune`` trains cannot differ.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from kg import GraphStore
from kg.errors import KgError
from kg.lineage import was_trained_on
from ontology.vocab import Label


class NoCandidateSource(KgError):
    """No model in the graph can be fine-tuned on the target."""


def _number(value: Any) -> float | None:
    """``value`` as a finite float, else ``None``."""
    if value is None or isinstance(value, bool):
        return None
    try:
        out = float(value)
    except (TypeError, ValueError):
        return None
    return out if math.isfinite(out) else None


@dataclass(frozen=True)
class SourceChoice:
    """The chosen source for a target and why."""

    model_id: str
    rank: int
    """Its rank in the scorer's ranking (0: a given source that was not ranked)."""
    compatibility: float | None
    uncertainty: float | None
    basis: str
    """How compatibility was scored: ``outcomes``, ``estimators`` or ``self-supervised``."""
    facts: tuple[str, ...] = ()
    skipped: tuple[tuple[int, str, str], ...] = ()
    """Better-ranked models that cannot be fine-tuned: (rank, model id, reason)."""
    notes: tuple[str, ...] = ()

    def reason(self) -> str:
        """One line: rank, compatibility with its uncertainty, and its basis."""
        if self.compatibility is None:
            score = "compatibility not scored"
        else:
            spread = f" ± {self.uncertainty:.3f}" if self.uncertainty is not None else ""
            score = f"compatibility {self.compatibility:.3f}{spread}"
        return f"rank {self.rank} of the scorer's ranking, {score} (basis: {self.basis})"


def choice_from_row(rec: Any, skipped: tuple[tuple[int, str, str], ...] = ()) -> SourceChoice:
    """The choice record of one ranking row (a ``gnn.scores.Recommendation``)."""
    return SourceChoice(
        model_id=rec.model_id,
        rank=rec.rank,
        compatibility=_number(rec.compatibility),
        uncertainty=_number(rec.uncertainty),
        basis=rec.basis,
        facts=tuple(rec.facts.get("compatibility", ())),
        skipped=skipped,
        notes=tuple(rec.notes),
    )


def not_finetunable(store: GraphStore, model_id: str, target_id: str | None = None) -> str | None:
    """Why ``model_id`` cannot be a fine-tuning source (for ``target_id``), or ``None`` when it can."""
    from transfer.zoo.loading import checkpoint_path
    from transfer.zoo.record import ModelRecord, ZooError

    props = store.node(Label.MODEL, model_id)
    if props is None:
        return "not in the graph"
    kind = props.get("kind") or "classifier"
    if kind != "classifier":
        return f"a {kind}, not a classifier"
    try:
        path = checkpoint_path(ModelRecord.from_properties(props))
    except ZooError as exc:
        return str(exc).rstrip(".")
    if not path.is_file():
        return f"its checkpoint {path} is missing"
    if target_id is not None and was_trained_on(store, model_id, target_id):
        return "already trained on the target itself"
    return None


def choose_from_ranking(store: GraphStore, target_id: str, ranking: Sequence[Any]) -> SourceChoice:
    """The best-ranked fine-tunable candidate of ``ranking`` (``gnn.scores.Recommendation`` rows, best
    first), with the better-ranked ones it passed over; ``NoCandidateSource`` when none qualifies."""
    skipped: list[tuple[int, str, str]] = []
    for rec in ranking:
        why = not_finetunable(store, rec.model_id, target_id)
        if why:
            skipped.append((rec.rank, rec.model_id, why))
            continue
        return choice_from_row(rec, skipped=tuple(skipped))
    reasons = "; ".join(f"{m} is {why}" for _, m, why in skipped[:3])
    raise NoCandidateSource(
        f"no model in the graph can be fine-tuned on {target_id}: "
        + (reasons if skipped else "the graph holds no source models")
        + "; add one with `kgraft model add`."
    )


def pair_score(
    store: GraphStore, source_id: str, target_id: str, *, scorer_id: str | None = None
) -> tuple[float | None, float | None, str | None]:
    """Compatibility, its uncertainty and basis for one pair from the latest scorer; ``None``s when the
    graph holds no scorer (the policy then uses its defaults)."""
    from gnn.scores import StaleScorerWarning, pair_compatibility
    from gnn.train import latest_scorer

    if scorer_id is None and latest_scorer(store) is None:
        return None, None, None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", StaleScorerWarning)
        found = pair_compatibility(store, target_id, source_id, scorer_id=scorer_id)
    if found is None:
        return None, None, None
    score, basis = found
    return _number(score.value), _number(score.uncertainty), basis

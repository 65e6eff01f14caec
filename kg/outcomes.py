"""Fine-tuning outcomes: when a run failed, and what a model's recorded runs say about its regimes.

A TRANSFERRED_TO outcome carries the regime it ran under (``train_size``, ``epochs``, ``batch_size``,
``learning_rate``, ``preset``) and a ``failed`` flag. A run is *failed* when it ended at or near
chance: its accuracy closed less than ``FAILED_FRACTION`` of the gap between chance and a perfect
score,

    failed  <=>  (accuracy - chance) / (1 - chance) < FAILED_FRACTION,
    chance  =   max(1 / n_classes, the largest class's share of the samples when it is known).

Such a run is kept (it is a fact about the model under that regime, and the report warns about it)
but it is not a ranking signal: the scorer learns from the runs that trained.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from kg.store import GraphStore

FAILED_FRACTION = 0.05
"""Share of the chance-to-perfect gap below which a run counts as collapsed."""


def chance_accuracy(
    n_classes: int | None, class_counts: Mapping[str, int] | Sequence[int] | None = None
) -> float:
    """Accuracy of always answering the most common class (``1 / n_classes`` when the counts are
    unknown); NaN when neither is known."""
    counts = list(class_counts.values()) if isinstance(class_counts, Mapping) else list(class_counts or [])
    counts = [c for c in counts if isinstance(c, int | float) and c > 0]
    share = max(counts) / sum(counts) if counts else 0.0
    uniform = 1.0 / n_classes if n_classes and n_classes > 0 else 0.0
    best = max(share, uniform)
    return best if best > 0 else math.nan


def is_failed_run(accuracy: float, chance: float) -> bool:
    """Whether a run with this accuracy collapsed to chance (see the module docstring); never when
    the chance level is unknown or the accuracy is missing."""
    if not (math.isfinite(accuracy) and math.isfinite(chance)) or chance >= 1.0:
        return False
    return (accuracy - chance) / (1.0 - chance) < FAILED_FRACTION


@dataclass(frozen=True)
class RecordedRun:
    """One TRANSFERRED_TO outcome of a model, with its regime (``None`` where not recorded)."""

    model_id: str
    dataset_id: str
    accuracy: float
    failed: bool
    train_size: int | None
    batch_size: int | None
    epochs: int | None
    learning_rate: float | None
    preset: str | None


def recorded_runs(store: GraphStore, model_ids: Sequence[str] | None = None) -> list[RecordedRun]:
    """Every recorded outcome of ``model_ids`` (all models when ``None``; one query), with its regime
    and failed flag."""
    if model_ids is not None and not model_ids:
        return []
    where = "WHERE m.id IN $ids " if model_ids is not None else ""
    rows = store.query(
        f"MATCH (m:Model)-[t:TRANSFERRED_TO]->(d:Dataset) {where}"
        "RETURN m.id AS model, d.id AS dataset, t.accuracy AS accuracy, t.failed AS failed, "
        "t.train_size AS train_size, t.batch_size AS batch_size, t.epochs AS epochs, "
        "t.learning_rate AS learning_rate, t.preset AS preset",
        {"ids": list(model_ids)} if model_ids is not None else {},
    )
    return [
        RecordedRun(
            model_id=r["model"],
            dataset_id=r["dataset"],
            accuracy=float(r["accuracy"]) if r["accuracy"] is not None else math.nan,
            failed=bool(r["failed"]),
            train_size=_int(r["train_size"]),
            batch_size=_int(r["batch_size"]),
            epochs=_int(r["epochs"]),
            learning_rate=float(r["learning_rate"]) if r["learning_rate"] is not None else None,
            preset=r["preset"],
        )
        for r in rows
    ]


def _int(value: Any) -> int | None:
    return int(value) if value is not None else None


def _alike(runs: Sequence[RecordedRun], train_size: int | None, batch_size: int | None) -> list[RecordedRun]:
    """The runs under a regime like the given one: train size within 4x, batch size within 2x (an
    unknown side matches)."""

    def near(a: int | None, b: int | None, factor: float) -> bool:
        return a is None or b is None or (b / factor <= a <= b * factor)

    return [r for r in runs if near(r.train_size, train_size, 4.0) and near(r.batch_size, batch_size, 2.0)]


def collapse_rate(
    runs: Sequence[RecordedRun], *, train_size: int | None = None, batch_size: int | None = None
) -> float:
    """How often a model's runs under a similar regime collapsed: failed / (alike + 1), so one
    collapse in one run counts 0.5 and a model without collapses (or without runs) counts 0."""
    alike = _alike(runs, train_size, batch_size)
    return sum(r.failed for r in alike) / (len(alike) + 1)


def collapse_warning(
    runs: Sequence[RecordedRun], *, train_size: int | None = None, batch_size: int | None = None
) -> str | None:
    """One sentence when a model's history shows collapses under a regime like the given one
    (train size within 4x, batch size within 2x; an unknown side matches), else ``None``."""

    alike = _alike(runs, train_size, batch_size)
    failed = [r for r in alike if r.failed]
    if not failed:
        return None
    regime = []
    sizes = sorted({r.train_size for r in failed if r.train_size})
    batches = sorted({r.batch_size for r in failed if r.batch_size})
    if sizes:
        regime.append(f"train size {sizes[0]:,}" + (f"-{sizes[-1]:,}" if len(sizes) > 1 else ""))
    if batches:
        regime.append("batch " + "/".join(str(b) for b in batches))
    under = f" ({', '.join(regime)})" if regime else ""
    return f"collapsed to chance in {len(failed)} of {len(alike)} recorded runs under a similar regime{under}"

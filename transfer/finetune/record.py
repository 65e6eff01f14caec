"""Recording fine-tuning runs in the graph: the Activity, its lineage, and the transfer outcome.

One run writes (PROV-O shaped):

    (run:Activity {kind: "finetuning", settings, metrics, status, started, ended, device})
    (run)-[:USED {role: "source-model"}]->(source:Model)
    (run)-[:USED {role: "target-data"}]->(target:Dataset)
    (run)-[:USED {role: "source-task-eval"}]->(source data:Dataset)     when forgetting is measured
    (tuned:Model)-[:GENERATED_BY]->(run)
    (tuned)-[:FINETUNED_FROM {activity}]->(source)
    (tuned)-[:TRAINED_ON {split: "train"}]->(target)
    (source)-[:TRANSFERRED_TO {activity, accuracy, baseline_accuracy, gain, source_accuracy_before,
                               source_accuracy_after, forgetting, time,
                               train_size, epochs, batch_size, learning_rate, preset, failed}]->(target)

The Activity is written as ``running`` (``resumed`` when a run continues from a checkpoint) before
training, its metrics are updated after every epoch, and it ends ``finished`` or ``failed`` (with the
error in ``extra.error``). Every write is one ``GraphBatch``, so the graph never holds half a run.
Ids: ``run:{slug(source)}->{slug(target)}:{UTC timestamp}[-n]`` (``kg.ids.run_id``) and ``model:...``
with the same tail.

The outcome carries the ``Regime`` the run trained under, and ``failed`` when its accuracy is at
chance for the target (``kg.outcomes.is_failed_run``: less than 5% of the gap from chance, the larger
of ``1 / n_classes`` and the biggest class's share, to a perfect score; never when the target's
classes are unknown). ``kgraft finetune`` and ``transfer.track`` (and the callbacks built on it) both
record through this module.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import Any

from kg import GraphBatch, GraphStore
from kg.errors import NotFound
from kg.ids import run_id as run_id_of
from kg.outcomes import chance_accuracy, is_failed_run
from ontology.vocab import Label, Rel
from transfer.data import ImageDataset
from transfer.finetune.settings import FinetuneSettings
from transfer.register import model_batch, now, register_dataset, register_model
from transfer.zoo import ModelRecord

log = logging.getLogger(__name__)

A, D, M = Label.ACTIVITY, Label.DATASET, Label.MODEL
KIND = "finetuning"


@dataclass(frozen=True)
class Regime:
    """What a run trained under, as the TRANSFERRED_TO outcome records it (``None`` = not known)."""

    train_size: int | None = None
    epochs: int | None = None
    batch_size: int | None = None
    learning_rate: float | None = None
    preset: str | None = None

    @classmethod
    def from_settings(cls, settings: FinetuneSettings, train_size: int) -> Regime:
        """The regime of an engine run: its settings' epochs, batch size, base rate and preset."""
        return cls(train_size, settings.epochs, settings.batch_size, settings.base_lr, settings.preset)


def target_chance(store: GraphStore, target_id: str) -> float:
    """Chance accuracy on a Dataset from its recorded classes (NaN when the graph does not know them)."""
    node = store.node(D, target_id) or {}
    return chance_accuracy(node.get("n_classes"), node.get("class_counts"))


def new_run_id(source_id: str, target_id: str, store: GraphStore | None = None) -> str:
    """``run:{source}->{target}:{timestamp}``, with ``-2``, ``-3``... when that id is already taken."""
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S%fZ")
    base = run_id_of(source_id, target_id, stamp)
    run_id, n = base, 1
    while store is not None and store.node(A, run_id) is not None:
        n += 1
        run_id = f"{base}-{n}"
    return run_id


def model_id_for(run_id: str) -> str:
    """The fine-tuned model's id: the run id with ``model:`` in place of ``run:``."""
    return "model:" + run_id.removeprefix("run:")


def ensure_source_model(store: GraphStore, record: ModelRecord) -> str:
    """Create the source Model node from its record when the graph lacks it; returns its id.

    Its TRAINED_ON edge is added only when the pretraining dataset (``record.pretrained_on``, an id or
    name) is a Dataset in the graph: a missing dataset is not invented.
    """
    if store.node(M, record.id) is None:
        pretrained_on = None
        if record.pretrained_on:
            try:
                pretrained_on = store.resolve(record.pretrained_on, (D,))[1]
            except NotFound:
                log.info(
                    "source model %s: pretraining dataset %r is not in the graph",
                    record.id,
                    record.pretrained_on,
                )
        register_model(store, record, pretrained_on=pretrained_on)
    return record.id


def ensure_dataset(store: GraphStore, ds: ImageDataset, dataset_id: str | None) -> str:
    """The id of ``ds`` in the graph: ``dataset_id`` when that node exists, else ``ds`` registered under it
    (or under ``kg.ids.dataset_id(ds.name)``); registering identical content again is a no-op."""
    if dataset_id and store.node(D, dataset_id) is not None:
        return dataset_id
    return register_dataset(store, ds, id=dataset_id).id


def start_batch(
    run_id: str,
    *,
    name: str,
    source_id: str,
    target_id: str,
    source_data_id: str | None,
    settings: dict[str, Any],
    device: str,
    started: str,
    status: str,
    extra: dict[str, Any],
    metrics: dict[str, Any],
) -> GraphBatch:
    """The Activity (``running`` or ``resumed``) and what it USED."""
    batch = GraphBatch()
    batch.node(
        A,
        run_id,
        name=name,
        kind=KIND,
        settings=settings,
        metrics=metrics,
        status=status,
        started=started,
        device=device,
        created=started,
        extra=extra,
    )
    batch.edge(Rel.USED, (A, run_id), (M, source_id), role="source-model")
    batch.edge(Rel.USED, (A, run_id), (D, target_id), role="target-data")
    if source_data_id:
        batch.edge(Rel.USED, (A, run_id), (D, source_data_id), role="source-task-eval")
    return batch


def progress_batch(run_id: str, metrics: dict[str, Any], extra: dict[str, Any]) -> GraphBatch:
    """The Activity's metrics so far (written after every epoch)."""
    batch = GraphBatch()
    batch.node(A, run_id, metrics=metrics, extra=extra)
    return batch


def tuned_model_batch(tuned: ModelRecord | Mapping[str, Any], target_id: str) -> tuple[str, GraphBatch]:
    """The fine-tuned Model node TRAINED_ON the target's train split, from a full record (engine runs) or
    from node properties with at least ``id`` (tracked runs, whose model kgraft cannot rebuild)."""
    if isinstance(tuned, ModelRecord):
        return tuned.id, model_batch(tuned, pretrained_on=target_id)
    props = dict(tuned)
    model_id = props.pop("id")
    batch = GraphBatch()
    batch.node(M, model_id, created=now(), **props)
    batch.edge(Rel.TRAINED_ON, (M, model_id), (D, target_id), split="train")
    return model_id, batch


def finish_batch(
    run_id: str,
    *,
    tuned: ModelRecord | Mapping[str, Any],
    source_id: str,
    target_id: str,
    metrics: dict[str, Any],
    extra: dict[str, Any],
    outcome: dict[str, Any],
    regime: Regime,
    chance: float = math.nan,
) -> GraphBatch:
    """The finished Activity, the fine-tuned Model with its lineage, and the TRANSFERRED_TO outcome with
    its regime; ``chance`` (the target's chance accuracy, NaN when unknown) decides ``failed``."""
    ended = now()
    tuned_id, batch = tuned_model_batch(tuned, target_id)
    batch.node(A, run_id, status="finished", ended=ended, metrics=metrics, extra=extra)
    batch.edge(Rel.GENERATED_BY, (M, tuned_id), (A, run_id))
    batch.edge(Rel.FINETUNED_FROM, (M, tuned_id), (M, source_id), activity=run_id)
    accuracy = outcome.get("accuracy")
    batch.edge(
        Rel.TRANSFERRED_TO,
        (M, source_id),
        (D, target_id),
        activity=run_id,
        accuracy=outcome.get("accuracy"),
        baseline_accuracy=outcome.get("baseline_accuracy"),
        gain=outcome.get("gain"),
        source_accuracy_before=outcome.get("source_accuracy_before"),
        source_accuracy_after=outcome.get("source_accuracy_after"),
        forgetting=outcome.get("forgetting"),
        **asdict(regime),
        failed=accuracy is not None and is_failed_run(float(accuracy), chance),
        time=ended,
        extra={"finetuned_model": tuned_id, **outcome.get("extra", {})},
    )
    return batch


def fail_batch(run_id: str, error: str, metrics: dict[str, Any], extra: dict[str, Any]) -> GraphBatch:
    """The Activity marked ``failed``, with the error and the metrics it got to."""
    batch = GraphBatch()
    batch.node(A, run_id, status="failed", ended=now(), metrics=metrics, extra={**extra, "error": error})
    return batch


class RunRecorder:
    """Writes one run's Activity as it goes; every method is a no-op without a store (or off rank 0)."""

    def __init__(self, store: GraphStore | None, run_id: str) -> None:
        self.store = store
        self.run_id = run_id
        self.extra: dict[str, Any] = {}

    def _apply(self, batch: GraphBatch) -> None:
        if self.store is not None:
            self.store.apply(batch)

    def start(self, **fields: Any) -> None:
        """Record the run as ``running`` (or ``resumed``) with what it uses; see ``start_batch``."""
        self._apply(start_batch(self.run_id, extra=self.extra, **fields))

    def epoch(self, metrics: dict[str, Any]) -> None:
        """Record the metrics so far."""
        self._apply(progress_batch(self.run_id, metrics, self.extra))

    def finish(self, **fields: Any) -> None:
        """Record the finished run, its model and outcome; see ``finish_batch`` (the chance level comes
        from the target's node)."""
        if self.store is not None:
            chance = target_chance(self.store, fields["target_id"])
            self._apply(finish_batch(self.run_id, extra=self.extra, chance=chance, **fields))

    def fail(self, error: str, metrics: dict[str, Any]) -> None:
        """Record the run as failed; a failure to record is logged, never raised over the original error."""
        if self.store is None:
            return
        try:
            self._apply(fail_batch(self.run_id, error, metrics, self.extra))
        except Exception:  # the training error matters more than the bookkeeping one
            log.exception("could not record the failure of run %s", self.run_id)


__all__ = [
    "KIND",
    "Regime",
    "RunRecorder",
    "ensure_dataset",
    "ensure_source_model",
    "fail_batch",
    "finish_batch",
    "model_id_for",
    "new_run_id",
    "progress_batch",
    "start_batch",
    "target_chance",
    "tuned_model_batch",
]

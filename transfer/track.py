"""Recording fine-tuning runs made outside kgraft: your own loop, Lightning, the Hugging Face Trainer.

    from transfer import track

    with track.run(store, source="resnet18", target="digits", train_size=1797, epochs=5,
                   batch_size=64, learning_rate=1e-3, preset="full") as r:
        for epoch in range(1, 6):
            ...                                   # train and evaluate
            r.log(epoch=epoch, accuracy=acc, loss=loss)

writes what ``kgraft finetune`` writes, through the same code (``transfer.finetune.record``): the
Activity (``running``, its metrics after every ``log``), then at the end, in one batch, the fine-tuned
Model (FINETUNED_FROM the source, TRAINED_ON the target, GENERATED_BY the run) and the TRANSFERRED_TO
outcome with its regime (train size, epochs, batch size, learning rate, preset) and ``failed`` when the
accuracy is at chance. An exception inside the block marks the Activity ``failed`` (with the error) and
writes no outcome; so does a run that ends without any accuracy.

The outcome's accuracy is the one given to ``r.set_outcome(accuracy=...)``, else the last ``accuracy``
passed to ``r.log``. ``source`` is a Model in the graph (id or name) or a ``ModelRecord`` (recorded when
missing); ``target`` a Dataset in the graph or an ``ImageDataset`` (registered when missing).
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

from kg import GraphStore
from kg.errors import KgError, NotFound
from kg.ids import dataset_id
from ontology.vocab import Label
from transfer.data import ImageDataset
from transfer.finetune.record import (
    Regime,
    RunRecorder,
    ensure_dataset,
    ensure_source_model,
    model_id_for,
    new_run_id,
)
from transfer.finetune.settings import FinetuneSettings
from transfer.register import now
from transfer.zoo import ModelRecord

OUTCOME_FIELDS = ("baseline_accuracy", "source_accuracy_before", "source_accuracy_after")


class TrackError(KgError):
    """A tracked run was given something it cannot record; the message is one sentence."""


def _number(name: str, value: Any) -> float:
    """A metric as a float (Python numbers, NumPy and 0-d torch values); one sentence otherwise."""
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise TrackError(f"metric {name!r} must be a number, got {value!r}.") from None
    if not math.isfinite(number):
        raise TrackError(f"metric {name!r} must be finite, got {number}.")
    return number


def _accuracy(name: str, value: Any) -> float:
    number = _number(name, value)
    if not 0.0 <= number <= 1.0:
        raise TrackError(f"{name} is a fraction in [0, 1], got {number}.")
    return number


class TrackedRun:
    """One run being recorded: ``log`` metrics as it trains, optionally ``set_outcome``, then
    ``finish`` (or ``fail``). ``run(...)`` calls ``finish`` and ``fail`` for you."""

    def __init__(
        self,
        store: GraphStore,
        run_id: str,
        source_id: str,
        target_id: str,
        regime: Regime,
        model: dict[str, Any],
    ) -> None:
        self.store = store
        self.run_id = run_id
        self.model_id = model["id"]
        self.source_id = source_id
        self.target_id = target_id
        self.regime = regime
        self.history: list[dict[str, float]] = []
        self._model = model
        self._recorder = RunRecorder(store, run_id)
        self._outcome: dict[str, float] = {}
        self.status = "running"

    @property
    def extra(self) -> dict[str, Any]:
        """Free-form facts kept on the Activity's ``extra`` (written with the next update)."""
        return self._recorder.extra

    def metrics(self) -> dict[str, Any]:
        """The Activity's metrics: every logged row under ``epochs`` and the latest value of each."""
        latest: dict[str, float] = {}
        for row in self.history:
            latest.update(row)
        return {"epochs": list(self.history), **{k: v for k, v in latest.items() if k != "epoch"}}

    def log(self, epoch: float | None = None, **metrics: Any) -> None:
        """Record metrics (numbers) after an epoch or evaluation; one small graph write."""
        self._check_open()
        row = {name: _number(name, value) for name, value in metrics.items()}
        if "accuracy" in row:
            _accuracy("accuracy", row["accuracy"])
        if epoch is not None:
            row = {"epoch": _number("epoch", epoch), **row}
        self.history.append(row)
        self._recorder.epoch(self.metrics())

    def set_outcome(self, accuracy: float, **measured: float) -> None:
        """The final test accuracy (and optionally ``baseline_accuracy``, ``source_accuracy_before`` /
        ``_after``), when it is not the last logged ``accuracy``."""
        self._check_open()
        unknown = sorted(set(measured) - set(OUTCOME_FIELDS))
        if unknown:
            raise TrackError(f"unknown outcome field(s) {unknown}; use {', '.join(OUTCOME_FIELDS)}.")
        self._outcome = {"accuracy": _accuracy("accuracy", accuracy)}
        self._outcome.update({k: _accuracy(k, v) for k, v in measured.items()})

    def finish(self) -> None:
        """Record the finished run: the fine-tuned Model, its lineage and the outcome, in one batch.

        Without any accuracy the run is recorded as failed instead and ``TrackError`` is raised.
        """
        self._check_open()
        outcome: dict[str, Any] = dict(self._outcome)
        if "accuracy" not in outcome:
            logged = [row["accuracy"] for row in self.history if "accuracy" in row]
            if not logged:
                message = "the run ended without an accuracy; log one or call set_outcome(accuracy=...)."
                self.fail(message)
                raise TrackError(message)
            outcome["accuracy"] = logged[-1]
        if "baseline_accuracy" in outcome:
            outcome["gain"] = outcome["accuracy"] - outcome["baseline_accuracy"]
        if "source_accuracy_before" in outcome and "source_accuracy_after" in outcome:
            outcome["forgetting"] = outcome["source_accuracy_before"] - outcome["source_accuracy_after"]
        self._recorder.finish(
            tuned=self._model,
            source_id=self.source_id,
            target_id=self.target_id,
            metrics={**self.metrics(), **outcome},
            outcome=outcome,
            regime=self.regime,
        )
        self.status = "finished"

    def fail(self, error: str) -> None:
        """Record the run as failed with ``error``; no outcome is written."""
        if self.status != "running":
            return
        self._recorder.fail(error, self.metrics())
        self.status = "failed"

    def _check_open(self) -> None:
        if self.status != "running":
            raise TrackError(f"run {self.run_id} is already {self.status}.")


def _source_id(store: GraphStore, source: str | ModelRecord) -> str:
    if isinstance(source, ModelRecord):
        return ensure_source_model(store, source)
    return store.resolve(source, (Label.MODEL,))[1]


def _target_id(store: GraphStore, target: str | ImageDataset) -> str:
    """The target's Dataset id: registered from its images, or found by id, name, or the id its name
    gives (``kg.ids.dataset_id``: ``"Oxford_Pets"`` finds ``oxford-pets``)."""
    if isinstance(target, ImageDataset):
        return ensure_dataset(store, target, None)
    try:
        return store.resolve(target, (Label.DATASET,))[1]
    except NotFound:
        if target.strip() and store.node(Label.DATASET, dataset_id(target)) is not None:
            return dataset_id(target)
        raise


def _positive(name: str, value: Any, kind: type) -> Any:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or not value > 0:
        raise TrackError(f"{name} must be a positive number, got {value!r}.")
    return kind(value)


def start(
    store: GraphStore,
    *,
    source: str | ModelRecord,
    target: str | ImageDataset,
    settings: FinetuneSettings | Mapping[str, Any] | None = None,
    train_size: int | None = None,
    epochs: int | None = None,
    batch_size: int | None = None,
    learning_rate: float | None = None,
    preset: str | None = None,
    name: str | None = None,
    model_name: str | None = None,
    checkpoint: str | None = None,
    framework: str = "python",
    device: str | None = None,
) -> TrackedRun:
    """Record a run as ``running`` and return it (``run`` is the context-manager form).

    ``settings`` is kept on the Activity as given; a ``FinetuneSettings`` also fills the regime's
    epochs, batch size, learning rate (its ``base_lr``) and preset where they are not passed.
    """
    if isinstance(settings, FinetuneSettings):
        epochs = epochs if epochs is not None else settings.epochs
        batch_size = batch_size if batch_size is not None else settings.batch_size
        learning_rate = learning_rate if learning_rate is not None else settings.base_lr
        preset = preset or settings.preset
        settings_dict: dict[str, Any] = settings.to_dict()
    elif settings is None or isinstance(settings, Mapping):
        settings_dict = dict(settings or {})
    else:
        raise TrackError(f"settings must be FinetuneSettings or a mapping, not {type(settings).__name__}.")
    regime = Regime(
        train_size=_positive("train_size", train_size, int),
        epochs=_positive("epochs", epochs, int),
        batch_size=_positive("batch_size", batch_size, int),
        learning_rate=_positive("learning_rate", learning_rate, float),
        preset=preset,
    )
    target_id = _target_id(store, target)  # datasets first, so a new source model can link its data
    source_id = _source_id(store, source)
    source_name = (store.node(Label.MODEL, source_id) or {}).get("name") or source_id
    target_name = (store.node(Label.DATASET, target_id) or {}).get("name") or target_id
    run_id = new_run_id(source_id, target_id, store)
    model_id = model_id_for(run_id)
    model = {
        "id": model_id,
        "name": model_name or f"{source_name} fine-tuned on {target_name}",
        "source": f"kgraft-track:{framework}",
        "checkpoint": checkpoint,
        "description": f"{source_name} fine-tuned on {target_name}, recorded by run {run_id}.",
        "extra": {"finetuned_from": source_id, "activity": run_id, "framework": framework},
    }
    tracked = TrackedRun(store, run_id, source_id, target_id, regime, model)
    tracked.extra.update(framework=framework, recorded_by="transfer.track")
    tracked._recorder.start(
        name=name or f"fine-tune {source_name} on {target_name} ({framework})",
        source_id=source_id,
        target_id=target_id,
        source_data_id=None,
        settings=settings_dict,
        device=device,
        started=now(),
        status="running",
        metrics=tracked.metrics(),
    )
    return tracked


@contextmanager
def run(store: GraphStore, **kwargs: Any) -> Iterator[TrackedRun]:
    """``with run(store, source=..., target=..., ...) as r:`` records a run (see ``start``); it is
    finished when the block ends, or marked failed with the error when the block raises."""
    tracked = start(store, **kwargs)
    try:
        yield tracked
    except BaseException as err:
        tracked.fail(str(err) if isinstance(err, KgError) else f"{type(err).__name__}: {err}")
        raise
    if tracked.status == "running":
        tracked.finish()


__all__ = ["TrackError", "TrackedRun", "run", "start"]

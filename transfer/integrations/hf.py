"""A Hugging Face ``transformers.TrainerCallback`` that records training as a kgraft run.

    callback = KgraftTrainerCallback(store, source="vit-tiny", target="digits")
    trainer = Trainer(model, args, train_dataset=train, eval_dataset=test,
                      compute_metrics=accuracy, callbacks=[callback])
    with callback.failures_recorded():      # the Trainer has no exception hook
        trainer.train()

At the start of training it records the run as ``running`` with the regime read from the Trainer:
train size (the train loader's dataset length), epochs, batch size (per device x devices x gradient
accumulation steps), learning rate (``args.learning_rate``); arguments given to the callback win. Every
evaluation is logged (``eval_`` stripped from the names; ``eval_accuracy`` is the run's accuracy), and
the end of training records the outcome from the last one. ``failures_recorded()`` marks the run failed
when training raises. Only the main process records.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from transformers import TrainerCallback, TrainerControl, TrainerState, TrainingArguments

from kg import GraphStore
from transfer import track
from transfer.integrations import scalar_metrics


class KgraftTrainerCallback(TrainerCallback):
    """Record a ``Trainer`` run in ``store`` as a fine-tuning run of ``source`` on ``target`` (as in
    ``transfer.track.start``); ``accuracy`` names the evaluation metric that is the run's accuracy."""

    def __init__(
        self,
        store: GraphStore,
        *,
        source: Any,
        target: Any,
        accuracy: str = "eval_accuracy",
        settings: Any = None,
        **track_args: Any,
    ) -> None:
        self.store = store
        self.source = source
        self.target = target
        self.accuracy = accuracy
        self.settings = settings
        self.track_args = track_args
        self.run: track.TrackedRun | None = None

    def on_train_begin(
        self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs: Any
    ) -> None:
        if not state.is_world_process_zero:
            return
        loader = kwargs.get("train_dataloader")
        try:
            train_size = len(loader.dataset) if loader is not None else None
        except TypeError:  # an iterable dataset has no length
            train_size = None
        epochs = state.num_train_epochs or args.num_train_epochs
        read = {
            "train_size": train_size,
            "epochs": math.ceil(epochs) if epochs else None,
            "batch_size": args.per_device_train_batch_size
            * max(1, args.world_size)
            * args.gradient_accumulation_steps,
            "learning_rate": args.learning_rate,
        }
        settings = self.settings if self.settings is not None else _settings(args)
        self.run = track.start(
            self.store,
            source=self.source,
            target=self.target,
            settings=settings,
            framework="transformers",
            device=str(args.device),
            **{**read, **self.track_args},
        )

    def on_evaluate(
        self,
        args: TrainingArguments,
        state: TrainerState,
        control: TrainerControl,
        metrics: dict[str, float] | None = None,
        **kwargs: Any,
    ) -> None:
        if self.run is not None and self.run.status == "running" and metrics:
            values = scalar_metrics(metrics, self.accuracy, prefix="eval_")
            values.pop("epoch", None)
            self.run.log(epoch=state.epoch, **values)

    def on_train_end(
        self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs: Any
    ) -> None:
        if self.run is not None and self.run.status == "running":
            self.run.finish()

    @contextmanager
    def failures_recorded(self) -> Iterator[None]:
        """Mark the run failed (with the error) when the block raises; the error propagates."""
        try:
            yield
        except BaseException as err:
            if self.run is not None:
                self.run.fail(f"{type(err).__name__}: {err}")
            raise


def _settings(args: TrainingArguments) -> dict[str, Any]:
    """The Trainer options that shape a fine-tuning run, as the Activity's settings."""
    names = (
        "learning_rate",
        "num_train_epochs",
        "per_device_train_batch_size",
        "gradient_accumulation_steps",
        "weight_decay",
        "warmup_steps",
        "lr_scheduler_type",
        "optim",
        "seed",
    )
    return {
        name: _plain(getattr(args, name, None)) for name in names if getattr(args, name, None) is not None
    }


def _plain(value: Any) -> Any:
    value = getattr(value, "value", value)  # the Trainer's enums (scheduler type, optimiser) by value
    return value if isinstance(value, int | float | str | bool) else str(value)

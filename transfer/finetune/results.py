"""What a fine-tuning run reports: one ``EpochReport`` per epoch and the ``FinetuneResult`` of the call.

``run_metrics`` turns the reports so far into the Activity's ``metrics`` (what the graph and the
checkpoint hold).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from torch import nn

from transfer.finetune.data import Size
from transfer.finetune.settings import FinetuneSettings
from transfer.zoo import ModelRecord


@dataclass
class EpochReport:
    """What one epoch did; the progress callback gets one per epoch (on rank 0)."""

    epoch: int  # 1-based
    epochs: int
    stage: int  # 1 = head only, 2 = groups freeze_cut..
    image_size: Size
    trainable_groups: list[int]
    lrs: dict[str, float]  # layer group index -> peak rate, read from the optimiser
    train_loss: float
    train_accuracy: float
    eval_accuracy: float
    eval_split: str
    seconds: float
    images_per_second: float
    cached_features: bool
    micro_batch: int

    def to_dict(self) -> dict[str, Any]:
        """JSON-able values (what the Activity's metrics hold per epoch)."""
        return {**self.__dict__, "image_size": list(self.image_size)}

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> EpochReport:
        return cls(**{**values, "image_size": tuple(values["image_size"])})


Progress = Callable[[EpochReport], None]


@dataclass
class FinetuneResult:
    """The outcome of ``finetune``. ``finished`` is False when the call stopped after
    ``max_epochs_this_call`` epochs (resume to go on); then ``record`` and ``model_path`` are None."""

    run_id: str
    accuracy: float
    test_split: str
    epochs: list[EpochReport]
    model: nn.Module
    settings: FinetuneSettings
    state_file: Path
    device: str
    finished: bool = True
    model_id: str | None = None
    record: ModelRecord | None = None
    model_path: Path | None = None
    baseline_accuracy: float | None = None
    gain: float | None = None
    source_accuracy_before: float | None = None
    source_accuracy_after: float | None = None
    forgetting: float | None = None
    timings: dict[str, float] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    head_kept: bool = False

    def summary(self) -> dict[str, Any]:
        """JSON-able headline numbers (what the CLI prints)."""
        keys = (
            "run_id",
            "model_id",
            "accuracy",
            "test_split",
            "finished",
            "baseline_accuracy",
            "gain",
            "source_accuracy_before",
            "source_accuracy_after",
            "forgetting",
            "device",
            "head_kept",
        )
        out = {k: getattr(self, k) for k in keys}
        out.update(
            model_path=str(self.model_path) if self.model_path else None,
            notes=self.notes,
            timings=self.timings,
            epochs=[e.to_dict() for e in self.epochs],
        )
        return out


def run_metrics(history: Sequence[EpochReport], timings: dict[str, float]) -> dict[str, Any]:
    """The Activity's metrics: every epoch's report, the last accuracy, timings."""
    out: dict[str, Any] = {"epochs": [e.to_dict() for e in history], **timings}
    if history:
        out["eval_accuracy"] = history[-1].eval_accuracy
        seconds = sum(e.seconds for e in history)
        out["images_per_second"] = sum(e.images_per_second * e.seconds for e in history) / max(seconds, 1e-9)
    return out


__all__ = ["EpochReport", "FinetuneResult", "Progress", "run_metrics"]

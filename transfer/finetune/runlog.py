"""One run's bookkeeping: its folder and resumable checkpoint, its id, its reports and timings, and its
Activity in the graph, from ``running`` (or ``resumed``) through every epoch to ``failed``.

Only rank 0 writes: the checkpoint after every epoch (atomically, ``checkpoint.py``) and the graph
(``record.py``); the other DDP processes keep the same reports and wait at the same barriers.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from kg import GraphStore
from kg.clock import now
from kg.ids import dataset_id
from transfer.data import ImageDataset, checksum
from transfer.finetune.checkpoint import (
    check_resumable,
    check_writable,
    checkpoint_file,
    load_state,
    rng_state,
    save_state,
)
from transfer.finetune.record import RunRecorder, ensure_dataset, ensure_source_model, new_run_id
from transfer.finetune.results import EpochReport, Progress, run_metrics
from transfer.finetune.runtime import Runtime, barrier, broadcast
from transfer.finetune.settings import FinetuneError, FinetuneSettings
from transfer.finetune.train import Fit, Stage
from transfer.zoo import ModelRecord

log = logging.getLogger(__name__)


def fingerprint(source: ModelRecord, target: ImageDataset) -> dict[str, str]:
    """What a checkpoint must match to be resumed: the source model and the target data."""
    return {"source model": f"{source.id}:{source.checksum}", "target data": checksum(target)}


def open_run_folder(
    out: Path,
    rt: Runtime,
    store: GraphStore | None,
    resume: bool,
    settings: FinetuneSettings,
    prints: dict[str, str],
) -> dict[str, Any] | None:
    """Check the run folder before any training: writable, and holding either nothing or (with
    ``resume``) this run's checkpoint, which is returned; ``FinetuneError`` otherwise."""
    state_file = checkpoint_file(out)
    if store is not None and not rt.is_main:
        raise FinetuneError("only rank 0 may record the run; pass store=None on the other ranks.")
    if rt.is_main:
        check_writable(out)
    saved = load_state(state_file) if resume else None
    if saved is not None:
        check_resumable(saved, settings, prints)
    elif rt.is_main and state_file.exists():
        raise FinetuneError(
            f"{out} already holds the checkpoint of another run; pass resume=True to continue it or "
            "choose another out_dir."
        )
    barrier(rt)
    return saved


@dataclass
class RunLog:
    """What one run keeps as it goes; ``on_epoch`` is what ``train`` calls after every epoch."""

    rt: Runtime
    fit: Fit
    out: Path
    run_id: str
    started: str
    prints: dict[str, str]
    recorder: RunRecorder
    progress: Progress | None = None
    history: list[EpochReport] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=dict)

    @property
    def state_file(self) -> Path:
        return checkpoint_file(self.out)

    def metrics(self) -> dict[str, Any]:
        """The Activity's metrics so far."""
        return run_metrics(self.history, self.timings)

    def on_epoch(self, report: EpochReport, stage: Stage, scaler: torch.amp.GradScaler) -> None:
        """Keep the report, checkpoint (atomically, rank 0), record the metrics, report progress."""
        self.history.append(report)
        self.timings["epoch_seconds"] = self.timings.get("epoch_seconds", 0.0) + report.seconds
        if self.rt.is_main:
            save_state(self.state_file, self._state(report, stage, scaler))
            self.recorder.epoch(self.metrics())
            if self.progress is not None:
                self.progress(report)
        barrier(self.rt)

    def _state(self, report: EpochReport, stage: Stage, scaler: torch.amp.GradScaler) -> dict[str, Any]:
        """What a resumed run needs to go on exactly where this epoch ends."""
        return {
            "run_id": self.run_id,
            "started": self.started,
            "settings": self.fit.settings.to_dict(),
            "fingerprint": self.prints,
            "epochs_done": report.epoch,
            "stage": stage.plan.stage,
            "model": {k: v.detach().cpu() for k, v in self.fit.model.state_dict().items()},
            "optimizer": stage.optimizer.state_dict(),
            "scheduler": stage.scheduler.state_dict(),
            "scaler": scaler.state_dict() if scaler.is_enabled() else None,
            "rng": rng_state(),
            "metrics": [e.to_dict() for e in self.history],
            "timings": self.timings,
            "micro_batch": self.fit.micro_batch,
            "extra": self.recorder.extra,
        }

    @contextlib.contextmanager
    def failures_recorded(self) -> Iterator[None]:
        """Record the run as failed (with the metrics it got to) when the block raises, then re-raise."""
        try:
            yield
        except KeyboardInterrupt:
            self.recorder.fail("interrupted; resume with resume=True", self.metrics())
            raise
        except Exception as err:
            message = str(err) if isinstance(err, FinetuneError) else f"{type(err).__name__}: {err}"
            self.recorder.fail(message, self.metrics())
            raise


def start_run(
    store: GraphStore | None,
    fit: Fit,
    out: Path,
    source: ModelRecord,
    target: ImageDataset,
    *,
    target_id: str | None,
    source_dataset: ImageDataset | None,
    source_dataset_id: str | None,
    saved: dict[str, Any] | None,
    prints: dict[str, str],
    progress: Progress | None,
    extra: dict[str, Any],
) -> tuple[RunLog, str]:
    """The run's log, its state restored from ``saved`` when resuming, and its Activity in the graph as
    ``running`` (``resumed``) with what it uses; returns (log, the target's id in the graph).

    The target and source datasets are registered first, so that a new source model can link its
    pretraining data. ``extra`` adds to the Activity's ``extra``.
    """
    rt, s = fit.rt, fit.settings
    target_key = target_id or dataset_id(target.name)  # the id ``ensure_dataset`` registers it under
    source_data_id = None
    if store is not None:
        target_key = ensure_dataset(store, target, target_id)
        if source_dataset is not None:
            source_data_id = ensure_dataset(store, source_dataset, source_dataset_id)
        ensure_source_model(store, source)
    run_id = saved["run_id"] if saved else (new_run_id(source.id, target_key, store) if rt.is_main else "")
    run_id = broadcast(run_id, rt)
    started = saved["started"] if saved else now()
    run = RunLog(rt, fit, out, run_id, started, prints, RunRecorder(store, run_id), progress)
    if saved:
        run.history = [EpochReport.from_dict(e) for e in saved["metrics"]]
        run.timings = dict(saved["timings"])
        fit.model.load_state_dict(saved["model"])
        fit.micro_batch = int(saved["micro_batch"])
        run.recorder.extra = dict(saved["extra"])
        run.recorder.extra["resumes"] = int(run.recorder.extra.get("resumes", 0)) + 1
    run.recorder.extra.update(out_dir=str(out.resolve()), world_size=rt.world_size, notes=fit.notes, **extra)
    if rt.is_main:
        run.recorder.start(
            name=f"fine-tune {source.name} on {target.name} ({s.preset})",
            source_id=source.id,
            target_id=target_key,
            source_data_id=source_data_id,
            settings=s.to_dict(),
            device=rt.describe(),
            started=started,
            status="resumed" if saved else "running",
            metrics=run.metrics(),
        )
    log.info("fine-tuning %s on %s: run %s on %s", source.id, target.name, run_id, rt.describe())
    return run, target_key


__all__ = ["RunLog", "fingerprint", "open_run_folder", "start_run"]

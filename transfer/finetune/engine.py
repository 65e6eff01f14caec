"""The fine-tuning engine's public call: ``finetune(source, target, settings)``, read top to bottom.

1. Refuse what cannot run (settings against the model, sizes, splits, channels, the run folder) before
   any training or graph write.
2. Build the model with the target's head on the device, and the data on the source model's terms.
3. Start the run: its id, its Activity in the graph as ``running`` (rank 0), or its state from the
   checkpoint when resuming.
4. Train (``train.train``): every epoch checkpoints, records its metrics and reports progress.
5. Measure: test accuracy, forgetting of the source task, the from-scratch baseline (``measure.py``).
6. Save the fine-tuned model and record it, its lineage and the outcome; a failure is recorded as such.

Where things live: ``runtime.py`` the device, DDP process group, AMP precision and out-of-memory retry;
``model.py`` the model with its head and frozen prefix; ``train.py`` the loop; ``measure.py`` the
outcome; ``runlog.py`` the run's checkpoints and Activity; ``record.py`` the graph writes;
``torchrun.py`` the ``torchrun`` entry point, which goes through ``transfer.loop.plan`` / ``run``.

Under ``torchrun`` (``WORLD_SIZE`` > 1) the same code joins the process group (NCCL on CUDA, gloo on
CPU), wraps the model in DDP, shards batches with a ``DistributedSampler``, and only rank 0 writes
checkpoints and records the run.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from kg import GraphStore
from transfer.data import ImageDataset
from transfer.finetune.data import Size, TargetSplits, channel_adaptation, size_limits, target_splits
from transfer.finetune.measure import (
    baseline_settings,
    measure_forgetting,
    measure_outcome,
    train_baseline,
)
from transfer.finetune.model import FrozenPrefix, prepare_model, to_device, tuned_record
from transfer.finetune.record import Regime, model_id_for
from transfer.finetune.results import EpochReport, FinetuneResult, Progress
from transfer.finetune.runlog import RunLog, fingerprint, open_run_folder, start_run
from transfer.finetune.runtime import (
    Runtime,
    barrier,
    determinism,
    seed_everything,
    start_runtime,
    stop_runtime,
)
from transfer.finetune.schedule import L2SP, EpochPlan, plan_epochs, resolve_freeze_cut, training_sizes
from transfer.finetune.settings import FinetuneError, FinetuneSettings
from transfer.finetune.train import Diverged, Fit, evaluate, make_fit, train
from transfer.zoo import ModelRecord, save_checkpoint

MODEL_FILE = "model.safetensors"


def finetune(
    source: ModelRecord,
    target: ImageDataset,
    settings: FinetuneSettings,
    *,
    out_dir: str | Path,
    store: GraphStore | None = None,
    target_id: str | None = None,
    source_dataset: ImageDataset | None = None,
    source_dataset_id: str | None = None,
    resume: bool = False,
    progress: Progress | None = None,
    target_close_to_source: bool = False,
    measure_baseline: bool = False,
    max_epochs_this_call: int | None = None,
) -> FinetuneResult:
    """Fine-tune ``source`` on ``target`` with ``settings``; checkpoint every epoch in ``out_dir``; record the
    run in ``store`` when given.

    ``target_id`` names the target Dataset in the graph (registered when missing). ``source_dataset``
    (the source task's data, with a ``test`` split) turns on the forgetting measurement: source-task
    accuracy with the ORIGINAL head before and after. ``measure_baseline`` also trains the same
    architecture from random init with the same budget. ``target_close_to_source`` makes progressive
    resizing refuse sizes below the source's pretraining resolution. ``resume`` continues the run whose
    checkpoint is in ``out_dir`` (same settings, source and target, else ``FinetuneError``).
    ``max_epochs_this_call`` stops after that many epochs (resume later to go on). Under ``torchrun``
    every process calls this; only rank 0 may pass a ``store``.
    """
    clock = time.perf_counter()
    s, out = settings, Path(out_dir)
    # 1. Everything that can be refused is refused before any training or graph write.
    plans, splits, final_size, notes = check_inputs(
        source, target, s, source_dataset, target_close_to_source, max_epochs_this_call
    )
    rt = start_runtime(s.precision)
    try:
        prints = fingerprint(source, target)
        saved = open_run_folder(out, rt, store, resume, s, prints)
        with determinism(s.deterministic, rt.device):
            # 2. The model, the data on the device's terms, the loss.
            if saved is None:
                seed_everything(s.seed)
            model, original_head, head_kept, model_notes = prepare_model(source, target, s.seed)
            to_device(model, rt.device, s.channels_last)
            l2sp = L2SP(model, source.layer_groups, s.l2sp, s.l2sp_head) if s.l2sp > 0 else None
            fit = make_fit(model, source, target, s, rt, splits, final_size, l2sp, [*model_notes, *notes])

            # 3. The run: its id and Activity (or its state from the checkpoint).
            run, target_key = start_run(
                store, fit, out, source, target, target_id=target_id, source_dataset=source_dataset,
                source_dataset_id=source_dataset_id, saved=saved, prints=prints, progress=progress,
                extra={
                    "head_kept": head_kept,
                    "target_close_to_source": target_close_to_source,
                    "measure_baseline": measure_baseline,
                    "image_sizes": [list(size) for size in sorted({p.image_size for p in plans})],
                    "data_channels": target.channels,
                },
            )  # fmt: skip
            with run.failures_recorded():
                # 4. Train.
                _train(fit, plans, saved, run, max_epochs_this_call)
                if len(run.history) < len(plans):
                    last = {"accuracy": run.history[-1].eval_accuracy}
                    return _result(run, splits.eval_name, last, head_kept, finished=False)

                # 5. Measure: test accuracy at the final size, forgetting, the from-scratch baseline.
                baseline_plans = plans if measure_baseline else None
                outcome = measure_outcome(
                    fit, source, target, run.history, splits, original_head, source_dataset, baseline_plans,
                    run.timings,
                )  # fmt: skip
                run.timings["total_seconds"] = time.perf_counter() - clock

                # 6. The fine-tuned model: weights, record, lineage and outcome in the graph (rank 0).
                tuned = _save_and_record(run, source, target, target_key, outcome, len(splits.train.labels))
                return _result(run, splits.test_name, outcome, head_kept, finished=True, tuned=tuned)
    finally:
        stop_runtime(rt)


def check_inputs(
    source: ModelRecord,
    target: ImageDataset,
    s: FinetuneSettings,
    source_dataset: ImageDataset | None,
    target_close_to_source: bool,
    max_epochs_this_call: int | None = None,
) -> tuple[list[EpochPlan], TargetSplits, Size, list[str]]:
    """Refuse what cannot run (settings type, freeze cut, sizes, splits, channels, the forgetting data)
    before any training or graph write; returns the epoch plan, the target's splits, the final size and
    notes."""
    if not isinstance(s, FinetuneSettings):
        raise FinetuneError(f"settings must be FinetuneSettings, not {type(s).__name__}.")
    if max_epochs_this_call is not None and max_epochs_this_call < 1:
        raise FinetuneError(f"max_epochs_this_call must be at least 1, got {max_epochs_this_call}.")
    n_groups = len(source.layer_groups)
    resolve_freeze_cut(s.freeze_cut, n_groups)
    source_size: Size = (source.input_size[1], source.input_size[2])
    final_size: Size = (s.image_size, s.image_size) if s.image_size else source_size
    sizes, size_notes = training_sizes(
        s, final_size, source_size, size_limits(source), source.id, target_close_to_source
    )
    plans = plan_epochs(s, n_groups, sizes)
    splits = target_splits(target)
    channel_adaptation(target.channels, source.in_channels)
    if source_dataset is not None:
        if source_dataset.num_classes != source.num_classes:
            raise FinetuneError(
                f"the source dataset {source_dataset.name} has {source_dataset.num_classes} classes but the "
                f"source model's head has {source.num_classes}; forgetting needs the source task's own data."
            )
        if "test" not in source_dataset.split_names:
            raise FinetuneError(
                f"the source dataset {source_dataset.name} needs a 'test' split to measure forgetting."
            )
    return plans, splits, final_size, size_notes


def _train(fit: Fit, plans: list[EpochPlan], saved: dict | None, run: RunLog, max_epochs: int | None) -> None:
    """``train`` with the run's per-epoch bookkeeping; a diverged loss says where the last good
    checkpoint is."""
    try:
        train(fit, plans, resume=saved, on_epoch=run.on_epoch, max_epochs=max_epochs)
    except Diverged as err:
        kept = (
            f"the last good checkpoint (epoch {run.history[-1].epoch}) is kept at {run.state_file}"
            if run.history
            else "no epoch finished, so there is no checkpoint"
        )
        raise FinetuneError(f"training diverged: {err}; {kept}. Lower base_lr or check the data.") from err


def _result(
    run: RunLog,
    test_split: str,
    outcome: dict[str, Any],
    head_kept: bool,
    *,
    finished: bool,
    tuned: tuple[ModelRecord | None, Path | None] = (None, None),
) -> FinetuneResult:
    """The call's result: the run's log, ``measure_outcome``'s outcome and the saved model (rank 0)."""
    return FinetuneResult(
        run_id=run.run_id,
        accuracy=outcome["accuracy"],
        test_split=test_split,
        epochs=run.history,
        model=run.fit.model.eval(),
        settings=run.fit.settings,
        state_file=run.state_file,
        device=run.rt.describe(),
        finished=finished,
        model_id=model_id_for(run.run_id) if finished else None,
        record=tuned[0],
        model_path=tuned[1],
        baseline_accuracy=outcome.get("baseline_accuracy"),
        gain=outcome.get("gain"),
        source_accuracy_before=outcome.get("source_accuracy_before"),
        source_accuracy_after=outcome.get("source_accuracy_after"),
        forgetting=outcome.get("forgetting"),
        timings=run.timings,
        notes=run.fit.notes,
        head_kept=head_kept,
    )


def _save_and_record(
    run: RunLog,
    source: ModelRecord,
    target: ImageDataset,
    target_key: str,
    outcome: dict[str, Any],
    train_size: int,
) -> tuple[ModelRecord | None, Path | None]:
    """Rank 0 saves the weights and records the finished run, its model and outcome; every rank waits.
    Returns the fine-tuned model's (record, weights file) on rank 0, (None, None) elsewhere."""
    record, model_path = None, None
    if run.rt.is_main:
        model, run_id = run.fit.model, run.run_id
        model_path = run.out / MODEL_FILE
        digest = save_checkpoint(model, model_path, metadata={"run": run_id, "source": source.id})
        record = tuned_record(
            source, target, target_key, model_id_for(run_id), run_id, model_path, digest,
            run.fit.final_size, outcome["accuracy"], model, run.fit.notes,
        )  # fmt: skip
        measured = {k: v for k, v in outcome.items() if k != "extra"}
        run.recorder.finish(
            tuned=record,
            source_id=source.id,
            target_id=target_key,
            metrics={**run.metrics(), **measured},
            outcome=outcome,
            regime=Regime.from_settings(run.fit.settings, train_size=train_size),
        )
    barrier(run.rt)
    return record, model_path


__all__ = [
    "MODEL_FILE",
    "EpochReport",
    "FinetuneResult",
    "FrozenPrefix",
    "Progress",
    "Runtime",
    "baseline_settings",
    "check_inputs",
    "evaluate",
    "finetune",
    "measure_forgetting",
    "prepare_model",
    "train_baseline",
    "tuned_record",
]

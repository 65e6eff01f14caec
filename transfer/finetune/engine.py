"""The fine-tuning engine: ``finetune(source, target, settings)``, the loop and what it measures.

The device, DDP process group, precision and out-of-memory retry are ``runtime.py``; the command-line
entry point (``python -m transfer.finetune.engine`` / ``torchrun``) is ``torchrun.py``; the graph writes
are ``record.py``.

The loop reads top to bottom (nanoGPT style, no callbacks): for each epoch of the plan, (re)build the
stage when it starts (freeze groups, discriminative rates, one-cycle), optionally compute the frozen
body's features once, train, evaluate, refuse a non-finite loss, checkpoint, record, report.

Stage 1 trains the head with the body frozen: its parameters have ``requires_grad=False`` and the frozen
prefix of the model (every module before the first trainable one) runs under ``torch.no_grad()`` and, with
``bn_mode="eval"``, in eval mode (batch-norm statistics and dropout frozen). With
``cache_frozen_features`` the head's inputs are computed once per image size and the head trains on them:
the same numbers as running the body every epoch, because the frozen body is a deterministic function of
the image (no augmentation, eval mode), at a fraction of the cost. Stage 2 unfreezes groups
``freeze_cut..`` with geometrically spread rates.

Speed: CUDA when available (AMP bf16 where supported, else fp16 with a GradScaler), channels-last,
pinned-memory loaders, optional ``torch.compile``. Under ``torchrun`` (``WORLD_SIZE`` > 1) the same code
joins the process group (NCCL on CUDA, gloo on CPU), wraps the model in DDP, shards batches with a
``DistributedSampler``, and only rank 0 writes checkpoints and records the run.
"""

from __future__ import annotations

import contextlib
import copy
import logging
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn

from kg import GraphStore
from transfer.data import ImageDataset, checksum
from transfer.finetune.checkpoint import (
    check_resumable,
    check_writable,
    checkpoint_file,
    load_state,
    rng_state,
    save_state,
    set_rng_state,
)
from transfer.finetune.data import (
    Preprocess,
    Size,
    TargetSplits,
    channel_adaptation,
    class_weights,
    eval_batches,
    size_limits,
    target_splits,
    train_loader,
)
from transfer.finetune.record import (
    Regime,
    RunRecorder,
    ensure_dataset,
    ensure_source_model,
    model_id_for,
    new_run_id,
)
from transfer.finetune.runtime import (
    Runtime,
    all_sum,
    autocast,
    barrier,
    broadcast,
    determinism,
    oom_retry,
    seed_everything,
    start_runtime,
)
from transfer.finetune.schedule import (
    L2SP,
    UNFROZEN,
    EpochPlan,
    make_optimizer,
    make_scheduler,
    peak_rates,
    plan_epochs,
    resolve_freeze_cut,
    stage_rates,
    training_sizes,
)
from transfer.finetune.settings import FinetuneError, FinetuneSettings, with_changes
from transfer.register import now, slug
from transfer.zoo import (
    ModelRecord,
    ZooError,
    build_for_record,
    check_layer_groups,
    chop_head,
    freeze_groups,
    load_model,
    param_count,
    save_checkpoint,
)

log = logging.getLogger(__name__)
T = TypeVar("T")
NAN_CHECK_EVERY = 50  # steps between loss checks (each one syncs with the device)
MODEL_FILE = "model.safetensors"


# ---------------------------------------------------------------- reports


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


# ---------------------------------------------------------------- devices and processes


# ---------------------------------------------------------------- the model


def prepare_model(
    source: ModelRecord, target: ImageDataset, seed: int
) -> tuple[nn.Module, nn.Module, bool, list[str]]:
    """The source model with a head for the target's classes: (model, original head, head kept?, notes).

    The head stays when the label spaces match (same number and names of classes); otherwise ``chop_head``
    gives a fresh one, seeded. The original head is kept aside to measure forgetting on the source task.
    """
    try:
        model = load_model(source)
        check_layer_groups(model, source.layer_groups)
    except ZooError as err:
        raise FinetuneError(f"cannot load the source model: {err}") from err
    head = model.get_submodule(source.head)
    original_head = copy.deepcopy(head)
    chop_head(model, source, target.num_classes, target.class_names, seed=seed)
    kept = model.get_submodule(source.head) is head  # chop_head keeps the module for the same classes
    notes = []
    if kept:
        notes.append("kept the source head: the target has the same classes")
    adaptation = channel_adaptation(target.channels, source.in_channels)
    if adaptation:
        log.info("channel adaptation for %s: %s", target.name, adaptation)
        notes.append(f"channel adaptation: {adaptation}")
    return model, original_head, kept, notes


class FrozenPrefix:
    """The frozen front of a model: modules before the first one with a trainable parameter.

    Those modules run under ``torch.no_grad()`` (a forward pre-hook switches gradients off, a forward hook
    switches them back), so no autograd graph is built for the part that does not learn. The hook stands
    aside when a module's input already requires grad, which keeps gradients flowing should a frozen
    module sit behind a trainable one. With ``bn_mode="eval"`` the prefix, and every frozen parameterised
    leaf elsewhere, is put in eval mode after each ``model.train()``: batch-norm keeps its pretrained
    statistics and dropout in front of the head is off.
    """

    def __init__(self, model: nn.Module, bn_mode: str) -> None:
        modules = list(model.named_modules())
        first = next(
            (
                i
                for i, (_, m) in enumerate(modules)
                if any(p.requires_grad for p in m.parameters(recurse=False))
            ),
            len(modules),
        )
        prefix = {name for name, m in modules[:first] if not any(p.requires_grad for p in m.parameters())}
        self.top = [m for name, m in modules if name in prefix and name.rpartition(".")[0] not in prefix]
        frozen_leaves = [
            m
            for _, m in modules[first:]
            if not list(m.children())
            and list(m.parameters())
            and not any(p.requires_grad for p in m.parameters())
        ]
        self.eval_modules = [*self.top, *frozen_leaves] if bn_mode == "eval" else []
        self._grad_was: list[bool] = []
        self._handles = []
        for module in self.top:
            self._handles.append(module.register_forward_pre_hook(self._enter))
            self._handles.append(module.register_forward_hook(self._exit, always_call=True))

    def _enter(self, module: nn.Module, args: tuple[Any, ...]) -> None:
        needs_grad = any(isinstance(a, torch.Tensor) and a.requires_grad for a in args)
        self._grad_was.append(torch.is_grad_enabled())
        if not needs_grad:
            torch.set_grad_enabled(False)

    def _exit(self, module: nn.Module, args: tuple[Any, ...], output: Any) -> None:
        torch.set_grad_enabled(self._grad_was.pop())

    def set_modes(self) -> None:
        """Eval mode for the frozen parts (call after ``model.train()``)."""
        for module in self.eval_modules:
            module.eval()

    def remove(self) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles = []


def head_group_module(model: nn.Module, groups: Sequence[Sequence[str]]) -> nn.Module | None:
    """The last layer group's module when that group is one module (what cached features feed), else None."""
    if len(groups[-1]) != 1:
        return None
    try:
        return model.get_submodule(groups[-1][0])
    except AttributeError:
        return None


# ---------------------------------------------------------------- steps


@dataclass
class _Stage:
    """Everything that lives for one stage of one run."""

    plan: EpochPlan
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler
    prefix: FrozenPrefix
    train_module: nn.Module  # what the step calls: the model or (cached) the head, maybe DDP/compiled
    cached: bool
    features: dict[Size, torch.Tensor] = field(default_factory=dict)


@dataclass
class _Fit:
    """One training run's fixed parts (the main run and the from-scratch baseline both use ``_fit``)."""

    model: nn.Module
    groups: list[list[str]]
    settings: FinetuneSettings
    rt: Runtime
    prep: Preprocess
    train_images: torch.Tensor
    train_labels: torch.Tensor
    eval_images: torch.Tensor
    eval_labels: torch.Tensor
    final_size: Size
    weights: torch.Tensor | None
    l2sp: L2SP | None
    micro_batch: int
    eval_split: str = "test"
    notes: list[str] = field(default_factory=list)


def _train_step(
    fit: _Fit, stage: _Stage, scaler: torch.amp.GradScaler, inputs: torch.Tensor, y: torch.Tensor, micro: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """One optimiser step over a loader batch, in micro-batches of ``micro``; returns (loss sum, correct).

    ``inputs`` are uint8 images (or, with cached features, the head's inputs). The loss is the batch mean
    (weighted mean with class weights), so splitting into micro-batches gives the same gradient.
    """
    rt = fit.rt
    stage.optimizer.zero_grad(set_to_none=True)
    weights = fit.weights
    denom = weights[y].sum() if weights is not None else torch.tensor(float(len(y)), device=y.device)
    loss_sum = torch.zeros((), device=rt.device)
    correct = torch.zeros((), device=rt.device, dtype=torch.int64)
    starts = range(0, len(y), micro)
    for k, start in enumerate(starts):
        part = slice(start, start + micro)
        last = k == len(starts) - 1
        sync = contextlib.nullcontext() if last or not rt.distributed else stage.train_module.no_sync()
        with sync:
            with autocast(rt):
                x = inputs[part] if stage.cached else fit.prep(inputs[part], stage.plan.image_size)
                logits = stage.train_module(x)
            ce = F.cross_entropy(logits.float(), y[part], weight=weights, reduction="sum") / denom
            loss = ce + fit.l2sp.penalty() if (fit.l2sp is not None and last) else ce
            scaler.scale(loss).backward()
        loss_sum += ce.detach() * len(y)  # the micro-batches' ce add up to the batch mean
        correct += (logits.detach().argmax(1) == y[part]).sum()
    scaler.step(stage.optimizer)
    scaler.update()
    stage.scheduler.step()
    return loss_sum, correct


@torch.no_grad()
def evaluate(
    model: nn.Module,
    prep: Preprocess,
    images: torch.Tensor,
    labels: torch.Tensor,
    size: Size,
    rt: Runtime,
    batch_size: int,
) -> float:
    """Top-1 accuracy of ``model`` on uint8 ``images`` preprocessed at ``size`` (sharded over DDP ranks)."""
    model.eval()
    correct = count = 0
    for part in eval_batches(len(labels), batch_size, rt.rank, rt.world_size):
        x = images[part].to(rt.device, non_blocking=True)
        with autocast(rt):
            logits = model(prep(x, size))
        correct += int((logits.argmax(1).cpu() == labels[part]).sum())
        count += part.stop - part.start
    correct, count = all_sum([correct, count], rt)
    return correct / max(count, 1)


@torch.no_grad()
def frozen_features(fit: _Fit, head: nn.Module, size: Size, batch_size: int) -> torch.Tensor | None:
    """The head's inputs for every train image at ``size``, in dataset order (N, ...) on the device.

    Runs the model as stage 1 does (frozen prefix in eval, under the same autocast) and captures what
    enters the head; None when the model's output is not the head's output (nothing safe to cache).
    """
    model, rt = fit.model, fit.rt
    captured: dict[str, Any] = {}
    handles = [
        head.register_forward_pre_hook(lambda m, args: captured.__setitem__("x", args[0])),
        head.register_forward_hook(lambda m, args, out: captured.__setitem__("y", out)),
    ]
    chunks = []
    try:
        for start in range(0, len(fit.train_labels), batch_size):
            x = fit.train_images[start : start + batch_size].to(rt.device, non_blocking=True)
            with autocast(rt):
                out = model(fit.prep(x, size))
            if out is not captured.get("y"):
                return None
            chunks.append(captured["x"])
    finally:
        for h in handles:
            h.remove()
    return torch.cat(chunks)


def _wrap(module: nn.Module, fit: _Fit) -> nn.Module:
    """DDP (when distributed) and ``torch.compile`` (when asked) around the module that trains."""
    if fit.rt.distributed:
        ids = [fit.rt.device.index] if fit.rt.device.type == "cuda" else None
        module = nn.parallel.DistributedDataParallel(module, device_ids=ids)
    if fit.settings.compile:
        module = torch.compile(module)
    return module


def _start_stage(fit: _Fit, plan: EpochPlan, steps_per_epoch: int, saved: dict[str, Any] | None) -> _Stage:
    """Freeze to ``plan.trainable_from``, build the optimiser (per-group rates) and the schedule."""
    s, n_groups = fit.settings, len(fit.groups)
    freeze_groups(fit.model, fit.groups, plan.trainable_from)
    prefix = FrozenPrefix(fit.model, s.bn_mode)
    rates = stage_rates(s, plan, n_groups)
    weight_decay = 0.0 if fit.l2sp is not None else s.weight_decay
    optimizer = make_optimizer(fit.model, fit.groups, plan.trainable_from, rates, weight_decay)
    scheduler = make_scheduler(optimizer, s, plan.stage, plan.stage_epochs * steps_per_epoch)
    if saved is not None:
        optimizer.load_state_dict(saved["optimizer"])
        scheduler.load_state_dict(saved["scheduler"])
    head = head_group_module(fit.model, fit.groups)
    cached = False
    if s.cache_frozen_features and plan.trainable_from == n_groups - 1:
        reasons = []
        if s.bn_mode != "eval":
            reasons.append("bn_mode 'train' makes the frozen body's output depend on the batch")
        if head is None:
            reasons.append("the head's layer group is not a single module")
        if reasons:
            fit.notes.append("frozen features not cached: " + "; ".join(reasons))
        cached = not reasons
    train_module = _wrap(head if cached else fit.model, fit)
    return _Stage(plan, optimizer, scheduler, prefix, train_module, cached)


def _fit(
    fit: _Fit,
    plans: list[EpochPlan],
    *,
    resume: dict[str, Any] | None = None,
    on_epoch: Callable[[EpochReport, _Stage, torch.amp.GradScaler], None] | None = None,
    max_epochs: int | None = None,
) -> list[EpochReport]:
    """Train ``fit.model`` through ``plans`` (from the epoch after ``resume``'s); returns this call's reports.

    ``on_epoch`` runs after each epoch's evaluation (the main run checkpoints, records and reports there).
    """
    s, rt, model = fit.settings, fit.rt, fit.model
    reports: list[EpochReport] = []
    start = resume["epochs_done"] if resume else 0
    tensors = (fit.train_images, fit.train_labels)
    indices = (torch.arange(len(fit.train_labels)), fit.train_labels)
    pin = rt.device.type == "cuda"
    images_loader, sampler = train_loader(
        tensors,
        s.batch_size,
        s.seed,
        rank=rt.rank,
        world_size=rt.world_size,
        num_workers=s.num_workers,
        pin_memory=pin,
    )
    index_loader, index_sampler = train_loader(
        indices, s.batch_size, s.seed, rank=rt.rank, world_size=rt.world_size
    )
    steps_per_epoch = len(images_loader)
    scaler = torch.amp.GradScaler(rt.device.type, enabled=rt.amp_dtype == torch.float16)
    if resume is not None and resume.get("scaler"):
        scaler.load_state_dict(resume["scaler"])
    stage: _Stage | None = None
    done_now = 0
    try:
        for plan in plans[start:]:
            if max_epochs is not None and done_now >= max_epochs:
                break
            if stage is None or stage.plan.stage != plan.stage:
                if stage is not None:
                    stage.prefix.remove()
                same_stage = resume is not None and plan.epoch == start and resume.get("stage") == plan.stage
                stage = _start_stage(fit, plan, steps_per_epoch, resume if same_stage else None)
            stage.plan = plan
            if plan.epoch == start and resume is not None:
                set_rng_state(resume["rng"])  # after all set-up, right where the killed run stopped
            clock = time.perf_counter()

            # The frozen body's features, once per image size (stage 1 with caching).
            if stage.cached and plan.image_size not in stage.features:
                model.train()
                stage.prefix.set_modes()
                head = head_group_module(model, fit.groups)
                feats = frozen_features(fit, head, plan.image_size, s.batch_size)
                if feats is None:
                    fit.notes.append(
                        "frozen features not cached: the model's output is not its head's output"
                    )
                    stage.cached = False
                    stage.train_module = _wrap(model, fit)
                else:
                    stage.features[plan.image_size] = feats

            # Train one epoch.
            model.train()
            stage.prefix.set_modes()
            loader, active_sampler = (
                (index_loader, index_sampler) if stage.cached else (images_loader, sampler)
            )
            active_sampler.set_epoch(plan.epoch)
            loss_sum = torch.zeros((), device=rt.device)
            correct = torch.zeros((), device=rt.device, dtype=torch.int64)
            seen = 0
            for step, (batch, y) in enumerate(loader):
                y = y.to(rt.device, non_blocking=True)
                if stage.cached:
                    inputs = stage.features[plan.image_size][batch.to(stage.features[plan.image_size].device)]
                else:
                    inputs = batch.to(rt.device, non_blocking=True)
                micro = min(fit.micro_batch, len(y))
                (batch_loss, batch_correct), fitted = oom_retry(
                    lambda m, inputs=inputs, y=y, stage=stage: _train_step(fit, stage, scaler, inputs, y, m),
                    micro,
                    s.allow_oom_retry and not rt.distributed,  # ranks cannot retry alone under DDP
                )
                if fitted < micro:
                    fit.micro_batch = fitted
                loss_sum += batch_loss
                correct += batch_correct
                seen += len(y)
                if (step + 1) % NAN_CHECK_EVERY == 0:
                    _check_finite(loss_sum, plan, step)
            _check_finite(loss_sum, plan, steps_per_epoch - 1)
            loss_total, correct_total, seen_total = all_sum([float(loss_sum), float(correct), seen], rt)
            train_seconds = time.perf_counter() - clock

            accuracy = evaluate(
                model, fit.prep, fit.eval_images, fit.eval_labels, fit.final_size, rt, 2 * s.batch_size
            )
            report = EpochReport(
                epoch=plan.epoch + 1,
                epochs=len(plans),
                stage=plan.stage,
                image_size=plan.image_size,
                trainable_groups=list(range(plan.trainable_from, len(fit.groups))),
                lrs=peak_rates(stage.optimizer),
                train_loss=loss_total / max(seen_total, 1),
                train_accuracy=correct_total / max(seen_total, 1),
                eval_accuracy=accuracy,
                eval_split=fit.eval_split,
                seconds=time.perf_counter() - clock,
                images_per_second=seen_total / max(train_seconds, 1e-9),
                cached_features=stage.cached,
                micro_batch=fit.micro_batch,
            )
            reports.append(report)
            done_now += 1
            if on_epoch is not None:
                on_epoch(report, stage, scaler)
    finally:
        if stage is not None:
            stage.prefix.remove()
    model.eval()
    return reports


def _check_finite(loss_sum: torch.Tensor, plan: EpochPlan, step: int) -> None:
    if not torch.isfinite(loss_sum):
        raise _Diverged(f"the loss became {float(loss_sum)} in epoch {plan.epoch + 1} (by step {step + 1})")


class _Diverged(FinetuneError):
    """A non-finite loss; ``finetune`` adds where the last good checkpoint is."""


# ---------------------------------------------------------------- the public entry


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
    s = settings
    if not isinstance(s, FinetuneSettings):
        raise FinetuneError(f"settings must be FinetuneSettings, not {type(s).__name__}.")
    if max_epochs_this_call is not None and max_epochs_this_call < 1:
        raise FinetuneError(f"max_epochs_this_call must be at least 1, got {max_epochs_this_call}.")

    # 1. Everything that can be refused is refused before any training or graph write.
    plans, splits, final_size, size_notes = _check_inputs(
        source, target, s, source_dataset, target_close_to_source
    )
    out = Path(out_dir)
    state_file = checkpoint_file(out)
    rt = start_runtime(s.precision)
    try:
        if store is not None and not rt.is_main:
            raise FinetuneError("only rank 0 may record the run; pass store=None on the other ranks.")
        if rt.is_main:
            check_writable(out)
        fingerprint = {"source model": f"{source.id}:{source.checksum}", "target data": checksum(target)}
        saved = load_state(state_file) if resume else None
        if saved is not None:
            check_resumable(saved, s, fingerprint)
        elif rt.is_main and state_file.exists():
            raise FinetuneError(
                f"{out} already holds the checkpoint of another run; pass resume=True to continue it or "
                "choose another out_dir."
            )
        barrier(rt)
        with determinism(s.deterministic, rt.device):
            # 2. The model, the data on the device's terms, the loss.
            if saved is None:
                seed_everything(s.seed)
            model, original_head, head_kept, notes = prepare_model(source, target, s.seed)
            model.to(rt.device)
            if s.channels_last:
                model.to(memory_format=torch.channels_last)
            l2sp = L2SP(model, source.layer_groups, s.l2sp, s.l2sp_head) if s.l2sp > 0 else None
            fit = _make_fit(model, source, target, s, rt, splits, final_size, l2sp, [*notes, *size_notes])

            # 3. The graph: the source model and target dataset nodes, the Activity as running.
            target_key = target_id or slug(target.name)
            source_data_id = None
            if store is not None:  # datasets first, so a new source model can link its pretraining data
                target_key = ensure_dataset(store, target, target_id)
                if source_dataset is not None:
                    source_data_id = ensure_dataset(store, source_dataset, source_dataset_id)
                ensure_source_model(store, source)
            run_id = (
                saved["run_id"] if saved else (new_run_id(source.id, target_key, store) if rt.is_main else "")
            )
            run_id = broadcast(run_id, rt)
            recorder = RunRecorder(store, run_id)
            history = [EpochReport.from_dict(e) for e in saved["metrics"]] if saved else []
            timings: dict[str, float] = dict(saved["timings"]) if saved else {}
            started = saved["started"] if saved else now()
            if saved:
                model.load_state_dict(saved["model"])
                fit.micro_batch = int(saved["micro_batch"])
                recorder.extra = dict(saved["extra"])
                recorder.extra["resumes"] = int(recorder.extra.get("resumes", 0)) + 1
            recorder.extra.update(
                out_dir=str(out.resolve()),
                world_size=rt.world_size,
                notes=fit.notes,
                head_kept=head_kept,
                target_close_to_source=target_close_to_source,
                measure_baseline=measure_baseline,
                image_sizes=[list(size) for size in sorted({p.image_size for p in plans})],
                data_channels=target.channels,
            )
            if rt.is_main:
                recorder.start(
                    name=f"fine-tune {source.name} on {target.name} ({s.preset})",
                    source_id=source.id,
                    target_id=target_key,
                    source_data_id=source_data_id,
                    settings=s.to_dict(),
                    device=rt.describe(),
                    started=started,
                    status="resumed" if saved else "running",
                    metrics=_metrics(history, timings),
                )
            log.info("fine-tuning %s on %s: run %s on %s", source.id, target.name, run_id, rt.describe())

            on_epoch = _epoch_checkpointer(
                rt,
                state_file,
                run_id,
                started,
                s,
                fingerprint,
                model,
                fit,
                recorder,
                history,
                timings,
                progress,
            )

            try:
                # 4. Train.
                try:
                    _fit(fit, plans, resume=saved, on_epoch=on_epoch, max_epochs=max_epochs_this_call)
                except _Diverged as err:
                    kept = (
                        f"the last good checkpoint (epoch {history[-1].epoch}) is kept at {state_file}"
                        if history
                        else "no epoch finished, so there is no checkpoint"
                    )
                    raise FinetuneError(
                        f"training diverged: {err}; {kept}. Lower base_lr or check the data."
                    ) from err
                if len(history) < len(plans):
                    return FinetuneResult(
                        run_id=run_id,
                        accuracy=history[-1].eval_accuracy,
                        test_split=splits.eval_name,
                        epochs=history,
                        model=model.eval(),
                        settings=s,
                        state_file=state_file,
                        device=rt.describe(),
                        finished=False,
                        timings=timings,
                        notes=fit.notes,
                        head_kept=head_kept,
                    )

                # 5. Measure: test accuracy at the final size, forgetting, the from-scratch baseline.
                accuracy, outcome = _measure_outcome(
                    fit, source, target, history, splits, final_size, rt, s, original_head,
                    source_dataset, plans if measure_baseline else None, timings,
                )  # fmt: skip
                timings["total_seconds"] = time.perf_counter() - clock

                # 6. The fine-tuned model: weights, record, lineage and outcome in the graph.
                model_id, record, model_path = model_id_for(run_id), None, None
                if rt.is_main:
                    model_path = out / MODEL_FILE
                    digest = save_checkpoint(model, model_path, metadata={"run": run_id, "source": source.id})
                    record = tuned_record(
                        source,
                        target,
                        target_key,
                        model_id,
                        run_id,
                        model_path,
                        digest,
                        final_size,
                        accuracy,
                        model,
                        fit.notes,
                    )
                    measured = {k: v for k, v in outcome.items() if k != "extra"}
                    recorder.finish(
                        tuned=record,
                        source_id=source.id,
                        target_id=target_key,
                        metrics={**_metrics(history, timings), **measured},
                        outcome=outcome,
                        regime=Regime.from_settings(s, train_size=len(splits.train.labels)),
                    )
                barrier(rt)
                return FinetuneResult(
                    run_id=run_id,
                    accuracy=accuracy,
                    test_split=splits.test_name,
                    epochs=history,
                    model=model.eval(),
                    settings=s,
                    state_file=state_file,
                    device=rt.describe(),
                    model_id=model_id,
                    record=record,
                    model_path=model_path,
                    baseline_accuracy=outcome.get("baseline_accuracy"),
                    gain=outcome.get("gain"),
                    source_accuracy_before=outcome.get("source_accuracy_before"),
                    source_accuracy_after=outcome.get("source_accuracy_after"),
                    forgetting=outcome.get("forgetting"),
                    timings=timings,
                    notes=fit.notes,
                    head_kept=head_kept,
                )
            except KeyboardInterrupt:
                recorder.fail("interrupted; resume with resume=True", _metrics(history, timings))
                raise
            except Exception as err:
                message = str(err) if isinstance(err, FinetuneError) else f"{type(err).__name__}: {err}"
                recorder.fail(message, _metrics(history, timings))
                raise
    finally:
        if rt.owns_process_group and dist.is_initialized():
            dist.destroy_process_group()


def _check_inputs(
    source: ModelRecord,
    target: ImageDataset,
    s: FinetuneSettings,
    source_dataset: ImageDataset | None,
    target_close_to_source: bool,
) -> tuple[list[EpochPlan], TargetSplits, Size, list[str]]:
    """Refuse what cannot run (freeze cut, sizes, splits, channels, the forgetting data) before any
    training or graph write; returns the epoch plan, the target's splits, the final size and notes."""
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


def _epoch_checkpointer(
    rt: Runtime,
    state_file: Path,
    run_id: str,
    started: str,
    s: FinetuneSettings,
    fingerprint: dict[str, str],
    model: nn.Module,
    fit: _Fit,
    recorder: RunRecorder,
    history: list[EpochReport],
    timings: dict[str, float],
    progress: Progress | None,
) -> Callable[[EpochReport, _Stage, torch.amp.GradScaler], None]:
    """The callback ``_fit`` runs after each epoch: keep the report, checkpoint (atomically, rank 0),
    record the metrics, report progress."""

    def on_epoch(report: EpochReport, stage: _Stage, scaler: torch.amp.GradScaler) -> None:
        history.append(report)
        timings["epoch_seconds"] = timings.get("epoch_seconds", 0.0) + report.seconds
        if rt.is_main:
            save_state(
                state_file,
                {
                    "run_id": run_id,
                    "started": started,
                    "settings": s.to_dict(),
                    "fingerprint": fingerprint,
                    "epochs_done": report.epoch,
                    "stage": stage.plan.stage,
                    "model": {k: v.detach().cpu() for k, v in model.state_dict().items()},
                    "optimizer": stage.optimizer.state_dict(),
                    "scheduler": stage.scheduler.state_dict(),
                    "scaler": scaler.state_dict() if scaler.is_enabled() else None,
                    "rng": rng_state(),
                    "metrics": [e.to_dict() for e in history],
                    "timings": timings,
                    "micro_batch": fit.micro_batch,
                    "extra": recorder.extra,
                },
            )
            recorder.epoch(_metrics(history, timings))
            if progress is not None:
                progress(report)
        barrier(rt)

    return on_epoch


def _measure_outcome(
    fit: _Fit,
    source: ModelRecord,
    target: ImageDataset,
    history: list[EpochReport],
    splits: TargetSplits,
    final_size: Size,
    rt: Runtime,
    s: FinetuneSettings,
    original_head: nn.Module,
    source_dataset: ImageDataset | None,
    baseline_plans: list[EpochPlan] | None,
    timings: dict[str, float],
) -> tuple[float, dict[str, Any]]:
    """Test accuracy at the final size, forgetting of the source task (with ``source_dataset``) and
    the from-scratch baseline (with ``baseline_plans``); adds their timings."""
    tick = time.perf_counter()
    accuracy = (
        history[-1].eval_accuracy
        if splits.test_name == splits.eval_name
        else evaluate(
            fit.model,
            fit.prep,
            splits.test.images,
            splits.test.labels,
            final_size,
            rt,
            2 * s.batch_size,
        )
    )
    timings["test_seconds"] = time.perf_counter() - tick
    outcome: dict[str, Any] = {"accuracy": accuracy, "extra": {"test_split": splits.test_name}}
    if source_dataset is not None:
        tick = time.perf_counter()
        before, after = measure_forgetting(source, fit.model, original_head, source_dataset, rt, s.batch_size)
        outcome.update(source_accuracy_before=before, source_accuracy_after=after, forgetting=before - after)
        timings["forgetting_seconds"] = time.perf_counter() - tick
    if baseline_plans is not None:
        tick = time.perf_counter()
        baseline = train_baseline(source, target, s, rt, baseline_plans, splits, final_size)
        outcome.update(baseline_accuracy=baseline, gain=accuracy - baseline)
        outcome["extra"]["baseline"] = "same architecture from random init, same epochs, sizes, batch"
        timings["baseline_seconds"] = time.perf_counter() - tick
    return accuracy, outcome


def _make_fit(
    model: nn.Module,
    source: ModelRecord,
    target: ImageDataset,
    s: FinetuneSettings,
    rt: Runtime,
    splits: Any,
    final_size: Size,
    l2sp: L2SP | None,
    notes: list[str],
) -> _Fit:
    """The fixed parts of a run over ``target``'s splits, preprocessed on the source model's terms."""
    weights = None
    if s.class_balanced:
        weights = class_weights(splits.train.labels, target.num_classes, s.class_balance_beta).to(rt.device)
    return _Fit(
        model=model,
        groups=source.layer_groups,
        settings=s,
        rt=rt,
        prep=Preprocess(source, target.channels, s.channels_last).to(rt.device),
        train_images=splits.train.images,
        train_labels=splits.train.labels,
        eval_images=splits.eval.images,
        eval_labels=splits.eval.labels,
        final_size=final_size,
        weights=weights,
        l2sp=l2sp,
        micro_batch=s.batch_size,
        eval_split=splits.eval_name,
        notes=notes,
    )


def _metrics(history: Sequence[EpochReport], timings: dict[str, float]) -> dict[str, Any]:
    """The Activity's metrics: every epoch's report, the last accuracy, timings."""
    out: dict[str, Any] = {"epochs": [e.to_dict() for e in history], **timings}
    if history:
        out["eval_accuracy"] = history[-1].eval_accuracy
        seconds = sum(e.seconds for e in history)
        out["images_per_second"] = sum(e.images_per_second * e.seconds for e in history) / max(seconds, 1e-9)
    return out


def tuned_record(
    source: ModelRecord,
    target: ImageDataset,
    target_id: str,
    model_id: str,
    run_id: str,
    path: Path,
    digest: str,
    final_size: Size,
    accuracy: float,
    model: nn.Module,
    notes: list[str],
) -> ModelRecord:
    """The fine-tuned model's record: the source's architecture, groups and normalisation, the target's
    classes, its own checkpoint and checksum."""
    return ModelRecord(
        id=model_id,
        name=f"{source.name} fine-tuned on {target.name}",
        architecture=source.architecture,
        num_classes=target.num_classes,
        input_size=(source.in_channels, *final_size),
        mean=source.mean,
        std=source.std,
        head=source.head,
        layer_groups=source.layer_groups,
        interpolation=source.interpolation,
        checkpoint=str(path.resolve()),
        checksum=digest,
        license=source.license,
        source="kgraft-finetune",
        pretrained_on=target_id,
        num_params=param_count(model),
        metrics={"test_accuracy": accuracy},
        class_names=target.class_names,
        arch_kwargs=dict(source.arch_kwargs),
        kind=source.kind,
        description=f"{source.name} fine-tuned on {target.name} by kgraft run {run_id}.",
        created=now(),
        extra={
            "finetuned_from": source.id,
            "activity": run_id,
            "data_channels": target.channels,
            "notes": list(notes),
        },
    )


def measure_forgetting(
    source: ModelRecord,
    tuned: nn.Module,
    original_head: nn.Module,
    source_data: ImageDataset,
    rt: Runtime,
    batch_size: int,
) -> tuple[float, float]:
    """Source-task test accuracy with the ORIGINAL head: pretrained model, then fine-tuned body."""
    test = source_data.split("test")
    size = (source.input_size[1], source.input_size[2])
    prep = Preprocess(source, source_data.channels).to(rt.device)
    before_model = load_model(source).to(rt.device)
    before = evaluate(before_model, prep, test.images, test.labels, size, rt, 2 * batch_size)
    after_model = copy.deepcopy(tuned)
    after_model.set_submodule(source.head, copy.deepcopy(original_head))
    after_model.to(rt.device)
    after = evaluate(after_model, prep, test.images, test.labels, size, rt, 2 * batch_size)
    return before, after


def baseline_settings(settings: FinetuneSettings) -> FinetuneSettings:
    """The from-scratch baseline's settings: every group trainable from epoch 1 at one rate, no L2-SP."""
    return with_changes(
        settings,
        preset="full",
        frozen_epochs=0,
        freeze_cut=0,
        lr_mult=1.0,
        l2sp=0.0,
        cache_frozen_features=False,
    )


def train_baseline(
    source: ModelRecord,
    target: ImageDataset,
    settings: FinetuneSettings,
    rt: Runtime,
    plans: list[EpochPlan],
    splits: Any,
    final_size: Size,
) -> float:
    """Test accuracy of ``source``'s architecture trained from random init with the same budget (epochs,
    image sizes, batch, schedule kind, base rate)."""
    s = baseline_settings(settings)
    seed_everything(s.seed)
    model = build_for_record(source)
    chop_head(model, source, target.num_classes, seed=s.seed)
    model.to(rt.device)
    if s.channels_last:
        model.to(memory_format=torch.channels_last)
    fit = _make_fit(model, source, target, s, rt, splits, final_size, None, [])
    # The baseline is judged on the test split, epoch by epoch.
    fit.eval_images, fit.eval_labels, fit.eval_split = (
        splits.test.images,
        splits.test.labels,
        splits.test_name,
    )
    baseline_plans = [EpochPlan(p.epoch, UNFROZEN, 0, p.image_size, p.epoch, len(plans)) for p in plans]
    reports = _fit(fit, baseline_plans)
    return reports[-1].eval_accuracy


# ---------------------------------------------------------------- torchrun entry point


from transfer.finetune.torchrun import main  # noqa: E402  (the entry point, kept importable here)

if __name__ == "__main__":
    sys.exit(main())

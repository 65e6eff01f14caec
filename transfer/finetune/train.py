"""The training loop: epochs of the plan, stages, steps, evaluation. Read ``train`` top to bottom.

For each epoch of the plan: (re)build the stage when it starts (freeze groups, discriminative rates,
one-cycle), optionally compute the frozen body's features once, train one epoch, evaluate, report. What
happens after an epoch (checkpoint, graph record, progress) is the caller's ``on_epoch``.

With ``cache_frozen_features`` the head's inputs are computed once per image size and stage 1 trains the
head on them: the same numbers as running the body every epoch, because the frozen body is a
deterministic function of the image (no augmentation, eval mode), at a fraction of the cost.

Speed: AMP autocast (bf16, or fp16 with a GradScaler), pinned-memory loaders on CUDA, optional
``torch.compile``; under DDP the module that trains is wrapped in ``DistributedDataParallel`` and
gradients sync only on a batch's last micro-batch. A step that runs out of device memory is retried with
half the micro-batch (``runtime.oom_retry``), keeping one optimiser step per loader batch.
"""

from __future__ import annotations

import contextlib
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, DistributedSampler

from transfer.data import ImageDataset
from transfer.finetune.checkpoint import set_rng_state
from transfer.finetune.data import Preprocess, Size, TargetSplits, class_weights, eval_batches, train_loader
from transfer.finetune.model import FrozenPrefix, head_group_module
from transfer.finetune.results import EpochReport
from transfer.finetune.runtime import Runtime, all_sum, autocast, oom_retry
from transfer.finetune.schedule import (
    L2SP,
    EpochPlan,
    make_optimizer,
    make_scheduler,
    peak_rates,
    stage_rates,
)
from transfer.finetune.settings import FinetuneError, FinetuneSettings
from transfer.zoo import ModelRecord, freeze_groups

NAN_CHECK_EVERY = 50  # steps between loss checks (each one syncs with the device)


@dataclass
class Fit:
    """One training run's fixed parts (the main run and the from-scratch baseline both ``train`` one)."""

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


def make_fit(
    model: nn.Module,
    source: ModelRecord,
    target: ImageDataset,
    s: FinetuneSettings,
    rt: Runtime,
    splits: TargetSplits,
    final_size: Size,
    l2sp: L2SP | None,
    notes: list[str],
) -> Fit:
    """The fixed parts of a run over ``target``'s splits, preprocessed on the source model's terms."""
    weights = None
    if s.class_balanced:
        weights = class_weights(splits.train.labels, target.num_classes, s.class_balance_beta).to(rt.device)
    return Fit(
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


@dataclass
class Stage:
    """Everything that lives for one stage of one run."""

    plan: EpochPlan
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler
    prefix: FrozenPrefix
    train_module: nn.Module  # what the step calls: the model or (cached) the head, maybe DDP/compiled
    cached: bool
    features: dict[Size, torch.Tensor] = field(default_factory=dict)


OnEpoch = Callable[[EpochReport, Stage, torch.amp.GradScaler], None]


@dataclass
class Loaders:
    """The epoch's batches: images, or (with cached features) indices into the features; both follow
    the same (seed, epoch) order."""

    images: DataLoader
    images_sampler: DistributedSampler
    indices: DataLoader
    indices_sampler: DistributedSampler

    @classmethod
    def for_fit(cls, fit: Fit) -> Loaders:
        s, rt = fit.settings, fit.rt
        tensors = (fit.train_images, fit.train_labels)
        indices = (torch.arange(len(fit.train_labels)), fit.train_labels)
        pin = rt.device.type == "cuda"
        images, images_sampler = train_loader(
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
        return cls(images, images_sampler, index_loader, index_sampler)

    @property
    def steps_per_epoch(self) -> int:
        return len(self.images)

    def epoch(self, cached: bool, epoch: int) -> DataLoader:
        """The loader for this epoch, its sampler set to the epoch's order."""
        if cached:
            self.indices_sampler.set_epoch(epoch)
            return self.indices
        self.images_sampler.set_epoch(epoch)
        return self.images


# ---------------------------------------------------------------- the loop


def train(
    fit: Fit,
    plans: list[EpochPlan],
    *,
    resume: dict[str, Any] | None = None,
    on_epoch: OnEpoch | None = None,
    max_epochs: int | None = None,
) -> list[EpochReport]:
    """Train ``fit.model`` through ``plans`` (from the epoch after ``resume``'s); returns this call's reports.

    ``on_epoch`` runs after each epoch's evaluation (the main run checkpoints, records and reports there);
    ``max_epochs`` stops after that many epochs of this call.
    """
    start = resume["epochs_done"] if resume else 0
    loaders = Loaders.for_fit(fit)
    scaler = torch.amp.GradScaler(fit.rt.device.type, enabled=fit.rt.amp_dtype == torch.float16)
    if resume is not None and resume.get("scaler"):
        scaler.load_state_dict(resume["scaler"])
    reports: list[EpochReport] = []
    stage: Stage | None = None
    try:
        for plan in plans[start:][:max_epochs]:  # [:None] is every remaining epoch
            if stage is None or stage.plan.stage != plan.stage:
                if stage is not None:
                    stage.prefix.remove()
                same_stage = resume is not None and plan.epoch == start and resume.get("stage") == plan.stage
                stage = start_stage(fit, plan, loaders.steps_per_epoch, resume if same_stage else None)
            stage.plan = plan
            if plan.epoch == start and resume is not None:
                set_rng_state(resume["rng"])  # after all set-up, right where the killed run stopped
            clock = time.perf_counter()
            cache_features(fit, stage)
            loss, correct, seen = train_epoch(fit, stage, scaler, loaders)
            train_seconds = time.perf_counter() - clock
            accuracy = evaluate(
                fit.model, fit.prep, fit.eval_images, fit.eval_labels, fit.final_size, fit.rt,
                2 * fit.settings.batch_size,
            )  # fmt: skip
            report = EpochReport(
                epoch=plan.epoch + 1,
                epochs=len(plans),
                stage=plan.stage,
                image_size=plan.image_size,
                trainable_groups=list(range(plan.trainable_from, len(fit.groups))),
                lrs=peak_rates(stage.optimizer),
                train_loss=loss / max(seen, 1),
                train_accuracy=correct / max(seen, 1),
                eval_accuracy=accuracy,
                eval_split=fit.eval_split,
                seconds=time.perf_counter() - clock,
                images_per_second=seen / max(train_seconds, 1e-9),
                cached_features=stage.cached,
                micro_batch=fit.micro_batch,
            )
            reports.append(report)
            if on_epoch is not None:
                on_epoch(report, stage, scaler)
    finally:
        if stage is not None:
            stage.prefix.remove()
    fit.model.eval()
    return reports


def start_stage(fit: Fit, plan: EpochPlan, steps_per_epoch: int, saved: dict[str, Any] | None) -> Stage:
    """Freeze to ``plan.trainable_from``, build the optimiser (per-group rates) and the schedule; decide
    whether the stage trains the head on cached features."""
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
    train_module = wrap(head if cached else fit.model, fit)
    return Stage(plan, optimizer, scheduler, prefix, train_module, cached)


def wrap(module: nn.Module, fit: Fit) -> nn.Module:
    """DDP (when distributed) and ``torch.compile`` (when asked) around the module that trains."""
    if fit.rt.distributed:
        ids = [fit.rt.device.index] if fit.rt.device.type == "cuda" else None
        module = nn.parallel.DistributedDataParallel(module, device_ids=ids)
    if fit.settings.compile:
        module = torch.compile(module)
    return module


def cache_features(fit: Fit, stage: Stage) -> None:
    """The frozen body's features at the epoch's image size, once per size (stage 1 with caching);
    falls back to training the whole model when the model's output is not its head's."""
    size = stage.plan.image_size
    if not stage.cached or size in stage.features:
        return
    fit.model.train()
    stage.prefix.set_modes()
    head = head_group_module(fit.model, fit.groups)
    feats = frozen_features(fit, head, size, fit.settings.batch_size)
    if feats is None:
        fit.notes.append("frozen features not cached: the model's output is not its head's output")
        stage.cached = False
        stage.train_module = wrap(fit.model, fit)
    else:
        stage.features[size] = feats


def train_epoch(
    fit: Fit, stage: Stage, scaler: torch.amp.GradScaler, loaders: Loaders
) -> tuple[float, float, float]:
    """One epoch of optimiser steps; (loss sum, correct, images) summed over the DDP processes.

    Refuses a non-finite loss every ``NAN_CHECK_EVERY`` steps and at the end of the epoch.
    """
    s, rt, plan = fit.settings, fit.rt, stage.plan
    fit.model.train()
    stage.prefix.set_modes()
    loss_sum = torch.zeros((), device=rt.device)
    correct = torch.zeros((), device=rt.device, dtype=torch.int64)
    seen = 0
    for step, (batch, y) in enumerate(loaders.epoch(stage.cached, plan.epoch)):
        y = y.to(rt.device, non_blocking=True)
        if stage.cached:
            inputs = stage.features[plan.image_size][batch.to(stage.features[plan.image_size].device)]
        else:
            inputs = batch.to(rt.device, non_blocking=True)
        micro = min(fit.micro_batch, len(y))
        (batch_loss, batch_correct), fitted = oom_retry(
            lambda m, inputs=inputs, y=y: _train_step(fit, stage, scaler, inputs, y, m),
            micro,
            s.allow_oom_retry and not rt.distributed,  # ranks cannot retry alone under DDP
        )
        if fitted < micro:
            fit.micro_batch = fitted
        loss_sum += batch_loss
        correct += batch_correct
        seen += len(y)
        if (step + 1) % NAN_CHECK_EVERY == 0:
            check_finite(loss_sum, plan, step)
    check_finite(loss_sum, plan, loaders.steps_per_epoch - 1)
    loss_total, correct_total, seen_total = all_sum([float(loss_sum), float(correct), seen], rt)
    return loss_total, correct_total, seen_total


def _train_step(
    fit: Fit, stage: Stage, scaler: torch.amp.GradScaler, inputs: torch.Tensor, y: torch.Tensor, micro: int
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
    _advance_schedule(stage, scaler)
    return loss_sum, correct


def _advance_schedule(stage: Stage, scaler: torch.amp.GradScaler) -> None:
    """Advance the learning-rate schedule by one batch.

    Under fp16 the GradScaler skips the optimiser step of a batch whose gradients overflowed (often the
    first few, while it finds its scale). The schedule advances all the same, so it keeps the run's length;
    PyTorch's warning that the scheduler stepped before the optimiser is expected then and is not shown.
    """
    if not scaler.is_enabled():
        stage.scheduler.step()
        return
    with warnings.catch_warnings():
        warnings.filterwarnings(
            "ignore", message=r"Detected call of `lr_scheduler\.step\(\)` before", category=UserWarning
        )
        stage.scheduler.step()


class Diverged(FinetuneError):
    """A non-finite loss; ``finetune`` adds where the last good checkpoint is."""


def check_finite(loss_sum: torch.Tensor, plan: EpochPlan, step: int) -> None:
    """``Diverged`` when the running loss is no longer finite."""
    if not torch.isfinite(loss_sum):
        raise Diverged(f"the loss became {float(loss_sum)} in epoch {plan.epoch + 1} (by step {step + 1})")


# ---------------------------------------------------------------- evaluation and features


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
def frozen_features(fit: Fit, head: nn.Module, size: Size, batch_size: int) -> torch.Tensor | None:
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


__all__ = [
    "NAN_CHECK_EVERY",
    "Diverged",
    "Fit",
    "Loaders",
    "OnEpoch",
    "Stage",
    "check_finite",
    "evaluate",
    "frozen_features",
    "make_fit",
    "start_stage",
    "train",
    "train_epoch",
    "wrap",
]

"""The training schedule: which groups train in which epoch, at which size, at which rates; and L2-SP.

Small named primitives, composed by the engine the way fastai's ``fine_tune`` composes ``freeze``,
``fit_one_cycle`` and ``unfreeze``:

- ``plan_epochs``: per epoch, the stage (1 = head only, 2 = groups ``freeze_cut..``) and the image side;
- ``group_rates``: discriminative rates spread geometrically over the trainable groups, earlier slower
  (fastai's ``slice(top / lr_mult, top)``);
- ``make_optimizer`` / ``make_scheduler``: AdamW with one parameter group per trainable layer group, and
  one-cycle (``OneCycleLR`` with per-group ``max_lr``, cosine annealing, momentum 0.95 -> 0.85 -> 0.95 as
  fastai) or cosine decay, over one stage;
- ``L2SP``: the penalty of Li et al. 2018 that keeps fine-tuned weights near the pretrained ones.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import nn

from transfer.finetune.data import Size, SizeLimits
from transfer.finetune.settings import FinetuneError, FinetuneSettings
from transfer.zoo import group_parameters

log = logging.getLogger(__name__)

FROZEN, UNFROZEN = 1, 2


@dataclass(frozen=True)
class EpochPlan:
    """What one epoch does. ``epoch`` and ``stage_epoch`` count from 0."""

    epoch: int
    stage: int
    trainable_from: int
    image_size: Size
    stage_epoch: int
    stage_epochs: int


def resolve_freeze_cut(freeze_cut: int, n_groups: int) -> int:
    """``freeze_cut`` as an index in ``0..n_groups-1`` (negative counts from the end)."""
    if not -n_groups <= freeze_cut < n_groups:
        raise FinetuneError(
            f"freeze_cut {freeze_cut} is outside the model's {n_groups} layer groups "
            f"(use 0..{n_groups - 1}, or -1 for the head only)."
        )
    return freeze_cut % n_groups


def training_sizes(
    settings: FinetuneSettings,
    final_size: Size,
    source_size: Size,
    limits: SizeLimits,
    model_name: str,
    target_close_to_source: bool,
) -> tuple[list[Size], list[str]]:
    """Image sizes (H, W) to train at, smallest first, ending at ``final_size``; and notes on refusals.

    Progressive resizing (fastai; Howard 2018) trains early epochs on smaller images: each of
    ``settings.resize_sizes`` is a height, the width keeps the final aspect ratio. When the target is
    close to the source, the pretrained filters are tuned to objects at the pretraining resolution and
    training below it shifts their apparent scale (the train/test resolution discrepancy, Touvron et al.
    2019), so sizes below ``source_size`` are refused and skipped, with the reason logged and returned.
    """
    limits.check(final_size, "image size", model_name)
    sizes: list[Size] = []
    notes: list[str] = []
    for side in settings.resize_sizes:
        size = (side, max(1, round(side * final_size[1] / final_size[0])))
        if side >= final_size[0]:
            raise FinetuneError(
                f"resize size {side} is not smaller than the final image size {final_size[0]}; progressive "
                "resizing trains small then larger."
            )
        limits.check(size, "resize size", model_name)
        if target_close_to_source and side < source_size[0]:
            note = (
                f"refused progressive resizing to {side}px: the target is close to the source and "
                f"{model_name} was pretrained at {source_size[0]}px, so smaller images would shift the scale "
                "its filters were tuned to; those epochs train at the full size instead"
            )
            log.warning(note)
            notes.append(note)
            continue
        sizes.append(size)
    return [*sizes, tuple(final_size)], notes


def plan_epochs(settings: FinetuneSettings, n_groups: int, sizes: Sequence[Size]) -> list[EpochPlan]:
    """One ``EpochPlan`` per epoch: frozen epochs first, sizes in equal runs over all epochs, small first."""
    cut = resolve_freeze_cut(settings.freeze_cut, n_groups)
    head = n_groups - 1
    plans = []
    for epoch in range(settings.epochs):
        frozen = epoch < settings.frozen_epochs
        size = sizes[min(len(sizes) - 1, epoch * len(sizes) // settings.epochs)]
        plans.append(
            EpochPlan(
                epoch=epoch,
                stage=FROZEN if frozen else UNFROZEN,
                trainable_from=head if frozen else cut,
                image_size=size,
                stage_epoch=epoch if frozen else epoch - settings.frozen_epochs,
                stage_epochs=settings.frozen_epochs if frozen else settings.unfrozen_epochs,
            )
        )
    return plans


def group_rates(top_lr: float, lr_mult: float, n_trainable: int) -> list[float]:
    """Rates of the trainable groups, first to last: ``top_lr / lr_mult ** ((n-1-i)/(n-1))``.

    A geometric spread from ``top_lr / lr_mult`` (the earliest trainable group) to ``top_lr`` (the head),
    as fastai's ``slice(top_lr / lr_mult, top_lr)``; one group gets ``top_lr``.
    """
    if n_trainable == 1:
        return [top_lr]
    return [top_lr / lr_mult ** ((n_trainable - 1 - i) / (n_trainable - 1)) for i in range(n_trainable)]


def stage_rates(settings: FinetuneSettings, plan: EpochPlan, n_groups: int) -> list[float]:
    """Peak rates of groups ``plan.trainable_from..`` in ``plan``'s stage.

    Stage 1 trains at ``base_lr`` (fastai's ``slice(base_lr)``); stage 2 spreads ``top`` over the groups,
    where ``top = base_lr * unfreeze_lr_scale`` after a frozen stage (fastai halves it) and ``base_lr``
    otherwise.
    """
    n_trainable = n_groups - plan.trainable_from
    if plan.stage == FROZEN:
        return [settings.base_lr] * n_trainable
    top = settings.base_lr * (settings.unfreeze_lr_scale if settings.frozen_epochs > 0 else 1.0)
    return group_rates(top, settings.lr_mult, n_trainable)


def make_optimizer(
    model: nn.Module,
    groups: Sequence[Sequence[str]],
    trainable_from: int,
    rates: Sequence[float],
    weight_decay: float,
) -> torch.optim.AdamW:
    """AdamW with one parameter group per trainable layer group (``group`` = its index), at ``rates``."""
    params = group_parameters(model, groups)[trainable_from:]
    param_groups = [
        {
            "params": ps,
            "lr": rate,
            "group": trainable_from + i,
            "group_name": "+".join(groups[trainable_from + i]),
        }
        for i, (ps, rate) in enumerate(zip(params, rates, strict=True))
        if ps
    ]
    return torch.optim.AdamW(param_groups, lr=max(rates), weight_decay=weight_decay)


def make_scheduler(
    optimizer: torch.optim.Optimizer, settings: FinetuneSettings, stage: int, total_steps: int
) -> torch.optim.lr_scheduler.LRScheduler:
    """The stage's per-step schedule over ``total_steps`` optimiser steps.

    One-cycle: warm up from ``max_lr / div`` over ``pct_start`` of the steps, then cosine down to
    ``max_lr / div_final`` (fastai's ``fit_one_cycle``; its frozen stage uses ``frozen_pct_start`` 0.99
    and ``frozen_div`` 25). Cosine: from each group's rate down to 0, no warm-up.
    """
    total_steps = max(total_steps, 2)  # OneCycleLR needs two phases' worth of steps
    if settings.schedule == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=total_steps)
    div = settings.frozen_div if stage == FROZEN else settings.div
    return torch.optim.lr_scheduler.OneCycleLR(
        optimizer,
        max_lr=[g["lr"] for g in optimizer.param_groups],
        total_steps=total_steps,
        pct_start=settings.frozen_pct_start if stage == FROZEN else settings.pct_start,
        div_factor=div,
        final_div_factor=settings.div_final / div,
        anneal_strategy="cos",
        cycle_momentum=True,
        base_momentum=0.85,
        max_momentum=0.95,
    )


def peak_rates(optimizer: torch.optim.Optimizer) -> dict[str, float]:
    """Each parameter group's peak rate (``max_lr`` under one-cycle, else ``initial_lr``/``lr``), by group."""
    return {
        str(g["group"]): float(g.get("max_lr", g.get("initial_lr", g["lr"]))) for g in optimizer.param_groups
    }


class L2SP:
    """L2-SP (Li, Grandvalet, Davoine, ICML 2018, "Explicit inductive bias for transfer learning").

    ``penalty = alpha/2 * sum_body ||w - w0||^2 + beta/2 * sum_head ||w||^2`` over trainable parameters,
    where ``w0`` are the pretrained weights (snapshotted when this object is made) and the head is the
    last layer group, which has no pretrained counterpart for a new label space. It replaces weight decay:
    decay pulls towards 0, which forgets exactly what transfer keeps, so the engine sets the optimiser's
    weight decay to 0 when L2-SP is on. Li et al. use alpha 0.1 and beta 0.01.
    """

    def __init__(self, model: nn.Module, groups: Sequence[Sequence[str]], alpha: float, beta: float) -> None:
        by_group = group_parameters(model, groups)
        self.alpha, self.beta = alpha, beta
        self.body = [(p, p.detach().clone()) for ps in by_group[:-1] for p in ps]
        self.head = list(by_group[-1])

    def penalty(self) -> torch.Tensor:
        """The penalty as a 0-d tensor on the parameters' device (differentiable in the trainable ones)."""
        device = self.head[0].device
        total = torch.zeros((), device=device)
        body = [(p - p0).pow(2).sum() for p, p0 in self.body if p.requires_grad]
        head = [p.pow(2).sum() for p in self.head if p.requires_grad]
        if body:
            total = total + self.alpha / 2 * torch.stack(body).sum()
        if head:
            total = total + self.beta / 2 * torch.stack(head).sum()
        return total

    def to(self, device: torch.device) -> L2SP:
        """Move the pretrained snapshot next to the parameters."""
        self.body = [(p, p0.to(device)) for p, p0 in self.body]
        return self


__all__ = [
    "FROZEN",
    "L2SP",
    "UNFROZEN",
    "EpochPlan",
    "group_rates",
    "make_optimizer",
    "make_scheduler",
    "peak_rates",
    "plan_epochs",
    "resolve_freeze_cut",
    "stage_rates",
    "training_sizes",
]

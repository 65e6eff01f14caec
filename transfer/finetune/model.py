"""The model side of a run: the source model with the target's head, the frozen prefix that runs
without gradients, and the fine-tuned model's record.

Stage 1 trains the head with the body frozen: its parameters have ``requires_grad=False`` and the frozen
prefix of the model (every module before the first trainable one) runs under ``torch.no_grad()`` and, with
``bn_mode="eval"``, in eval mode (batch-norm statistics and dropout frozen).
"""

from __future__ import annotations

import copy
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from kg.clock import now
from transfer.data import ImageDataset
from transfer.finetune.data import Size, channel_adaptation
from transfer.finetune.settings import FinetuneError
from transfer.zoo import ModelRecord, ZooError, check_layer_groups, chop_head, load_model, param_count

log = logging.getLogger(__name__)


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


def to_device(model: nn.Module, device: torch.device, channels_last: bool) -> nn.Module:
    """``model`` on ``device``, in channels-last memory format when asked (faster convolutions on GPUs)."""
    model.to(device)
    if channels_last:
        model.to(memory_format=torch.channels_last)
    return model


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


__all__ = ["FrozenPrefix", "head_group_module", "prepare_model", "to_device", "tuned_record"]

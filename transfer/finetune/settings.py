"""Every choice of a fine-tuning run, in one dataclass, and the named presets that fill it.

``FinetuneSettings`` is what a suitability report fills in and what the graph records as the run's
``settings``; nothing else changes how a run trains. ``settings_for(preset, **overrides)`` starts from a
preset and replaces fields. Values are checked when the settings are made (``FinetuneError``, one
sentence); checks that need the model (freeze cut, image sizes) run in ``check_for_model``.

Presets:
- ``full``: every group trainable from the first epoch, one learning rate, no frozen epochs.
- ``linear-probe``: only the head (the last layer group) trains, in every epoch.
- ``fastai``: fastai's ``fine_tune``: 1 frozen epoch (head only, one-cycle at ``base_lr`` with
  ``pct_start`` 0.99), then unfreeze and run one-cycle with ``slice(base_lr/2/lr_mult, base_lr/2)``
  spread geometrically over the layer groups (``div`` 5, ``pct_start`` 0.3); ``base_lr`` 2e-3,
  ``lr_mult`` 100, weight decay 0.01.
- ``auto``: the same as ``fastai`` until the report fills it from the graph.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields, replace
from typing import Any

from kg.errors import UserError

SCHEDULES = ("one_cycle", "cosine")
PRECISIONS = ("fp32", "bf16", "fp16", "auto")
BN_MODES = ("eval", "train")


class FinetuneError(UserError, ValueError):
    """A fine-tuning run cannot start or go on as asked; the message is one sentence for the user."""


@dataclass
class FinetuneSettings:
    """How to fine-tune: what to freeze, how long, at which rates, on which sizes, with which tricks.

    Layer groups come from the model record, input to output with the head's group last.
    ``freeze_cut`` is the index of the first group trained in stage 2 (0 = all groups; negative counts
    from the end, so -1 = the head only). Stage 1 (``frozen_epochs`` epochs) trains only the head;
    stage 2 (the rest of ``epochs``) trains groups ``freeze_cut..`` with discriminative rates: group j of
    the m trainable groups gets ``top / lr_mult ** ((m-1-j)/(m-1))`` where ``top`` is ``base_lr``, times
    ``unfreeze_lr_scale`` when a frozen stage ran first (fastai halves it).
    """

    preset: str = "fastai"
    freeze_cut: int = 0
    frozen_epochs: int = 1
    epochs: int = 5
    base_lr: float = 2e-3
    lr_mult: float = 100.0
    unfreeze_lr_scale: float = 0.5
    schedule: str = "one_cycle"
    pct_start: float = 0.3
    frozen_pct_start: float = 0.99
    div: float = 5.0
    frozen_div: float = 25.0
    div_final: float = 1e5
    weight_decay: float = 0.01
    image_size: int | None = None
    resize_sizes: list[int] = field(default_factory=list)
    l2sp: float = 0.0
    l2sp_head: float = 0.01
    class_balanced: bool = False
    class_balance_beta: float = 0.0
    batch_size: int = 64
    precision: str = "auto"
    channels_last: bool = False
    compile: bool = False
    cache_frozen_features: bool = True
    bn_mode: str = "eval"
    num_workers: int = 0
    seed: int = 0
    deterministic: bool = False
    allow_oom_retry: bool = True

    def __post_init__(self) -> None:
        self.resize_sizes = [int(s) for s in self.resize_sizes]
        self._validate()

    def _validate(self) -> None:
        if self.preset not in PRESETS and self.preset != "custom":
            raise FinetuneError(f"unknown preset {self.preset!r}; use one of {', '.join(PRESETS)}.")
        if self.schedule not in SCHEDULES:
            raise FinetuneError(f"unknown schedule {self.schedule!r}; use one of {', '.join(SCHEDULES)}.")
        if self.precision not in PRECISIONS:
            raise FinetuneError(f"unknown precision {self.precision!r}; use one of {', '.join(PRECISIONS)}.")
        if self.bn_mode not in BN_MODES:
            raise FinetuneError(f"bn_mode must be 'eval' or 'train', not {self.bn_mode!r}.")
        if self.epochs < 1:
            raise FinetuneError(f"epochs must be at least 1, got {self.epochs}.")
        if not 0 <= self.frozen_epochs <= self.epochs:
            raise FinetuneError(
                f"frozen_epochs must lie in 0..epochs ({self.epochs}), got {self.frozen_epochs}."
            )
        positive = {
            "base_lr": self.base_lr,
            "unfreeze_lr_scale": self.unfreeze_lr_scale,
            "div": self.div,
            "frozen_div": self.frozen_div,
            "div_final": self.div_final,
        }
        for name, value in positive.items():
            if not value > 0:
                raise FinetuneError(f"{name} must be positive, got {value}.")
        if self.lr_mult < 1:
            raise FinetuneError(
                f"lr_mult is the ratio of the last to the first group's rate (>= 1), got {self.lr_mult}."
            )
        for name in ("pct_start", "frozen_pct_start"):
            if not 0 < getattr(self, name) < 1:
                raise FinetuneError(f"{name} must lie strictly between 0 and 1, got {getattr(self, name)}.")
        for name in ("weight_decay", "l2sp", "l2sp_head"):
            if getattr(self, name) < 0:
                raise FinetuneError(f"{name} cannot be negative, got {getattr(self, name)}.")
        if not 0 <= self.class_balance_beta < 1:
            raise FinetuneError(
                f"class_balance_beta is 0 (inverse frequency) or in (0, 1) (effective number), got "
                f"{self.class_balance_beta}."
            )
        if self.batch_size < 1:
            raise FinetuneError(f"batch_size must be at least 1, got {self.batch_size}.")
        if self.num_workers < 0:
            raise FinetuneError(f"num_workers cannot be negative, got {self.num_workers}.")
        if self.image_size is not None and self.image_size < 1:
            raise FinetuneError(f"image_size must be a positive number of pixels, got {self.image_size}.")
        if any(s < 1 for s in self.resize_sizes):
            raise FinetuneError(f"resize_sizes must be positive numbers of pixels, got {self.resize_sizes}.")
        if self.resize_sizes != sorted(set(self.resize_sizes)):
            raise FinetuneError(f"resize_sizes must grow strictly (small to large), got {self.resize_sizes}.")

    @property
    def unfrozen_epochs(self) -> int:
        """Epochs of stage 2."""
        return self.epochs - self.frozen_epochs

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able values (what the graph and the checkpoint keep)."""
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> FinetuneSettings:
        """Settings from ``to_dict`` output (or JSON text); unknown keys are refused."""
        values = json.loads(values) if isinstance(values, str) else dict(values)
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise FinetuneError(f"unknown fine-tuning settings {unknown}; known: {sorted(known)}.")
        return cls(**values)

    def differences(self, other: FinetuneSettings) -> list[str]:
        """Names of the fields whose values differ between ``self`` and ``other``."""
        mine, theirs = self.to_dict(), other.to_dict()
        return [name for name in mine if mine[name] != theirs[name]]


# Preset -> field values over the dataclass defaults (which are fastai's).
PRESETS: dict[str, dict[str, Any]] = {
    "full": {"freeze_cut": 0, "frozen_epochs": 0, "lr_mult": 1.0, "base_lr": 1e-3, "div": 25.0},
    "linear-probe": {"freeze_cut": -1, "frozen_epochs": 5, "epochs": 5, "base_lr": 1e-2, "lr_mult": 1.0},
    "fastai": {},
    "auto": {},
}


def settings_for(preset: str = "fastai", **overrides: Any) -> FinetuneSettings:
    """The preset's settings with ``overrides`` replacing fields; ``FinetuneError`` for unknown names.

    For ``linear-probe`` an ``epochs`` override also sets ``frozen_epochs`` (every epoch stays frozen).
    """
    if preset not in PRESETS:
        raise FinetuneError(f"unknown preset {preset!r}; use one of {', '.join(PRESETS)}.")
    known = {f.name for f in fields(FinetuneSettings)}
    unknown = sorted(set(overrides) - known)
    if unknown:
        raise FinetuneError(f"unknown fine-tuning settings {unknown}; known: {sorted(known)}.")
    values = {**PRESETS[preset], **overrides, "preset": preset}
    if preset == "linear-probe" and "epochs" in overrides and "frozen_epochs" not in overrides:
        values["frozen_epochs"] = overrides["epochs"]
    if preset == "fastai" or preset == "auto":
        values.setdefault("frozen_epochs", min(1, values.get("epochs", FinetuneSettings.epochs)))
    return FinetuneSettings(**values)


def with_changes(settings: FinetuneSettings, **changes: Any) -> FinetuneSettings:
    """A copy of ``settings`` with fields replaced (validated again)."""
    return replace(settings, **changes)


__all__ = [
    "BN_MODES",
    "PRECISIONS",
    "PRESETS",
    "SCHEDULES",
    "FinetuneError",
    "FinetuneSettings",
    "settings_for",
    "with_changes",
]

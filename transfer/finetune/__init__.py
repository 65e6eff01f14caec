"""The fine-tuning engine: settings and presets, the schedule, the loop, checkpoints, and run records.

``finetune(source_record, target_dataset, settings, out_dir=...)`` fine-tunes a zoo model on a target
dataset the way fastai's ``fine_tune`` does (frozen head stage, then discriminative rates with one-cycle),
checkpoints every epoch so a killed run resumes to the same result, and records the run, its lineage and
its outcome in the graph. ``python -m transfer.finetune.engine`` (or ``torchrun ... -m
transfer.finetune.engine``) is the same run from the command line.

Modules: ``settings`` (``FinetuneSettings``, presets), ``data`` (channels, resizing, normalisation,
loaders, class weights), ``schedule`` (epoch plan, discriminative rates, one-cycle, L2-SP), ``engine``
(the loop), ``runtime`` (device, DDP process group, AMP precision, out-of-memory retry), ``torchrun``
(the command-line entry point), ``checkpoint`` (atomic resumable state), ``record`` (the graph writes).
"""

from __future__ import annotations

import importlib
from typing import Any

from transfer.finetune.settings import PRESETS, FinetuneError, FinetuneSettings, settings_for

# The engine loads on first use, so that ``python -m transfer.finetune.engine`` runs it as __main__
# without a second copy already imported by this package.
_LAZY = {
    "EpochReport": "engine",
    "FinetuneResult": "engine",
    "FrozenPrefix": "engine",
    "Progress": "engine",
    "baseline_settings": "engine",
    "evaluate": "engine",
    "finetune": "engine",
    "prepare_model": "engine",
    "amp_dtype": "runtime",
    "oom_retry": "runtime",
    "main": "torchrun",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(f"transfer.finetune.{_LAZY[name]}"), name)
    raise AttributeError(f"module 'transfer.finetune' has no attribute {name!r}")


__all__ = [
    "PRESETS",
    "EpochReport",
    "FinetuneError",
    "FinetuneResult",
    "FinetuneSettings",
    "FrozenPrefix",
    "Progress",
    "amp_dtype",
    "baseline_settings",
    "evaluate",
    "finetune",
    "main",
    "oom_retry",
    "prepare_model",
    "settings_for",
]

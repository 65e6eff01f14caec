"""The fine-tuning engine: settings and presets, the schedule, the loop, checkpoints, and run records.

``finetune(source_record, target_dataset, settings, out_dir=...)`` fine-tunes a zoo model on a target
dataset the way fastai's ``fine_tune`` does (frozen head stage, then discriminative rates with one-cycle),
checkpoints every epoch so a killed run resumes to the same result, and records the run, its lineage and
its outcome in the graph. ``torchrun ... -m transfer.finetune.torchrun`` is ``kgraft finetune`` on
several processes (it plans and runs through ``transfer.loop``).

Modules: ``settings`` (``FinetuneSettings``, presets), ``data`` (channels, resizing, normalisation,
loaders, class weights), ``schedule`` (epoch plan, discriminative rates, one-cycle, L2-SP), ``engine``
(``finetune``: the run's steps top to bottom), ``train`` (the loop: stages, steps, evaluation),
``model`` (the head, the frozen prefix, the fine-tuned record), ``measure`` (test accuracy, forgetting,
the from-scratch baseline), ``results`` (``EpochReport``, ``FinetuneResult``), ``runtime`` (device, DDP
process group, AMP precision, out-of-memory retry), ``runlog`` (the run's checkpoints and Activity as it
goes), ``checkpoint`` (atomic resumable state), ``record`` (the graph writes), ``torchrun`` (the
multi-process entry point).
"""

from __future__ import annotations

import importlib
from typing import Any

from transfer.finetune.settings import PRESETS, FinetuneError, FinetuneSettings, settings_for

# The torch-heavy modules load on first use, so that ``python -m transfer.finetune.torchrun`` runs as
# __main__ without a second copy already imported by this package.
_LAZY = {
    "EpochReport": "results",
    "FinetuneResult": "results",
    "FrozenPrefix": "model",
    "Progress": "results",
    "baseline_settings": "measure",
    "evaluate": "train",
    "finetune": "engine",
    "prepare_model": "model",
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

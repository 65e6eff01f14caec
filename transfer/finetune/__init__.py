"""The fine-tuning engine: settings and presets, the schedule, the loop, checkpoints, and run records.

``finetune(source_record, target_dataset, settings, out_dir=...)`` fine-tunes a zoo model on a target
dataset the way fastai's ``fine_tune`` does (frozen head stage, then discriminative rates with one-cycle),
checkpoints every epoch so a killed run resumes to the same result, and records the run, its lineage and
its outcome in the graph. ``python -m transfer.finetune.engine`` is the same run for ``torchrun``.
"""

from transfer.finetune.engine import (
    EpochReport,
    FinetuneResult,
    FrozenPrefix,
    Progress,
    amp_dtype,
    baseline_settings,
    evaluate,
    finetune,
    main,
    oom_retry,
    prepare_model,
)
from transfer.finetune.settings import PRESETS, FinetuneError, FinetuneSettings, settings_for

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

"""What a finished run measures: test accuracy at the final size, forgetting of the source task (with
the ORIGINAL head, before and after), and the from-scratch baseline trained with the same budget."""

from __future__ import annotations

import copy
import time
from typing import Any

from torch import nn

from transfer.data import ImageDataset
from transfer.finetune.data import Preprocess, Size, TargetSplits
from transfer.finetune.model import to_device
from transfer.finetune.results import EpochReport
from transfer.finetune.runtime import Runtime, seed_everything
from transfer.finetune.schedule import UNFROZEN, EpochPlan
from transfer.finetune.settings import FinetuneSettings, with_changes
from transfer.finetune.train import Fit, evaluate, make_fit, train
from transfer.zoo import ModelRecord, build_for_record, chop_head, load_model


def measure_outcome(
    fit: Fit,
    source: ModelRecord,
    target: ImageDataset,
    history: list[EpochReport],
    splits: TargetSplits,
    original_head: nn.Module,
    source_dataset: ImageDataset | None,
    baseline_plans: list[EpochPlan] | None,
    timings: dict[str, float],
) -> dict[str, Any]:
    """The outcome: test ``accuracy`` at the final size, forgetting of the source task (with
    ``source_dataset``) and the from-scratch baseline (with ``baseline_plans``); adds their timings.

    Keys as the TRANSFERRED_TO edge has them, plus ``extra`` (the test split, the baseline's terms)."""
    s, rt, final_size = fit.settings, fit.rt, fit.final_size
    tick = time.perf_counter()
    accuracy = (
        history[-1].eval_accuracy
        if splits.test_name == splits.eval_name
        else evaluate(
            fit.model, fit.prep, splits.test.images, splits.test.labels, final_size, rt, 2 * s.batch_size
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
    return outcome


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
    splits: TargetSplits,
    final_size: Size,
) -> float:
    """Test accuracy of ``source``'s architecture trained from random init with the same budget (epochs,
    image sizes, batch, schedule kind, base rate)."""
    s = baseline_settings(settings)
    seed_everything(s.seed)
    model = build_for_record(source)
    chop_head(model, source, target.num_classes, seed=s.seed)
    to_device(model, rt.device, s.channels_last)
    fit = make_fit(model, source, target, s, rt, splits, final_size, None, [])
    # The baseline is judged on the test split, epoch by epoch.
    fit.eval_images, fit.eval_labels, fit.eval_split = (
        splits.test.images,
        splits.test.labels,
        splits.test_name,
    )
    baseline_plans = [EpochPlan(p.epoch, UNFROZEN, 0, p.image_size, p.epoch, len(plans)) for p in plans]
    reports = train(fit, baseline_plans)
    return reports[-1].eval_accuracy


__all__ = ["baseline_settings", "measure_forgetting", "measure_outcome", "train_baseline"]

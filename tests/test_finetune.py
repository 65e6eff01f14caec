"""The fine-tuning engine on real data and real pretrained weights, recorded on both stores.

Sources: the digit CNNs bundled with PyPI ccexam (USPS 16x16 with batch-norm and dropout, MNIST 28x28,
SVHN 32x32 RGB) and a SmallCNN pretrained here for a few seconds on a Fashion-MNIST subset. Targets:
sklearn digits (8x8) with 10 training images per class, Fashion-MNIST subsets. Everything is small
enough for two CPU cores.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import warnings
from dataclasses import replace
from pathlib import Path

import pytest
import torch

from kg import GraphStore, open_store
from kg.ids import slug
from kg.lineage import ancestors
from ontology.vocab import Label
from transfer.data import ImageDataset, derive, load_dataset
from transfer.finetune import FinetuneError, FinetuneSettings, finetune, main, oom_retry, settings_for
from transfer.finetune import train as train_module
from transfer.finetune.checkpoint import checkpoint_file, load_state
from transfer.finetune.data import LUMINANCE, Preprocess, adapt_channels, class_weights
from transfer.finetune.schedule import L2SP, group_rates, make_optimizer, plan_epochs, stage_rates
from transfer.register import register_dataset, register_model
from transfer.zoo import (
    ModelRecord,
    build_demo_zoo,
    ccexam_installed,
    ccexam_records,
    group_parameters,
    load_model,
    record_from_torchvision,
)
from transfer.zoo.registration import record_from_spec

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.skipif(not ccexam_installed(), reason="needs the ccexam weights: pip install ccexam")


# ---------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def records() -> dict[str, ModelRecord]:
    return {r.id: r for r in ccexam_records()}


@pytest.fixture(scope="module")
def usps(records) -> ModelRecord:
    return records["ccexam.usps"]


def few_shot(ds: ImageDataset, per_class: int) -> ImageDataset:
    """``per_class`` training images of each class and the whole test split (a stable accuracy)."""
    train = ds.split_mask("train")
    keep = [torch.nonzero(train & (ds.labels == c)).flatten()[:per_class] for c in range(ds.num_classes)]
    keep.append(torch.nonzero(~train).flatten())
    out = ds.subset(torch.cat(keep).sort().values)
    out.name = f"{ds.name}-{per_class}-shot"
    return out


@pytest.fixture(scope="module")
def digits() -> ImageDataset:
    """sklearn digits, 10 training images per class (100), all 359 test images."""
    return few_shot(load_dataset("digits"), 10)


@pytest.fixture(scope="module")
def fashion() -> ImageDataset:
    return derive(load_dataset("fashion-mnist"), "subset", {"n": 600}, name="fashion-600")


@pytest.fixture(scope="module")
def fashion_cnn(tmp_path_factory, fashion) -> ModelRecord:
    """A SmallCNN (width 8, 28x28) pretrained for a few seconds on the Fashion-MNIST subset."""
    ((record, _),) = build_demo_zoo(
        tmp_path_factory.mktemp("zoo"),
        {fashion.name: fashion},
        epochs=2,
        width=8,
        min_steps=40,
        batch_size=64,
    )
    return record


def fast(preset: str = "fastai", **overrides) -> FinetuneSettings:
    """Small budgets: 2 epochs, batches of 32, a rate that moves in a handful of steps."""
    values = {"epochs": 2, "batch_size": 32, "base_lr": 1e-2, **overrides}
    return settings_for(preset, **values)


# ---------------------------------------------------------------- settings


def test_presets_follow_their_recipes() -> None:
    fastai = settings_for("fastai")
    assert (fastai.base_lr, fastai.lr_mult, fastai.pct_start, fastai.frozen_epochs) == (2e-3, 100.0, 0.3, 1)
    assert (fastai.freeze_cut, fastai.schedule, fastai.unfreeze_lr_scale, fastai.div) == (
        0,
        "one_cycle",
        0.5,
        5.0,
    )
    assert settings_for("auto").differences(fastai) == ["preset"]
    full = settings_for("full")
    assert (full.frozen_epochs, full.freeze_cut, full.lr_mult) == (0, 0, 1.0)
    probe = settings_for("linear-probe", epochs=3)
    assert (probe.frozen_epochs, probe.epochs, probe.freeze_cut) == (3, 3, -1)
    assert FinetuneSettings.from_dict(json.dumps(fastai.to_dict())) == fastai


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: settings_for("imagenet-magic"), "unknown preset"),
        (lambda: settings_for("fastai", learning_rate=1e-3), "unknown fine-tuning settings"),
        (lambda: settings_for("fastai", schedule="step"), "unknown schedule"),
        (lambda: settings_for("fastai", epochs=2, frozen_epochs=3), "frozen_epochs must lie in 0..epochs"),
        (lambda: settings_for("fastai", lr_mult=0.5), "lr_mult"),
        (lambda: settings_for("fastai", resize_sizes=[24, 16]), "must grow strictly"),
        (lambda: settings_for("fastai", precision="fp8"), "unknown precision"),
        (lambda: settings_for("fastai", bn_mode="frozen"), "bn_mode"),
    ],
)
def test_bad_settings_are_one_sentence_errors(call, message) -> None:
    with pytest.raises(FinetuneError, match=message) as err:
        call()
    assert isinstance(err.value, ValueError) and str(err.value).endswith(".")


# ---------------------------------------------------------------- the schedule


def test_each_layer_group_gets_the_rate_the_settings_say(usps, digits, tmp_path) -> None:
    s = fast(freeze_cut=1, base_lr=1e-2, lr_mult=100)
    result = finetune(usps, digits, s, out_dir=tmp_path)
    stage1, stage2 = result.epochs
    assert stage1.trainable_groups == [3] and stage1.lrs == {"3": 1e-2}
    # Stage 2: top = base_lr / 2 (fastai halves it after the frozen stage), spread geometrically over
    # the 3 trainable groups 1..3: top/100, top/10, top.
    assert stage2.trainable_groups == [1, 2, 3]
    assert stage2.lrs == pytest.approx({"1": 5e-5, "2": 5e-4, "3": 5e-3}, rel=1e-12)
    assert group_rates(1.0, 100.0, 5) == pytest.approx([1e-2, 10**-1.5, 1e-1, 10**-0.5, 1.0])

    # The optimiser's parameter groups are exactly the layer groups' parameters.
    model = load_model(usps)
    plan = plan_epochs(s, 4, [(16, 16)])[1]
    optimizer = make_optimizer(model, usps.layer_groups, plan.trainable_from, stage_rates(s, plan, 4), 0.01)
    by_group = group_parameters(model, usps.layer_groups)
    assert [g["group"] for g in optimizer.param_groups] == [1, 2, 3]
    for g in optimizer.param_groups:
        assert {id(p) for p in g["params"]} == {id(p) for p in by_group[g["group"]]}
    assert [g["lr"] for g in optimizer.param_groups] == pytest.approx([5e-5, 5e-4, 5e-3])


@pytest.mark.parametrize("cache", [False, True])
def test_stage_one_leaves_the_frozen_body_bitwise_unchanged(usps, digits, tmp_path, cache) -> None:
    """Head-only epochs change the head and nothing else: weights, batch-norm statistics, counters."""
    result = finetune(
        usps, digits, fast("linear-probe", epochs=1, cache_frozen_features=cache), out_dir=tmp_path
    )
    assert result.epochs[0].cached_features is cache
    before, after = load_model(usps).state_dict(), result.model.state_dict()
    body = [k for k in before if not k.startswith(usps.head + ".")]
    assert any("running_mean" in k for k in body)
    for key in body:
        assert torch.equal(before[key], after[key].cpu()), key
    assert not torch.equal(before[usps.head + ".weight"], after[usps.head + ".weight"])


def test_cached_frozen_features_train_the_same_head(usps, digits, tmp_path) -> None:
    runs = {
        cache: finetune(
            usps,
            digits,
            fast("linear-probe", epochs=2, cache_frozen_features=cache),
            out_dir=tmp_path / str(cache),
        )
        for cache in (False, True)
    }
    assert [e.cached_features for e in runs[True].epochs] == [True, True]
    assert runs[True].accuracy == runs[False].accuracy
    for key, value in runs[False].model.state_dict().items():
        torch.testing.assert_close(runs[True].model.state_dict()[key], value, rtol=1e-5, atol=1e-6)
    assert [e.train_loss for e in runs[True].epochs] == pytest.approx(
        [e.train_loss for e in runs[False].epochs]
    )


def test_finetuning_beats_the_random_init_baseline(usps, digits, tmp_path) -> None:
    result = finetune(usps, digits, fast(), out_dir=tmp_path, measure_baseline=True)
    assert result.finished and result.head_kept  # USPS digits -> sklearn digits: the same 10 classes
    assert result.baseline_accuracy is not None and result.gain == result.accuracy - result.baseline_accuracy
    assert result.accuracy > result.baseline_accuracy + 0.2, (result.accuracy, result.baseline_accuracy)
    assert result.accuracy > 0.7


def test_l2sp_class_balance_and_cosine(usps, fashion, tmp_path) -> None:
    model = load_model(usps)
    penalty = L2SP(model, usps.layer_groups, alpha=0.1, beta=0.01)
    head = model.get_submodule(usps.head)
    expected_head = 0.01 / 2 * sum(float(p.detach().pow(2).sum()) for p in head.parameters())
    assert float(penalty.penalty().detach()) == pytest.approx(expected_head)  # body still at w0
    with torch.no_grad():
        model.get_submodule("features.0").weight.add_(1.0)
    n = model.get_submodule("features.0").weight.numel()
    assert float(penalty.penalty().detach()) == pytest.approx(expected_head + 0.1 / 2 * n, rel=1e-5)

    labels = torch.tensor([0] * 8 + [1] * 2)
    inverse = class_weights(labels, 3)
    assert inverse.tolist() == pytest.approx([10 / 16, 10 / 4, 0.0])  # 1/n_c, averaging 1 per sample
    effective = class_weights(labels, 3, beta=0.9)
    assert float((effective[labels]).mean()) == pytest.approx(1.0) and effective[1] > effective[0]

    imbalanced = derive(derive(fashion, "subset", {"n": 200}), "imbalance", {"ratio": 5})
    s = fast("full", epochs=1, l2sp=0.1, class_balanced=True, schedule="cosine")
    result = finetune(usps, imbalanced, s, out_dir=tmp_path)
    assert result.finished and result.epochs[0].lrs == {"0": 1e-2, "1": 1e-2, "2": 1e-2, "3": 1e-2}


# ---------------------------------------------------------------- robustness


def test_resume_after_a_kill_gives_the_same_weights_and_metrics(usps, digits, tmp_path) -> None:
    s = fast(epochs=3, deterministic=True)
    whole = finetune(usps, digits, s, out_dir=tmp_path / "whole")

    # Killed after epoch 2 (mid stage 2: optimiser and one-cycle state must come back), then resumed.
    part = finetune(usps, digits, s, out_dir=tmp_path / "stopped", max_epochs_this_call=2)
    assert not part.finished and len(part.epochs) == 2 and load_state(part.state_file)["epochs_done"] == 2
    resumed = finetune(usps, digits, s, out_dir=tmp_path / "stopped", resume=True)

    # Killed by an exception in the per-epoch hook right after epoch 1, then resumed.
    def crash(report):
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        finetune(usps, digits, s, out_dir=tmp_path / "crashed", progress=crash)
    crashed = finetune(usps, digits, s, out_dir=tmp_path / "crashed", resume=True)

    for other in (resumed, crashed):
        assert other.finished and other.run_id != whole.run_id
        assert other.accuracy == whole.accuracy
        assert [e.train_loss for e in other.epochs] == [e.train_loss for e in whole.epochs]
        reference = whole.model.state_dict()
        for key, value in other.model.state_dict().items():
            assert torch.equal(value, reference[key]), key

    with pytest.raises(FinetuneError, match="different settings"):
        finetune(
            usps,
            digits,
            fast(epochs=3, deterministic=True, base_lr=3e-2),
            out_dir=tmp_path / "crashed",
            resume=True,
        )
    with pytest.raises(FinetuneError, match="already holds the checkpoint"):
        finetune(usps, digits, s, out_dir=tmp_path / "whole")
    with pytest.raises(FinetuneError, match="no checkpoint to resume"):
        finetune(usps, digits, s, out_dir=tmp_path / "empty", resume=True)


def test_a_nan_loss_stops_the_run_and_keeps_the_last_good_checkpoint(usps, digits, tmp_path) -> None:
    store = open_store(f"embedded:{tmp_path / 'graph.lbug'}")
    # Stage 2 at an absurd rate: the first unfrozen steps blow the weights up to inf, the loss to nan.
    s = fast(unfreeze_lr_scale=1e30)
    with pytest.raises(FinetuneError, match=r"training diverged: the loss became nan in epoch 2") as err:
        finetune(usps, digits, s, out_dir=tmp_path / "run", store=store)
    assert "last good checkpoint (epoch 1)" in str(err.value)
    saved = load_state(checkpoint_file(tmp_path / "run"))
    assert saved["epochs_done"] == 1 and all(torch.isfinite(v).all() for v in saved["model"].values())
    (activity,) = store.nodes(Label.ACTIVITY)
    assert activity["status"] == "failed" and "diverged" in activity["extra"]["error"]
    assert len(activity["metrics"]["epochs"]) == 1
    store.close()


def test_a_step_skipped_by_the_fp16_grad_scaler_still_advances_the_schedule_quietly() -> None:
    """An overflowing first batch makes the GradScaler skip the optimiser step; the schedule advances
    anyway (the run keeps its length) and PyTorch's scheduler-before-optimiser warning is not shown."""
    from types import SimpleNamespace

    def skipped_step() -> tuple[
        torch.optim.Optimizer, torch.optim.lr_scheduler.LRScheduler, torch.amp.GradScaler
    ]:
        weight = torch.nn.Parameter(torch.ones(3))
        optimizer = torch.optim.SGD([weight], lr=0.1)
        scheduler = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=0.1, total_steps=4)
        scaler = torch.amp.GradScaler("cpu", enabled=True)
        scaler.scale((weight * float("inf")).sum()).backward()  # an overflow, as fp16 gives
        scaler.step(optimizer)
        scaler.update()
        return optimizer, scheduler, scaler

    optimizer, scheduler, scaler = skipped_step()
    with pytest.warns(UserWarning, match="lr_scheduler.step"):  # what PyTorch says without the helper
        scheduler.step()
    optimizer, scheduler, scaler = skipped_step()
    before = optimizer.param_groups[0]["lr"]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        train_module._advance_schedule(SimpleNamespace(scheduler=scheduler), scaler)
    assert scaler.get_scale() < 65536.0 and optimizer.param_groups[0]["lr"] != before


def test_out_of_memory_halves_the_micro_batch_and_retries() -> None:
    calls = []

    def step(micro: int) -> str:
        calls.append(micro)
        if micro > 8:
            raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB (simulated)")
        return "ok"

    halved = []
    assert oom_retry(step, 32, allow=True, on_halve=halved.append) == ("ok", 8)
    assert calls == [32, 16, 8] and halved == [16, 8]
    with pytest.raises(FinetuneError, match="ran out of memory at 32 images"):
        oom_retry(step, 32, allow=False)
    with pytest.raises(FinetuneError, match="even with one image"):
        oom_retry(lambda micro: step(micro * 100), 1, allow=True)
    with pytest.raises(RuntimeError, match="shape mismatch"):  # other errors pass through untouched
        oom_retry(lambda micro: (_ for _ in ()).throw(RuntimeError("shape mismatch")), 4, allow=True)


def test_the_engine_retries_a_step_that_ran_out_of_memory(usps, digits, tmp_path, monkeypatch) -> None:
    s = fast("linear-probe", epochs=1)
    plain = finetune(usps, digits, s, out_dir=tmp_path / "plain")
    real_step = train_module._train_step

    def tight_memory(fit, stage, scaler, inputs, y, micro):
        if micro > 16:
            raise torch.cuda.OutOfMemoryError("CUDA out of memory (simulated)")
        return real_step(fit, stage, scaler, inputs, y, micro)

    monkeypatch.setattr(train_module, "_train_step", tight_memory)
    tight = finetune(usps, digits, s, out_dir=tmp_path / "tight")
    assert tight.epochs[0].micro_batch == 16 and plain.epochs[0].micro_batch == 32
    # Micro-batches accumulate into one optimiser step per batch: the same training, up to rounding.
    assert tight.accuracy == pytest.approx(plain.accuracy, abs=0.01)
    head = usps.head + ".weight"
    torch.testing.assert_close(
        tight.model.state_dict()[head], plain.model.state_dict()[head], atol=1e-5, rtol=1e-4
    )


def test_bad_inputs_fail_before_training_and_write_nothing(usps, digits, fashion, tmp_path) -> None:
    store = open_store(f"embedded:{tmp_path / 'graph.lbug'}")
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    cases = [
        (dict(settings=fast(freeze_cut=4)), "outside the model's 4 layer groups"),
        (dict(settings=fast(image_size=20)), "takes only 16x16 inputs"),
        (dict(out_dir=blocker / "run"), "cannot write checkpoints"),
        (
            dict(target=replace(digits, split_names=("train", "test"), splits=digits.splits * 0 + 1)),
            "is empty",
        ),
        (dict(target=replace(digits, split_names=("fit", "test"))), "needs a 'train' split"),
        (
            dict(source_dataset=derive(fashion, "class_subset", {"classes": ["Bag", "Coat"]})),
            "forgetting needs",
        ),
        (dict(settings={"epochs": 2}), "must be FinetuneSettings"),
    ]
    for changes, message in cases:
        kwargs = {"settings": fast(), "out_dir": tmp_path / "run", "target": digits, **changes}
        with pytest.raises(FinetuneError, match=message):
            finetune(usps, kwargs.pop("target"), kwargs.pop("settings"), store=store, **kwargs)
    resnet = record_from_torchvision("resnet18")
    with pytest.raises(FinetuneError, match="below the 32-pixel minimum"):
        finetune(resnet, digits, fast(image_size=16), out_dir=tmp_path / "run")
    if os.geteuid() != 0:  # root writes through permission bits
        locked = tmp_path / "locked"
        locked.mkdir(mode=0o500)
        with pytest.raises(FinetuneError, match="cannot write checkpoints"):
            finetune(usps, digits, fast(), out_dir=locked / "run")
    assert store.count(Label.ACTIVITY) == 0 and store.count(Label.MODEL) == 0
    store.close()


# ---------------------------------------------------------------- data preparation


def test_channel_adaptation_is_explicit_and_recorded(records, fashion, digits, tmp_path, caplog) -> None:
    gray = torch.randint(0, 256, (2, 1, 4, 4), dtype=torch.uint8)
    assert torch.equal(adapt_channels(gray.float(), 3), gray.float().repeat(1, 3, 1, 1))
    rgb = torch.rand(2, 3, 4, 4)
    expected = sum(w * rgb[:, i : i + 1] for i, w in enumerate(LUMINANCE))
    torch.testing.assert_close(adapt_channels(rgb, 1), expected)
    with pytest.raises(FinetuneError, match="only 1 <-> 3 channels"):
        adapt_channels(torch.rand(1, 4, 2, 2), 3)

    # Grayscale Fashion-MNIST into the RGB SVHN model: repeated channels, SVHN's own mean/std, 32x32.
    svhn = records["ccexam.svhn"]
    small = derive(fashion, "subset", {"n": 120})
    prep = Preprocess(svhn, 1)
    x = prep(small.images[:2], (32, 32))
    assert x.shape == (2, 3, 32, 32)
    raw = torch.nn.functional.interpolate(small.images[:2].float() / 255, size=(32, 32), mode="bilinear")
    for c in range(3):  # every channel is the same grayscale image under that channel's statistics
        torch.testing.assert_close(x[:, c : c + 1] * svhn.std[c] + svhn.mean[c], raw, atol=1e-5, rtol=0)
    with caplog.at_level(logging.INFO, logger="transfer.finetune"):
        result = finetune(svhn, small, fast("linear-probe", epochs=1), out_dir=tmp_path / "svhn")
    assert any("grayscale to RGB by repeating" in n for n in result.notes)
    assert "grayscale to RGB" in caplog.text
    assert result.record.input_size == (3, 32, 32) and result.record.extra["data_channels"] == 1

    # RGB digits (tinted per channel) into the grayscale MNIST model: luminance.
    tint = torch.tensor([1.0, 0.6, 0.3]).view(1, 3, 1, 1)
    colour = ImageDataset(
        images=(digits.images.float() * tint).round().to(torch.uint8),
        labels=digits.labels,
        splits=digits.splits,
        split_names=digits.split_names,
        class_names=digits.class_names,
        name="digits-tinted",
        source="test",
    )
    result = finetune(
        records["ccexam.mnist"], colour, fast("linear-probe", epochs=1), out_dir=tmp_path / "mnist"
    )
    assert any("ITU-R 601 luminance" in n for n in result.notes) and result.accuracy > 0.3


def test_progressive_resizing_refuses_small_sizes_when_the_target_is_close(
    fashion_cnn, digits, tmp_path
) -> None:
    s = fast(resize_sizes=[14])
    close = finetune(fashion_cnn, digits, s, out_dir=tmp_path / "close", target_close_to_source=True)
    assert [e.image_size for e in close.epochs] == [(28, 28), (28, 28)]
    assert any("refused progressive resizing to 14px" in n and "pretrained at 28px" in n for n in close.notes)

    far = finetune(fashion_cnn, digits, s, out_dir=tmp_path / "far", target_close_to_source=False)
    assert [e.image_size for e in far.epochs] == [(14, 14), (28, 28)]
    assert not any("refused" in n for n in far.notes)

    with pytest.raises(FinetuneError, match="not smaller than the final image size"):
        finetune(fashion_cnn, digits, fast(resize_sizes=[28]), out_dir=tmp_path / "bad")
    with pytest.raises(FinetuneError, match="takes only 16x16"):  # the ccexam nets fix their input size
        finetune(ccexam_records()[1], digits, fast(resize_sizes=[8]), out_dir=tmp_path / "fixed")


# ---------------------------------------------------------------- the graph


def test_the_run_its_lineage_and_outcome_are_in_the_graph(
    store: GraphStore, fashion_cnn, fashion, digits, tmp_path
):
    seen = []
    result = finetune(
        fashion_cnn, digits, fast(), out_dir=tmp_path, store=store, target_id="digits-10-shot",
        source_dataset=fashion, measure_baseline=True, progress=seen.append,
    )  # fmt: skip
    assert [e.epoch for e in seen] == [1, 2]
    run, tuned = result.run_id, result.model_id
    assert run.startswith(f"run:{slug(fashion_cnn.id)}->digits-10-shot:") and tuned == "model:" + run[4:]

    activity = store.node(Label.ACTIVITY, run)
    assert activity["kind"] == "finetuning" and activity["status"] == "finished"
    assert FinetuneSettings.from_dict(activity["settings"]) == result.settings
    assert [e["epoch"] for e in activity["metrics"]["epochs"]] == [1, 2]
    assert activity["metrics"]["accuracy"] == result.accuracy and activity["started"] <= activity["ended"]
    assert activity["device"].startswith("cpu")
    used = store.query(
        "MATCH (a:Activity {id: $id})-[u:USED]->(n) RETURN u.role AS role, n.id AS id ORDER BY role",
        {"id": run},
    )
    assert used == [
        {"role": "source-model", "id": fashion_cnn.id},
        {"role": "source-task-eval", "id": "fashion-600"},
        {"role": "target-data", "id": "digits-10-shot"},
    ]
    generated = store.query(
        "MATCH (m:Model)-[:GENERATED_BY]->(a:Activity {id: $id}) RETURN m.id AS id", {"id": run}
    )
    assert generated == [{"id": tuned}]
    lineage = {(a.id, a.path[-1].rel, a.distance) for a in ancestors(store, Label.MODEL, tuned, depth=2)}
    assert lineage == {
        (fashion_cnn.id, "FINETUNED_FROM", 1),
        ("digits-10-shot", "TRAINED_ON", 1),
        ("fashion-600", "TRAINED_ON", 2),  # the source model, created from its record, keeps its pretraining
    }

    (outcome,) = store.query(
        "MATCH (s:Model {id: $src})-[t:TRANSFERRED_TO]->(d:Dataset {id: $dst}) "
        "RETURN t.activity AS activity, t.accuracy AS accuracy, t.baseline_accuracy AS baseline, "
        "t.gain AS gain, t.forgetting AS forgetting, t.source_accuracy_before AS before, "
        "t.source_accuracy_after AS after, t.preset AS preset, t.train_size AS train_size, "
        "t.epochs AS epochs, t.batch_size AS batch_size, t.learning_rate AS lr, t.failed AS failed",
        {"src": fashion_cnn.id, "dst": "digits-10-shot"},
    )
    assert outcome["activity"] == run and outcome["preset"] == "fastai"
    # The regime: 10 training images per class, the settings' epochs, batch and base rate.
    assert (outcome["train_size"], outcome["epochs"], outcome["batch_size"]) == (100, 2, 32)
    assert outcome["lr"] == pytest.approx(1e-2) and outcome["failed"] is (result.accuracy < 0.15)
    assert outcome["accuracy"] == pytest.approx(result.accuracy)
    assert outcome["baseline"] == pytest.approx(result.baseline_accuracy)
    assert outcome["gain"] == pytest.approx(result.accuracy - result.baseline_accuracy)
    assert outcome["before"] == pytest.approx(fashion_cnn.metrics["test_accuracy"])  # the original head
    assert outcome["forgetting"] == pytest.approx(outcome["before"] - outcome["after"])

    # The fine-tuned model's own record: loads from its checkpoint, inherits the source's normalisation.
    props = store.node(Label.MODEL, tuned)
    record = ModelRecord.from_properties(props)
    assert record.checksum == result.record.checksum and (record.mean, record.std) == (
        fashion_cnn.mean,
        fashion_cnn.std,
    )
    assert record.layer_groups == fashion_cnn.layer_groups and record.class_names == digits.class_names
    reloaded = load_model(record)
    x = torch.randn(4, 1, 28, 28)
    torch.testing.assert_close(reloaded(x), result.model.cpu()(x))


def register_digits_and_usps(store: GraphStore) -> None:
    """The graph ``kgraft finetune --source ccexam.usps --target digits`` needs."""
    register_dataset(store, load_dataset("digits"))
    register_model(store, record_from_spec("ccexam:usps"))


def test_torchrun_plans_on_rank_0_and_records_one_run(store, tmp_path) -> None:
    """``torchrun -m transfer.finetune.torchrun`` is ``kgraft finetune`` on two processes: rank 0 plans
    (given source, preset) and rebuilds digits from the graph, both ranks train under DDP, and only
    rank 0 writes the graph: one run, one fine-tuned model, one outcome."""
    register_digits_and_usps(store)
    uri = store.uri
    if store.dialect == "ladybug":
        store.close()  # the entry point opens the file itself
    env = {
        k: v for k, v in os.environ.items() if k not in ("WORLD_SIZE", "RANK", "LOCAL_RANK", "MASTER_PORT")
    }
    env.update(OMP_NUM_THREADS="1", PYTHONPATH=str(ROOT))
    command = [
        sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", "--standalone",
        "-m", "transfer.finetune.torchrun", "--store", uri, "--source", "ccexam.usps", "--target", "digits",
        "--settings", "fastai", "--epochs", "2", "--set", "batch_size=64", "--set", "base_lr=0.01",
        "--out", str(tmp_path / "run"), "--result-json", str(tmp_path / "result.json"),
    ]  # fmt: skip
    done = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    summary = json.loads((tmp_path / "result.json").read_text())
    assert summary["finished"] and "DDP x2" in summary["device"] and summary["accuracy"] > 0.5
    graph = open_store(uri) if store.dialect == "ladybug" else store
    try:
        (activity,) = graph.nodes(Label.ACTIVITY)
        assert activity["id"] == summary["run_id"] and activity["status"] == "finished"
        assert activity["extra"]["world_size"] == 2 and len(activity["metrics"]["epochs"]) == 2
        assert activity["settings"]["preset"] == "fastai" and activity["settings"]["batch_size"] == 64
        assert graph.count(Label.MODEL) == 2  # the source and the fine-tuned model
        rows = graph.query(
            "MATCH (:Model {id: $s})-[t:TRANSFERRED_TO]->(:Dataset {id: $d}) RETURN t.activity AS a",
            {"s": "ccexam.usps", "d": "digits"},
        )
        assert rows == [{"a": summary["run_id"]}]
    finally:
        if graph is not store:
            graph.close()


def test_entry_point_reports_user_errors_in_one_line(tmp_path, capsys) -> None:
    uri = f"embedded:{tmp_path / 'graph.lbug'}"
    with open_store(uri) as store:
        register_digits_and_usps(store)
    common = ["--store", uri, "--source", "ccexam.usps", "--out", str(tmp_path / "run")]
    assert main([*common, "--target", "digits", "--set", "epochs=0"]) == 2
    assert capsys.readouterr().err.strip() == "error: epochs must be at least 1, got 0."
    assert main([*common, "--target", "no-such-data"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "no-such-data" in err and "\n" not in err
    with open_store(uri) as store:
        assert store.count(Label.ACTIVITY) == 0 and not (tmp_path / "run").exists()

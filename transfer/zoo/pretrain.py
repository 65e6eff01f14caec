"""Pretraining the demo zoo: small CNNs pretrained on the CPU on the bundled datasets, cached on disk.

``build_demo_zoo`` trains one ``SmallCNN`` per dataset (by default Fashion-MNIST, Animal-MNIST, sklearn
digits at their native 8x8, and Fashion-MNIST rotated by 90 degrees and made imbalanced), records test
accuracy and the model's own normalisation statistics, and returns each model's record with the
pretraining settings the graph records as an Activity. A checkpoint is cached under a key of
(dataset content checksum, architecture, hyperparameters, seed), so a second call loads instead of training.
"""

from __future__ import annotations

import hashlib
import json
import math
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from kg.clock import now
from kg.ids import dataset_id
from transfer.data import ImageDataset, checksum, derive, load_dataset, pixel_stats
from transfer.zoo.architectures import SmallCNN
from transfer.zoo.loading import file_checksum, record_for_model, save_checkpoint
from transfer.zoo.record import ModelRecord, ZooError

Progress = Callable[[str, int, int], None]
"""``progress(message, done, total)``: called as the zoo advances; done/total count epochs over all models."""

ARCHITECTURE = "smallcnn"
CACHE_FORMAT = "kgraft-demo-zoo-v1"  # bump when the training code changes, so old checkpoints stop matching


@dataclass(frozen=True)
class DemoSettings:
    """Pretraining hyperparameters of one demo model (all of them go into the cache key)."""

    epochs: int = 3
    width: int = 16
    batch_size: int = 128
    lr: float = 3e-3
    weight_decay: float = 5e-4
    max_train: int = 10_000
    min_steps: int = 200
    seed: int = 0
    threads: int = 1


@contextmanager
def _torch_threads(count: int) -> Iterator[None]:
    """Run with ``count`` intra-op threads, then restore the caller's setting.

    One thread is the default: convolutions this small gain little from a second thread, and on cores
    shared with other jobs two threads ran up to ten times slower than one (2-core machine, load average 4).
    """
    before = torch.get_num_threads()
    torch.set_num_threads(count)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def default_demo_datasets() -> dict[str, ImageDataset]:
    """Fashion-MNIST, Animal-MNIST, digits (8x8), and Fashion-MNIST rotated 90 degrees and made imbalanced."""
    fashion = load_dataset("fashion-mnist")
    datasets = [
        fashion,
        load_dataset("animal-mnist"),
        load_dataset("digits"),
        derive(fashion, "rotate", {"degrees": 90}, seed=0),
        derive(fashion, "imbalance", {"ratio": 10}, seed=0),
    ]
    return {ds.name: ds for ds in datasets}


def cache_key(dataset_checksum: str, settings: DemoSettings) -> str:
    """SHA-256 over the dataset's content checksum, the architecture and every hyperparameter."""
    payload = {
        "format": CACHE_FORMAT,
        "dataset_checksum": dataset_checksum,
        "architecture": ARCHITECTURE,
        "settings": asdict(settings),
        "torch": torch.__version__.split("+")[0],
    }
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()


def _normalised(images: torch.Tensor, mean: list[float], std: list[float]) -> torch.Tensor:
    """uint8 (N, C, H, W) -> float32 normalised by per-channel mean and std on the [0, 1] scale."""
    x = images.to(torch.float32).div_(255.0)
    return (x - torch.tensor(mean).view(1, -1, 1, 1)) / torch.tensor(std).view(1, -1, 1, 1)


@torch.no_grad()
def _accuracy(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, batch: int = 1000) -> float:
    model.eval()
    correct = sum(
        int((model(x[i : i + batch]).argmax(1) == y[i : i + batch]).sum()) for i in range(0, len(y), batch)
    )
    return correct / max(len(y), 1)


def _epochs_run(train_samples: int, settings: DemoSettings) -> int:
    """``settings.epochs``, raised on small training sets until it makes ``settings.min_steps`` steps."""
    steps_per_epoch = max(1, math.ceil(train_samples / settings.batch_size))
    return max(settings.epochs, math.ceil(settings.min_steps / steps_per_epoch))


def _train_size(ds: ImageDataset, settings: DemoSettings) -> int:
    train = int(ds.split_mask("train").sum()) if "train" in ds.split_names else 0
    return min(train, settings.max_train)


def _train(
    ds: ImageDataset, settings: DemoSettings, tick: Callable[[str], None]
) -> tuple[SmallCNN, dict[str, Any], dict[str, Any], list[float], list[float]]:
    """Train a SmallCNN on ``ds``'s train split; returns (model, effective settings, metrics, mean, std)."""
    for split in ("train", "test"):
        if split not in ds.split_names:
            raise ZooError(f"demo models need train and test splits; {ds.name} has {list(ds.split_names)}.")
    train, test = ds.split("train"), ds.split("test")
    if not len(train) or not len(test):
        raise ZooError(f"demo models need images in both the train and test splits of {ds.name}.")
    rng = np.random.default_rng(settings.seed)
    if len(train) > settings.max_train:
        train = train.subset(np.sort(rng.choice(len(train), settings.max_train, replace=False)))
    mean, std = pixel_stats(train.images)
    std = [max(s, 1e-6) for s in std]
    # channels_last makes oneDNN's CPU convolutions about 1.5x faster here; the weights are saved contiguous.
    channels_last = torch.channels_last
    x = _normalised(train.images, mean, std).contiguous(memory_format=channels_last)
    x_test = _normalised(test.images, mean, std).contiguous(memory_format=channels_last)
    y, y_test = train.labels, test.labels

    steps_per_epoch = math.ceil(len(y) / settings.batch_size)
    epochs = _epochs_run(len(y), settings)
    torch.manual_seed(settings.seed)
    model = SmallCNN(ds.channels, ds.num_classes, settings.width).to(memory_format=channels_last)
    optimizer = torch.optim.AdamW(model.parameters(), lr=settings.lr, weight_decay=settings.weight_decay)
    schedule = torch.optim.lr_scheduler.OneCycleLR(
        optimizer, max_lr=settings.lr, total_steps=epochs * steps_per_epoch
    )
    order = torch.Generator().manual_seed(settings.seed)
    loss_sum = correct = 0.0
    for epoch in range(epochs):
        model.train()
        loss_sum = correct = 0.0
        for batch in torch.randperm(len(y), generator=order).split(settings.batch_size):
            logits = model(x[batch])
            loss = F.cross_entropy(logits, y[batch])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            schedule.step()
            loss_sum += float(loss.detach()) * len(batch)
            correct += int((logits.argmax(1) == y[batch]).sum())
        tick(f"{ds.name}: epoch {epoch + 1}/{epochs}, loss {loss_sum / len(y):.3f}")
    majority = float(torch.bincount(y_test, minlength=ds.num_classes).max())
    metrics = {
        "test_accuracy": _accuracy(model, x_test, y_test),
        "test_samples": len(y_test),
        "train_loss": loss_sum / len(y),
        "train_accuracy": correct / len(y),
        "majority_accuracy": majority / max(len(y_test), 1),
    }
    effective = {
        **asdict(settings),
        "epochs_run": epochs,
        "train_samples": len(y),
        "train_split": "train",
        "eval_split": "test",
        "optimizer": "AdamW",
        "schedule": "OneCycleLR",
        "loss": "cross_entropy",
        "augmentation": "none",
        "architecture": ARCHITECTURE,
    }
    return model.to(memory_format=torch.contiguous_format).eval(), effective, metrics, mean, std


def _load_cached(meta_path: Path, checkpoint: Path) -> tuple[ModelRecord, dict[str, Any]] | None:
    """The cached (record, activity) when both files exist and the checkpoint still matches its checksum."""
    if not (meta_path.is_file() and checkpoint.is_file()):
        return None
    try:
        meta = json.loads(meta_path.read_text())
        record = ModelRecord.from_properties(meta["record"], pretrained_on=meta.get("pretrained_on"))
    except (ValueError, KeyError, TypeError):
        return None
    if record.checksum != file_checksum(checkpoint):
        return None
    record.checkpoint = str(checkpoint)  # the cache folder may have moved
    return record, {**meta["activity"], "cached": True}


def _demo_record(
    model: SmallCNN,
    ds: ImageDataset,
    settings: DemoSettings,
    key: str,
    checkpoint: Path,
    digest: str,
    trained: tuple[dict[str, Any], dict[str, Any], list[float], list[float]],
) -> ModelRecord:
    """The model record of a freshly pretrained demo model (``trained``: effective settings, metrics,
    mean, std as ``_train`` returns them)."""
    effective, metrics, mean, std = trained
    width = settings.width
    return record_for_model(
        model,
        ARCHITECTURE,
        id=f"kgraft-demo.{ARCHITECTURE}.{dataset_id(ds.name)}.{key[:8]}",
        name=f"SmallCNN-w{width} on {ds.name}",
        input_size=(ds.channels, *ds.image_size),
        mean=mean,
        std=std,
        interpolation="bilinear",
        checkpoint=str(checkpoint),
        checksum=digest,
        source="kgraft-demo",
        version=key[:12],
        pretrained_on=ds.name,
        metrics=metrics,
        class_names=ds.class_names,
        arch_kwargs={"width": width},
        description=(
            f"SmallCNN (width {width}) pretrained by the kgraft demo on {ds.name} "
            f"({effective['train_samples']} training images, {effective['epochs_run']} epochs, CPU)."
        ),
        created=now(),
    )


def _pretrain(
    ds: ImageDataset,
    settings: DemoSettings,
    key: str,
    data_checksum: str,
    checkpoint: Path,
    meta_path: Path,
    tick: Callable[[str], None],
) -> tuple[ModelRecord, dict[str, Any]]:
    """Train one demo model, save its checkpoint and its cache entry (record and activity, written
    atomically), and return (record, activity)."""
    started, clock = now(), time.perf_counter()
    with _torch_threads(settings.threads):
        model, effective, metrics, mean, std = _train(ds, settings, tick)
    digest = save_checkpoint(model, checkpoint, metadata={"cache_key": key, "dataset": ds.name})
    seconds = time.perf_counter() - clock
    record = _demo_record(model, ds, settings, key, checkpoint, digest, (effective, metrics, mean, std))
    activity = {
        "kind": "pretraining",
        "settings": effective,
        "metrics": metrics,
        "status": "completed",
        "started": started,
        "ended": now(),
        "device": "cpu",
        "dataset": ds.name,
        "dataset_checksum": data_checksum,
        "seconds": round(seconds, 3),
        "cache_key": key,
    }
    tmp = meta_path.with_name(f".{meta_path.name}.tmp")
    meta = {"record": record.to_properties(), "pretrained_on": ds.name, "activity": activity}
    tmp.write_text(json.dumps(meta, indent=1, sort_keys=True))
    tmp.replace(meta_path)
    return record, {**activity, "cached": False}


def build_demo_zoo(
    out_dir: str | Path,
    datasets: dict[str, ImageDataset] | None = None,
    epochs: int = 3,
    seed: int = 0,
    progress: Progress | None = None,
    *,
    width: int = 16,
    max_train: int = 10_000,
    batch_size: int = 128,
    lr: float = 3e-3,
    min_steps: int = 200,
    threads: int = 1,
) -> list[tuple[ModelRecord, dict[str, Any]]]:
    """Pretrain (or load from ``out_dir``) one SmallCNN per dataset; return (record, activity) pairs.

    Each model trains on at most ``max_train`` train-split images (a seeded sample) for ``epochs`` epochs,
    or more on small sets so that it takes at least ``min_steps`` optimiser steps, on ``threads`` CPU
    threads, and is evaluated on the whole test split. The activity dict holds the Activity properties
    (``kind``, ``settings``, ``metrics``, ``status``, ``started``, ``ended``, ``device``) plus ``dataset``,
    ``dataset_checksum``, ``seconds``, ``cache_key`` and ``cached`` (True when the checkpoint came from
    the cache and nothing was trained).
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    datasets = default_demo_datasets() if datasets is None else datasets
    settings = DemoSettings(epochs, width, batch_size, lr, 5e-4, max_train, min_steps, seed, threads)
    total = sum(_epochs_run(_train_size(ds, settings), settings) for ds in datasets.values())
    done = 0

    def tick(message: str) -> None:
        nonlocal done
        done += 1
        if progress:
            progress(message, done, total)

    results = []
    for ds in datasets.values():
        data_checksum = checksum(ds)
        key = cache_key(data_checksum, settings)
        stem = f"{dataset_id(ds.name)}-{ARCHITECTURE}-{key[:12]}"
        checkpoint, meta_path = out / f"{stem}.safetensors", out / f"{stem}.json"
        cached = _load_cached(meta_path, checkpoint)
        if cached is None:
            results.append(_pretrain(ds, settings, key, data_checksum, checkpoint, meta_path, tick))
            continue
        done += _epochs_run(_train_size(ds, settings), settings)
        if progress:
            progress(f"{ds.name}: cached", done, total)
        results.append(cached)
    return results


__all__ = ["DemoSettings", "Progress", "build_demo_zoo", "cache_key", "default_demo_datasets"]

"""Training throughput of the fine-tuning engine against a plain PyTorch loop, in one run.

Same model, data, batch size, precision and preprocessing (uint8 batch -> float, grayscale repeated
to 3 channels where the model wants RGB, resized to the model's input size, normalised) on both sides:

- ``full``: every layer trains. Plain loop: AdamW + OneCycleLR, ``model.train()``. Engine: preset
  ``full`` (no frozen epochs, one rate).
- ``frozen body``: only the head trains. Plain loop: ``requires_grad=False`` on the body, nothing else
  (autograd still records the body's forward and batch-norm keeps updating). Engine: preset
  ``linear-probe``, i.e. the frozen prefix under ``no_grad`` in eval mode and the head trained on the
  body's features, computed once (``cache_frozen_features``); that one feature pass is counted.

Throughput is training images per second over all epochs (evaluation excluded on both sides; the engine's
wall time with its per-epoch evaluation and checkpoints is shown beside it). CPU: a SmallCNN on 28x28
Fashion-MNIST and a ResNet-18 at 32x32. GPU (when ``torch.cuda.is_available()``): ResNet-18 at 64, 128
and 224 pixels on Fashion-MNIST. Weights are random (speed does not depend on them). Prints one
markdown table with the machine named; writes only to a temporary folder.

    .venv/bin/python benchmarks/finetune_bench.py [--device cpu|cuda|all] [--epochs 2] [--quick]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from machine import cpu_name  # benchmarks/machine.py: run these scripts as files

from transfer.data import ImageDataset, derive, load_dataset
from transfer.finetune import finetune, settings_for
from transfer.finetune.data import Preprocess
from transfer.finetune.runtime import amp_dtype
from transfer.zoo import (
    ModelRecord,
    build_model,
    group_parameters,
    load_model,
    record_for_model,
    save_checkpoint,
)


@dataclass
class Workload:
    """One row group of the table: a model at one input size on some images."""

    device: str
    architecture: str
    side: int
    images: int
    batch_size: int
    precision: str


def machine() -> str:
    cpu = cpu_name()
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    text = (
        f"{cpu}, {os.cpu_count()} CPUs (load {load:.1f}), torch {torch.__version__} "
        f"({torch.get_num_threads()} threads)"
    )
    if torch.cuda.is_available():
        text += f"; GPU {torch.cuda.get_device_name(0)}"
    return text


def make_record(architecture: str, side: int, folder: Path) -> ModelRecord:
    """A record and checkpoint for ``architecture`` with random weights at ``side`` pixels, 10 classes."""
    channels = 1 if architecture == "smallcnn" else 3
    torch.manual_seed(0)
    model = build_model(architecture, 10, channels, side)
    path = folder / f"{architecture}-{side}.safetensors"
    digest = save_checkpoint(model, path)
    mean, std = ((0.2860,), (0.3530,)) if channels == 1 else ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))
    return record_for_model(
        model,
        architecture,
        id=f"bench.{architecture}.{side}",
        input_size=(channels, side, side),
        mean=mean,
        std=std,
        checkpoint=str(path),
        checksum=digest,
        class_names=[str(i) for i in range(10)],
    )


def plain_loop(
    record: ModelRecord, data: ImageDataset, w: Workload, epochs: int, frozen: bool, lr: float
) -> float:
    """Train images per second of a plain loop over the train split (no evaluation)."""
    device = torch.device(w.device)
    model = load_model(record).to(device)
    channels_last = device.type == "cuda"
    if channels_last:
        model.to(memory_format=torch.channels_last)
    groups = group_parameters(model, record.layer_groups)
    if frozen:
        for params in groups[:-1]:
            for p in params:
                p.requires_grad_(False)
    trainable = [p for p in model.parameters() if p.requires_grad]
    prep = Preprocess(record, data.channels, channels_last).to(device)
    train = data.split("train")
    loader = torch.utils.data.DataLoader(
        torch.utils.data.TensorDataset(train.images, train.labels),
        batch_size=w.batch_size,
        shuffle=True,
        pin_memory=device.type == "cuda",
        generator=torch.Generator().manual_seed(0),
    )
    optimizer = torch.optim.AdamW(trainable, lr=lr, weight_decay=0.01)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=lr, total_steps=epochs * len(loader))
    dtype = amp_dtype(w.precision, device)
    scaler = torch.amp.GradScaler(device.type, enabled=dtype == torch.float16)
    size = (record.input_size[1], record.input_size[2])
    model.train()
    seen, start = 0, _sync_time(device)
    for _ in range(epochs):
        for x, y in loader:
            x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
            with torch.autocast(device.type, dtype=dtype or torch.float32, enabled=dtype is not None):
                loss = F.cross_entropy(model(prep(x, size)).float(), y)
            optimizer.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            scaler.step(optimizer)
            scaler.update()
            schedule.step()
            seen += len(y)
    return seen / (_sync_time(device) - start)


def _sync_time(device: torch.device) -> float:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return time.perf_counter()


def engine_run(
    record: ModelRecord, data: ImageDataset, w: Workload, epochs: int, frozen: bool, lr: float, out: Path
) -> tuple[float, float]:
    """(train images per second, wall seconds of the whole call) of ``finetune``."""
    preset = "linear-probe" if frozen else "full"
    settings = settings_for(
        preset,
        epochs=epochs,
        batch_size=w.batch_size,
        base_lr=lr,
        precision=w.precision,
        channels_last=w.device == "cuda",
        cache_frozen_features=True,
    )
    start = time.perf_counter()
    result = finetune(record, data, settings, out_dir=out)
    wall = time.perf_counter() - start
    n_train = len(data.split("train"))  # every epoch trains on all of them (one process)
    train_seconds = sum(n_train / e.images_per_second for e in result.epochs)
    return len(result.epochs) * n_train / train_seconds, wall


def workloads(device: str, quick: bool) -> list[Workload]:
    if device == "cpu":
        n = 512 if quick else 2048
        return [
            Workload("cpu", "smallcnn", 28, n, 64, "fp32"),
            Workload("cpu", "resnet18", 32, n // 16, 32, "fp32"),
        ]
    n = 2048 if quick else 8192
    return [
        Workload("cuda", "resnet18", 64, n, 128, "auto"),
        Workload("cuda", "resnet18", 128, n, 128, "auto"),
        Workload("cuda", "resnet18", 224, n // 2, 128, "auto"),
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", choices=["cpu", "cuda", "all"], default="all")
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--quick", action="store_true", help="fewer images (a smoke run)")
    parser.add_argument("--repeats", type=int, default=1, help="runs per side; the best counts")
    args = parser.parse_args()
    devices = ["cpu", "cuda"] if args.device == "all" else [args.device]
    if "cuda" in devices and not torch.cuda.is_available():
        devices.remove("cuda")
    fashion = load_dataset("fashion-mnist")
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        for device in devices:
            for w in workloads(device, args.quick):
                data = derive(fashion, "subset", {"n": int(w.images / 0.85) + 1}, name=f"fashion-{w.images}")
                record = make_record(w.architecture, w.side, folder)
                precision = {None: "fp32", torch.bfloat16: "bf16", torch.float16: "fp16"}[
                    amp_dtype(w.precision, torch.device(device))
                ]
                plain_loop(
                    record, derive(data, "subset", {"n": min(4 * w.batch_size, len(data))}), w, 1, False, 1e-3
                )  # warm-up
                for frozen in (False, True):
                    lr = 1e-2 if frozen else 1e-3
                    plain = engine = wall = 0.0
                    for repeat in range(args.repeats):  # alternate, keep the best: shared machines are noisy
                        plain = max(plain, plain_loop(record, data, w, args.epochs, frozen, lr))
                        out = folder / f"{device}-{w.architecture}-{w.side}-{frozen}-{repeat}"
                        speed, seconds = engine_run(record, data, w, args.epochs, frozen, lr, out)
                        if speed > engine:
                            engine, wall = speed, seconds
                    rows.append((w, precision, "frozen body" if frozen else "full", plain, engine, wall))
                    print(f"  done: {device} {w.architecture} {w.side}px {rows[-1][2]}", flush=True)
    print(f"\nMachine: {machine()}\n")
    print(
        f"{args.epochs} epochs each, best of {args.repeats}, Fashion-MNIST train images, training throughput "
        "(evaluation excluded).\n"
    )
    print(
        "| device | model | input | images | batch | precision | mode | plain loop img/s | engine img/s "
        "| engine / plain | engine wall s (with eval + checkpoints) |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for w, precision, mode, plain, engine, wall in rows:
        print(
            f"| {w.device} | {w.architecture} | {w.side}px | {w.images} | {w.batch_size} | {precision} "
            f"| {mode} | {plain:,.0f} | {engine:,.0f} | {engine / plain:.2f}x | {wall:.1f} |"
        )


if __name__ == "__main__":
    main()

"""What recording a Lightning fit in the graph costs: ``KgraftCallback`` against the same fit without it.

The fit: the ccexam MNIST CNN (421k parameters, every layer trained) fine-tuned on sklearn digits'
training split (resized to 28x28), SGD, batch 64, a few epochs, CPU, Lightning's progress bar, logger,
checkpointing and sanity check off on both sides. With the callback, the run is recorded in a LadybugDB
file the way a user would: the source and target are registered once beforehand; each fit then writes
the Activity at the start, its metrics after every epoch and the outcome at the end.

Rounds alternate (without, with, with, without, ...) in one process, so drift in the machine's load
falls on both sides; each round fits a fresh copy of the same weights with the same seed. Prints the
median wall time of a fit on each side and their ratio, and, measured inside the callback's hooks, its
cost per training step (the per-epoch writes spread over the epoch's steps) and its one-off cost per
fit (the first and last writes), with the machine named.

    .venv/bin/python benchmarks/callback_overhead.py [--rounds 8] [--epochs 3]
"""

from __future__ import annotations

import argparse
import copy
import logging
import statistics
import tempfile
import time
from pathlib import Path
from typing import ClassVar

import lightning.pytorch as pl
import torch
import torch.nn.functional as F
from machine import cpu_name  # benchmarks/machine.py: run these scripts as files
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from kg import open_store
from transfer.data import ImageDataset, load_dataset
from transfer.finetune.record import ensure_dataset, ensure_source_model
from transfer.integrations.lightning import KgraftCallback
from transfer.zoo import ModelRecord, ccexam_records, load_model


def tensors(ds: ImageDataset, record: ModelRecord, split: str) -> TensorDataset:
    """One split resized to the source's input and normalised with its statistics."""
    mask = ds.split_mask(split)
    x = F.interpolate(ds.images[mask].float() / 255.0, size=record.input_size[1:], mode="bilinear")
    return TensorDataset((x - record.mean[0]) / record.std[0], ds.labels[mask])


class TimedCallback(KgraftCallback):
    """``KgraftCallback`` with the seconds spent inside each of its hooks added up: its own cost,
    measured directly, beside the noisier difference of two wall times."""

    seconds: ClassVar[dict[str, float]] = {"start": 0.0, "epoch": 0.0, "end": 0.0}

    def _timed(self, kind: str, hook, *args) -> None:
        tick = time.perf_counter()
        hook(*args)
        TimedCallback.seconds[kind] += time.perf_counter() - tick

    def on_train_start(self, *args) -> None:
        self._timed("start", super().on_train_start, *args)

    def on_train_epoch_end(self, *args) -> None:
        self._timed("epoch", super().on_train_epoch_end, *args)

    def on_fit_end(self, *args) -> None:
        self._timed("end", super().on_fit_end, *args)


class Classifier(pl.LightningModule):
    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net = net

    def training_step(self, batch, _):
        x, y = batch
        loss = nn.functional.cross_entropy(self.net(x), y)
        self.log("train_loss", loss)
        return loss

    def validation_step(self, batch, _):
        x, y = batch
        self.log("val_acc", (self.net(x).argmax(1) == y).float().mean())

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.02, momentum=0.9)


def fit(net: nn.Module, train, test, epochs: int, callbacks: list) -> tuple[float, int]:
    """Seconds for one ``trainer.fit`` and the training steps it took."""
    torch.manual_seed(0)
    trainer = pl.Trainer(
        max_epochs=epochs,
        accelerator="cpu",
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
        callbacks=callbacks,
    )
    loaders = DataLoader(train, batch_size=64, shuffle=True), DataLoader(test, batch_size=512)
    tick = time.perf_counter()
    trainer.fit(Classifier(copy.deepcopy(net)), *loaders)
    return time.perf_counter() - tick, trainer.global_step


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=8, help="rounds per side (alternating)")
    parser.add_argument("--epochs", type=int, default=3)
    args = parser.parse_args()
    logging.getLogger("lightning.pytorch").setLevel(logging.WARNING)

    record = next(r for r in ccexam_records() if r.id == "ccexam.mnist")
    digits = load_dataset("digits")
    train, test = tensors(digits, record, "train"), tensors(digits, record, "test")
    net = load_model(record).train()
    with tempfile.TemporaryDirectory() as tmp, open_store(f"embedded:{Path(tmp) / 'graph.lbug'}") as store:
        ensure_dataset(store, digits, None)
        ensure_source_model(store, record)

        def recorded() -> list:
            return [TimedCallback(store, source=record.id, target="digits", preset="full")]

        fit(net, train, test, 1, [])  # warm-up: first-call costs out of the timings
        fit(net, train, test, 1, recorded())
        TimedCallback.seconds = dict.fromkeys(TimedCallback.seconds, 0.0)
        times: dict[str, list[float]] = {"without": [], "with": []}
        steps = 0
        for i in range(args.rounds):
            order = ("without", "with") if i % 2 == 0 else ("with", "without")
            for side in order:
                seconds, steps = fit(net, train, test, args.epochs, recorded() if side == "with" else [])
                times[side].append(seconds)
        runs = store.query("MATCH ()-[t:TRANSFERRED_TO]->() RETURN count(t) AS n")[0]["n"]

    without, with_ = statistics.median(times["without"]), statistics.median(times["with"])
    pairs = [w / o for w, o in zip(times["with"], times["without"], strict=True)]
    print(f"machine: {cpu_name()}, {torch.get_num_threads()} torch threads; torch {torch.__version__}, "
          f"lightning {pl.__version__}")  # fmt: skip
    print(f"{args.rounds} rounds per side, {args.epochs} epochs = {steps} training steps per fit, "
          f"{runs} runs recorded")  # fmt: skip
    print("| fit | median s | per step ms |")
    print("|---|---:|---:|")
    print(f"| without callback | {without:.3f} | {1000 * without / steps:.2f} |")
    print(f"| with KgraftCallback (LadybugDB) | {with_:.3f} | {1000 * with_ / steps:.2f} |")
    print(f"ratio of medians {with_ / without:.4f}; median of round ratios {statistics.median(pairs):.4f}; "
          f"overhead per step {1000 * (with_ - without) / steps:+.2f} ms")  # fmt: skip
    inside = {k: v / args.rounds for k, v in TimedCallback.seconds.items()}  # per fit
    step = without / steps
    per_step = inside["epoch"] / steps
    once = inside["start"] + inside["end"]
    print(
        f"inside the hooks, per fit: start {1000 * inside['start']:.1f} ms, {args.epochs} epoch ends "
        f"{1000 * inside['epoch']:.1f} ms, end {1000 * inside['end']:.1f} ms"
    )
    print(
        f"per training step (the epoch-end writes spread over the epoch's steps): {1000 * per_step:.2f} ms "
        f"= {100 * per_step / step:.2f}% of a step; once per fit (start + end): "
        f"{1000 * once:.0f} ms = {once / step:.1f} steps"
    )


if __name__ == "__main__":
    main()

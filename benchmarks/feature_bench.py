"""Feature extraction against plain inference, same model, images and batch size, in one run.

The probe's extraction (``transfer.probe.features.extract_features``, cache off) adds hooks that pool
every layer group and keep the head's input; the baseline is a bare ``model(x)`` loop over the same
preprocessed batches. Aim: extraction within 10% of plain inference throughput.
Usage: ``python benchmarks/feature_bench.py [--arch smallcnn|resnet18] [--n 4000] [--size 28]``.
"""

from __future__ import annotations

import argparse
import os
import platform
import time

import torch

from transfer.data.derive import derive
from transfer.data.sources import load_dataset
from transfer.finetune.data import Preprocess
from transfer.probe.features import extract_features
from transfer.zoo.architectures import build_model
from transfer.zoo.loading import record_for_model


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--arch", default="smallcnn")
    parser.add_argument("--n", type=int, default=4000)
    parser.add_argument("--size", type=int, default=28)
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    ds = derive(load_dataset("fashion-mnist"), "subset", {"n": args.n}, name="bench")
    channels = 1 if args.arch == "smallcnn" else 3
    model = build_model(args.arch, 10, in_channels=channels, image_size=args.size).eval()
    record = record_for_model(
        model,
        args.arch,
        id="bench",
        input_size=(channels, args.size, args.size),
        mean=(0.5,) * channels,
        std=(0.25,) * channels,
    )
    prep = Preprocess(record, ds.channels)
    images = ds.images

    @torch.inference_mode()
    def plain() -> None:
        for start in range(0, len(images), args.batch):
            model(prep(images[start : start + args.batch], (args.size, args.size)))

    def probe() -> None:
        extract_features(model, record, ds, n=len(ds), split=None, batch_size=args.batch, cache_dir=None)

    def best(fn) -> float:
        times = []
        for _ in range(args.repeats):
            start = time.perf_counter()
            fn()
            times.append(time.perf_counter() - start)
        return min(times)

    plain()  # warm-up
    t_plain, t_probe = best(plain), best(probe)
    print(
        f"machine: {platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__}, "
        f"{torch.get_num_threads()} threads, load {os.getloadavg()[0]:.2f}"
    )
    print("| model | input | images | plain inference img/s | feature extraction img/s | ratio |")
    print("|---|---|---|---:|---:|---:|")
    print(
        f"| {args.arch} | {args.size} px | {len(images):,} | {len(images) / t_plain:,.0f} "
        f"| {len(images) / t_probe:,.0f} | {t_plain / t_probe:.2f}x |"
    )


if __name__ == "__main__":
    main()

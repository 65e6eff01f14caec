"""Feature extraction against plain inference, same model, images and batch size, in one run.

The probe's extraction (``transfer.probe.features.extract_features``, cache off) adds hooks that pool
every layer group and keep the head's input; the baseline is a bare ``model(x)`` loop over the same
preprocessed batches. Aim: extraction within 10% of plain inference throughput.

Other processes share the machine, so the two are timed alternately (plain, extraction, plain, ...)
for ``--rounds`` rounds after one warm-up each: a change of load hits both alike. The table gives the
median and the best round of each and the ratio of the medians (extraction throughput / plain); the
load average is printed at the start and the end.
Usage: ``python benchmarks/feature_bench.py [--arch smallcnn|resnet18] [--n 4000] [--size 28]``.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
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
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
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

    cpu: dict[str, float] = {"plain": 0.0, "probe": 0.0}

    def timed(fn) -> float:
        start, start_cpu = time.perf_counter(), time.process_time()
        fn()
        cpu[fn.__name__] += time.process_time() - start_cpu
        return time.perf_counter() - start

    load_start = os.getloadavg()[0]
    plain(), probe()  # warm-up
    t_plain: list[float] = []
    t_probe: list[float] = []
    for _ in range(args.rounds):
        t_plain.append(timed(plain))
        t_probe.append(timed(probe))
    print(
        f"machine: {platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__}, "
        f"{torch.get_num_threads()} threads, load {load_start:.2f} at start, {os.getloadavg()[0]:.2f} at end"
    )
    n = len(images)
    med_plain, med_probe = statistics.median(t_plain), statistics.median(t_probe)
    print(
        "| model | input | images | batch | rounds | plain img/s median (best) "
        "| extraction img/s median (best) | ratio of medians |"
    )
    print("|---|---|---:|---:|---:|---:|---:|---:|")
    print(
        f"| {args.arch} | {args.size} px | {n:,} | {args.batch} | {args.rounds} "
        f"| {n / med_plain:,.0f} ({n / min(t_plain):,.0f}) | {n / med_probe:,.0f} ({n / min(t_probe):,.0f}) "
        f"| {med_plain / med_probe:.2f}x |"
    )
    ratios = " ".join(f"{p / q:.2f}" for p, q in zip(t_probe, t_plain, strict=True))
    print(f"per-round extraction/plain time ratios: {ratios}")
    # CPU seconds barely depend on how many other processes share the cores (wall seconds do)
    print(
        f"process CPU time over all rounds: plain {cpu['plain']:.2f} s, extraction {cpu['probe']:.2f} s, "
        f"ratio (plain / extraction) {cpu['plain'] / cpu['probe']:.2f}x"
    )


if __name__ == "__main__":
    main()

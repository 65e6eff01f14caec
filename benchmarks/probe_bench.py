"""Time the D x D transferability estimators on CPU: LogME, SFDA and the shrinkage H-score.

Workload: 10,000 x 2,048 float32 features with 100 classes (a ResNet-50 penultimate layer on a
mid-sized target set), class-structured so the fixed points and shrinkages behave as on real data.
Prints one markdown table with the machine and its load average beside it; writes nothing. After
one warm-up of each, the rows are timed in turn, ``--repeats`` rounds (Gram, LogME, SFDA, H-score,
all three, Gram, LogME, ...), so a change of load hits every row alike; each row gives the best and
the median wall-clock seconds and the best process CPU seconds (which the other processes on a
shared machine barely change). The first row times one N x D^2 Gram product, the floor under all
three, so figures from a busy shared machine can be read relative to it; the last row runs the
three on one shared Gram product, as ``estimate_all`` (and so ``kgraft probe``) does.

    .venv/bin/python benchmarks/probe_bench.py [--samples 10000] [--dims 2048] [--classes 100]
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import time
from collections.abc import Callable

import torch
from machine import cpu_name  # benchmarks/machine.py: run these scripts as files

from transfer.probe.estimators import hscore, logme, sfda
from transfer.probe.estimators.hscore import hscore_from_moments
from transfer.probe.estimators.inputs import check_inputs
from transfer.probe.estimators.linalg import gram
from transfer.probe.estimators.logme import logme_from_moments
from transfer.probe.estimators.moments import centred_moments
from transfer.probe.estimators.sfda import sfda_from_moments


def make_features(samples: int, dims: int, classes: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Non-negative, non-centred, class-structured float32 features, like pooled ReLU activations."""
    generator = torch.Generator().manual_seed(seed)
    labels = torch.arange(samples) % classes
    centres = torch.randn(classes, dims, generator=generator) * 0.1
    features = torch.relu(centres[labels] + torch.randn(samples, dims, generator=generator))
    return features.float(), labels


def processor_name() -> str:
    """The CPU model and the architecture."""
    return f"{cpu_name()} ({platform.machine()})"


def load_average() -> float:
    return os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")


def shared_moments(features: torch.Tensor, labels: torch.Tensor) -> float:
    """LogME + H-score + SFDA on one Gram product, as ``estimate_all`` runs them when N >= 2 D."""
    moments = centred_moments(features, check_inputs(features, labels))
    return logme_from_moments(moments).score + hscore_from_moments(moments) + sfda_from_moments(moments)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=10_000)
    parser.add_argument("--dims", type=int, default=2_048)
    parser.add_argument("--classes", type=int, default=100)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()

    features, labels = make_features(args.samples, args.dims, args.classes)
    runs: dict[str, Callable[[], float]] = {
        # the floor: every D x D estimator needs at least one N x D^2 product (SFDA needs two)
        "reference: one Gram product F^T F": lambda: float(gram(features)[0, 0]),
        "LogME": lambda: logme(features, labels),
        "SFDA": lambda: sfda(features, labels),
        "H-score (shrinkage)": lambda: hscore(features, labels),
        "all three, one shared Gram (sum of scores)": lambda: shared_moments(features, labels),
    }
    print(
        f"Machine: {processor_name()}, {os.cpu_count()} CPUs, torch {torch.__version__} "
        f"({torch.get_num_threads()} threads), Python {platform.python_version()}, "
        f"load average {load_average():.2f} at start"
    )
    print(f"Workload: {args.samples} x {args.dims} float32 features, {args.classes} classes, CPU\n")
    values = {name: fn() for name, fn in runs.items()}  # warm-up: allocations and library loading
    wall: dict[str, list[float]] = {name: [] for name in runs}
    cpu: dict[str, list[float]] = {name: [] for name in runs}
    for _ in range(args.repeats):
        for name, fn in runs.items():
            start, start_cpu = time.perf_counter(), time.process_time()
            values[name] = fn()
            wall[name].append(time.perf_counter() - start)
            cpu[name].append(time.process_time() - start_cpu)
    print(f"| estimator | best of {args.repeats} (s) | median (s) | best CPU time (s) | score |")
    print("|---|---:|---:|---:|---:|")
    for name in runs:
        print(
            f"| {name} | {min(wall[name]):.2f} | {statistics.median(wall[name]):.2f} "
            f"| {min(cpu[name]):.2f} | {values[name]:.4f} |"
        )
    print(f"\nLoad average {load_average():.2f} at the end (other processes share these cores).")


if __name__ == "__main__":
    main()

"""Does the graph's advice help? ``auto`` settings against the fixed presets on the demo zoo's targets.

For a few (source, target) pairs of the local demo zoo that each stand for one kind of transfer (an
input-level shift, a label shift, an imbalanced target, another domain), fine-tune the same source
with ``auto`` (the policy fed with the graph's probe results and the GNN scorer's compatibility for
the pair) and with the presets ``fastai``, ``full`` and ``linear-probe``, on equal terms: the same
epoch budget, batch size, seeds, capped training set and test set. Reports target test accuracy,
forgetting of the source task (source-task test accuracy with its original head, before minus
after) and wall time, per pair and on average, as one markdown table with the machine named.

The graph (demo data, zoo, probes, one scorer) is built once and cached in ``--cache`` (default
``.kgraft/bench-policy``); runs are NOT recorded in it, so every rerun sees the same scorer and the
figures do not drift with the benchmark's own outcomes. Fine-tuning writes only to a temporary folder.

    nice -n 10 .venv/bin/python benchmarks/policy_bench.py [--epochs 3] [--seeds 0 1] [--train-cap 4000]
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import statistics
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import torch
from machine import cpu_name  # benchmarks/machine.py: run these scripts as files

from kg import open_store
from ontology.vocab import Label
from transfer.data.base import ImageDataset
from transfer.demo import build_zoo, register_demo_data
from transfer.finetune.engine import finetune
from transfer.finetune.settings import FinetuneSettings, settings_for, with_changes
from transfer.policy import inputs_from_graph, recommend_settings
from transfer.probe.run import probe
from transfer.register import materialise
from transfer.source_choice import pair_score
from transfer.zoo.record import ModelRecord

# (source model's pretraining data, target, the kind of transfer it stands for)
PAIRS = [
    ("fashion-mnist", "fashion-mnist-inverted", "input-level shift (inverted)"),
    ("fashion-mnist-rot90", "fashion-mnist", "input-level shift (rotated source)"),
    ("fashion-mnist", "fashion-mnist-tops", "label shift (5-class subset)"),
    ("fashion-mnist", "fashion-mnist-imbalanced-small", "imbalanced target (10x)"),
    ("fashion-mnist", "animal-mnist", "other domain (silhouettes)"),
]
SETTINGS = ("auto", "fastai", "full", "linear-probe")


def machine() -> str:
    """CPU model, core count, load average and torch threads."""
    cpu = cpu_name()
    load = " / ".join(f"{v:.1f}" for v in os.getloadavg())
    threads = torch.get_num_threads()
    return f"{cpu}, {os.cpu_count()} CPUs (load {load}), torch {torch.__version__}, {threads} thread(s)"


def cap(ds: ImageDataset, limits: dict[str, int], seed: int = 0) -> ImageDataset:
    """A random sample of at most ``limits[split]`` images per split (class shares kept in expectation)."""
    rng = np.random.default_rng(seed)
    splits = ds.splits.numpy()
    keep = []
    for i, name in enumerate(ds.split_names):
        idx = np.flatnonzero(splits == i)
        limit = limits.get(name)
        if limit is not None and len(idx) > limit:
            idx = rng.choice(idx, limit, replace=False)
        keep.append(idx)
    return ds.subset(np.sort(np.concatenate(keep)))


def source_model(store, data_id: str) -> str:
    """The zoo model pretrained on ``data_id``."""
    (row,) = store.query(
        "MATCH (m:Model)-[:TRAINED_ON]->(:Dataset {id: $d}) WHERE m.kind = $k AND m.source = $s "
        "RETURN m.id AS id",
        {"d": data_id, "k": "classifier", "s": "kgraft-demo"},
    )
    return row["id"]


def prepare(cache: Path, probe_n: int) -> tuple[str, dict[tuple[str, str], dict]]:
    """Build (or reuse) the graph, zoo, probes and scorer; return the store URI and per-pair facts."""
    from gnn.train import latest_scorer, train_scorer

    uri = f"embedded:{cache / 'graph.lbug'}"
    facts: dict[tuple[str, str], dict] = {}
    with open_store(uri) as store:
        result = register_demo_data(store)
        build_zoo(store, result, cache / "zoo")
        for source_data, target, _ in PAIRS:
            model_id = source_model(store, source_data)
            probed = store.query(
                "MATCH (:Model {id: $m})-[r:SCORED_ON]->(:Dataset {id: $d}) WHERE r.kind = $k RETURN r.kind",
                {"m": model_id, "d": target, "k": "shift_type"},
            )
            if not probed:
                print(f"probing {model_id} on {target}", flush=True)
                probe(store, model_id, target, n=probe_n, out_dir=cache / "probes")
        if latest_scorer(store) is None:
            print("training the GNN scorer", flush=True)
            train_scorer(store, cache / "scorers", seed=0)
        for source_data, target, _ in PAIRS:
            model_id = source_model(store, source_data)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                compatibility, uncertainty, basis = pair_score(store, model_id, target)
            facts[(source_data, target)] = {
                "model": model_id,
                "compatibility": compatibility,
                "uncertainty": uncertainty,
                "basis": basis,
            }
    return uri, facts


def auto_settings(store, model_id: str, target: str, fact: dict, epochs: int, train_size: int):
    """The policy's settings for the pair, told the training-set size actually used."""
    inputs = inputs_from_graph(
        store,
        model_id,
        target,
        epochs=epochs,
        compatibility=fact["compatibility"],
        uncertainty=fact["uncertainty"],
    )
    inputs = dataclasses.replace(inputs, target_train_size=train_size)
    return recommend_settings(inputs)


def run_one(
    record: ModelRecord,
    target_ds: ImageDataset,
    source_ds: ImageDataset,
    settings: FinetuneSettings,
    work: Path,
) -> dict:
    start = time.perf_counter()
    result = finetune(
        record,
        target_ds,
        settings,
        out_dir=work,
        source_dataset=source_ds,
        source_dataset_id=source_ds.name,
    )
    return {
        "accuracy": float(result.accuracy),
        "forgetting": float(result.forgetting) if result.forgetting is not None else float("nan"),
        "seconds": time.perf_counter() - start,
    }


def mean(values: list[float]) -> float:
    return statistics.fmean(values) if values else float("nan")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cache", type=Path, default=Path(".kgraft/bench-policy"))
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    parser.add_argument("--train-cap", type=int, default=4000)
    parser.add_argument("--test-cap", type=int, default=2000)
    parser.add_argument("--probe-samples", type=int, default=500)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--pairs", type=int, default=len(PAIRS), help="Use only the first N pairs.")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    clock = time.perf_counter()
    uri, facts = prepare(args.cache, args.probe_samples)
    limits = {"train": args.train_cap, "test": args.test_cap, "val": args.test_cap}
    rows: list[dict] = []
    decisions: dict[str, str] = {}
    with open_store(uri, read_only=True) as store, tempfile.TemporaryDirectory() as tmp:
        for source_data, target, kind in PAIRS[: args.pairs]:
            fact = facts[(source_data, target)]
            record = ModelRecord.from_properties(store.node(Label.MODEL, fact["model"]))
            target_ds = cap(materialise(store, target), limits)
            source_ds = cap(materialise(store, source_data), {"train": 0, "test": args.test_cap})
            train_size = int((target_ds.splits == target_ds.split_names.index("train")).sum())
            auto, why = auto_settings(store, fact["model"], target, fact, args.epochs, train_size)
            decisions[target] = ", ".join(
                f"{d.setting}={d.value}"
                for d in why
                if d.setting not in ("normalisation", "class_balance_beta")
            )
            for name in SETTINGS:
                for seed in args.seeds:
                    base = auto if name == "auto" else settings_for(name, epochs=args.epochs)
                    settings = with_changes(base, seed=seed)
                    print(f"{kind}: {name} seed {seed}", flush=True)
                    out = run_one(
                        record, target_ds, source_ds, settings, Path(tmp) / f"{target}-{name}-{seed}"
                    )
                    rows.append({"pair": kind, "target": target, "setting": name, "seed": seed, **out})
    print()
    print(f"Machine: {machine()}")
    print(
        f"Budget: {args.epochs} epochs, batch 64, seeds {args.seeds}, train cap {args.train_cap}, "
        f"test cap {args.test_cap}; source: the demo zoo's SmallCNN; total wall time "
        f"{time.perf_counter() - clock:.0f} s"
    )
    print()
    print("| pair (source -> target) | setting | target accuracy | forgetting | wall s / run |")
    print("|---|---|---|---|---|")
    for source_data, target, kind in PAIRS[: args.pairs]:
        for name in SETTINGS:
            sel = [r for r in rows if r["target"] == target and r["setting"] == name]
            acc = [r["accuracy"] for r in sel]
            spread = f" ± {statistics.pstdev(acc):.3f}" if len(acc) > 1 else ""
            print(
                f"| {kind}: {source_data} -> {target} | {name} | {mean(acc):.3f}{spread} | "
                f"{mean([r['forgetting'] for r in sel]):.3f} | {mean([r['seconds'] for r in sel]):.1f} |"
            )
    print("| **mean over pairs** | | | | |")
    for name in SETTINGS:
        sel = [r for r in rows if r["setting"] == name]
        print(
            f"| | {name} | {mean([r['accuracy'] for r in sel]):.3f} | "
            f"{mean([r['forgetting'] for r in sel]):.3f} | {mean([r['seconds'] for r in sel]):.1f} |"
        )
    print()
    wins = 0
    for _, target, _ in PAIRS[: args.pairs]:
        a = mean([r["accuracy"] for r in rows if r["target"] == target and r["setting"] == "auto"])
        f = mean([r["accuracy"] for r in rows if r["target"] == target and r["setting"] == "fastai"])
        wins += a >= f
    print(f"auto at least as accurate as fastai on {wins} of {args.pairs} pairs.")
    print()
    print("What auto chose (compatibility from the scorer, basis in brackets):")
    for source_data, target, _ in PAIRS[: args.pairs]:
        fact = facts[(source_data, target)]
        c = fact["compatibility"]
        score = f"{c:.2f} [{fact['basis']}]" if c is not None else "none"
        print(f"- {source_data} -> {target}: compatibility {score}; {decisions[target]}")


if __name__ == "__main__":
    main()

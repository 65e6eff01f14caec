"""The local zoo, measured here: fine-tune every demo-zoo source on every target, probe every pair, then
judge the GNN scorer leave-one-target-out on that real matrix against each estimator alone.

1. Registers the demo data (``transfer.demo.register_demo_data``: Fashion-MNIST, Animal-MNIST, digits
   and six controlled variants, with lineage, domains, concepts and biases) in a LadybugDB store, and
   the zoo (``build_zoo``: a SmallCNN pretrained here on each dataset named by ``--sources``, by
   default every registered one, so every target has a source trained on its own data; and the three
   published ccexam digit CNNs). The demo itself pretrains five (``transfer.demo.ZOO_SOURCES``).
2. Targets: the registered datasets, each capped to ``--cap`` images by a stratified ``subset``
   derivation (recorded DERIVED_FROM its parent, so the graph knows the lineage) when it is larger.
3. Every (source, target) pair is fine-tuned with the normal engine (``transfer.finetune.engine.finetune``,
   the ``fastai`` preset, ``--epochs`` epochs, one CPU thread) once per seed in ``--seeds`` and each
   run recorded by its normal path (Activity, fine-tuned Model, TRANSFERRED_TO with the test
   accuracy; the graph builder averages a pair's runs, which takes the seed noise of short runs out
   of the ground truth), and probed once
   (``transfer.probe.run.probe``: LogME, LEEP, NCE, H-score, SFDA, k-NN, linear probe as SCORED_ON).
4. ``gnn.evaluate.loto`` on the graph: GNN vs mean-z, mean-z+seen, near-z+seen, reported, gbr and each
   estimator alone; the aim is a mean weighted tau at least 0.1 above the best single estimator.

Everything is cached under ``--cache`` (the store, the zoo checkpoints, the runs): a finished pair is
recognised in the store and not trained or probed again, so a rerun only re-evaluates.

The models that the fine-tuning runs produce (source ``kgraft-finetune``: TRAINED_ON the target,
FINETUNED_FROM the source, their test accuracy in their metrics) carry the outcomes themselves, so the
evaluation drops them from the graph; otherwise the held-out target's outcomes would leak through them.

Usage: ``python benchmarks/zoo_transfer.py [--cache DIR] [--sources all] [--seeds 0,1,2] [--cap 4000]
[--epochs 2] [--probe-n 500] [--ensemble 4] [--gnn-epochs 300] [--gnn-seed 0] [--skip-eval]``.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import statistics
import sys
import time
import warnings
from pathlib import Path

import torch
from machine import cpu_name  # benchmarks/machine.py: run these scripts as files

from gnn.builder import ESTIMATOR_KINDS, build_hetero
from gnn.evaluate import LotoResult, loto
from gnn.model import GnnConfig
from gnn.train import TrainConfig
from kg import GraphStore, open_store
from ontology.vocab import Label
from transfer.data.derive import derive
from transfer.dataset_similarity import find_similar
from transfer.demo import ROOTS, VARIANTS, ZOO_SOURCES, build_zoo, register_demo_data
from transfer.finetune.checkpoint import checkpoint_file
from transfer.finetune.engine import finetune
from transfer.finetune.settings import settings_for
from transfer.probe.run import probe
from transfer.register import register_dataset
from transfer.zoo.record import ModelRecord

DEFAULT_CACHE = Path.home() / ".cache" / "kgraft" / "zoo-transfer"
TUNED_SOURCE = "kgraft-finetune"
AGENT = "kgraft zoo_transfer benchmark"
DEMO_DATASETS = [*ROOTS, *(v[0] for v in VARIANTS)]
"""Every dataset the demo registers: the roots and their controlled variants."""


def machine() -> str:
    cpu = cpu_name()
    load = os.getloadavg()
    return (
        f"{cpu}, {os.cpu_count()} cores, load {load[0]:.1f} / {load[1]:.1f} / {load[2]:.1f}, "
        f"Python {platform.python_version()}, torch {torch.__version__} (CPU)"
    )


def fmt(x: float) -> str:
    return "n/a" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.3f}"


def register_targets(store: GraphStore, result, cap: int) -> dict[str, tuple[str, object]]:
    """Target id -> (display name, dataset): every demo dataset, capped to ``cap`` images when larger."""
    targets = {}
    for name in DEMO_DATASETS:
        parent = result.datasets[name]
        ds = result.loaded[parent]
        if len(ds) <= cap:
            targets[parent] = (name, ds)
            continue
        capped = derive(ds, "subset", {"n": cap}, seed=0, name=f"{name}-n{cap}")
        reg = register_dataset(store, capped, derived_from=parent, agent=AGENT)
        targets[reg.id] = (name, capped)
    return targets


def outcomes(store: GraphStore, source: str, target: str, preset: str, epochs: int) -> dict[int, float]:
    """Seed -> recorded accuracy of the finished runs of this pair with these settings."""
    rows = store.query(
        "MATCH (:Model {id: $s})-[t:TRANSFERRED_TO]->(:Dataset {id: $d}) WHERE t.preset = $p "
        "MATCH (a:Activity {id: t.activity}) RETURN t.accuracy AS accuracy, a.settings AS settings",
        {"s": source, "d": target, "p": preset},
    )
    found: dict[int, float] = {}
    for row in rows:
        settings = row["settings"] or {}
        if isinstance(settings, str):
            settings = json.loads(settings)
        if settings.get("epochs") == epochs and isinstance(settings.get("seed"), int):
            found.setdefault(settings["seed"], float(row["accuracy"]))
    return found


def probed(store: GraphStore, source: str, target: str) -> bool:
    rows = store.query(
        "MATCH (:Model {id: $s})-[r:SCORED_ON]->(:Dataset {id: $d}) WHERE r.kind = $k RETURN count(r) AS n",
        {"s": source, "d": target, "k": "logme"},
    )
    return bool(rows and rows[0]["n"])


def run_matrix(store: GraphStore, args: argparse.Namespace) -> tuple[list[str], dict, dict]:
    """Register, build the zoo, fine-tune and probe every pair (cached); (sources, targets, accuracies)."""
    started = time.perf_counter()
    result = register_demo_data(store, step=lambda text: print(f"  {text}", file=sys.stderr))
    names = DEMO_DATASETS if args.sources == "all" else args.sources.split(",")
    unknown = sorted(set(names) - set(result.datasets))
    if unknown:
        raise SystemExit(f"--sources names datasets the demo does not register: {', '.join(unknown)}.")
    sources = build_zoo(store, result, args.cache / "zoo", sources=names)[: args.max_sources]
    targets = dict(list(register_targets(store, result, args.cap).items())[: args.max_targets])
    print(
        f"registered data and zoo in {time.perf_counter() - started:.0f} s: {len(sources)} sources, "
        f"{len(targets)} targets",
        file=sys.stderr,
    )
    accuracy: dict[tuple[str, str], list[float]] = {}
    timing = {"finetune": 0.0, "probe": 0.0, "trained": 0, "probed": 0}
    for source in sources:
        record = ModelRecord.from_properties(store.node(Label.MODEL, source))
        for target, (name, ds) in targets.items():
            recorded = outcomes(store, source, target, args.preset, args.epochs)
            for seed in args.seeds:
                acc = recorded.get(seed)
                if acc is None:
                    tick = time.perf_counter()
                    suffix = f"-s{seed}" if seed else ""  # seed 0 keeps the cache's older run names
                    out = args.cache / "runs" / f"{source}--{target}--{args.preset}-e{args.epochs}{suffix}"
                    res = finetune(
                        record,
                        ds,
                        settings_for(args.preset, epochs=args.epochs, seed=seed),
                        out_dir=out,
                        store=store,
                        target_id=target,
                        resume=checkpoint_file(out).exists(),
                    )
                    acc = res.accuracy
                    timing["finetune"] += time.perf_counter() - tick
                    timing["trained"] += 1
                    print(
                        f"  fine-tuned {source} on {name}, seed {seed}: {acc:.3f} "
                        f"({time.perf_counter() - tick:.1f} s)",
                        file=sys.stderr,
                    )
                accuracy.setdefault((source, target), []).append(acc)
            if not probed(store, source, target):
                tick = time.perf_counter()
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    probe(store, source, target, n=args.probe_n, seed=0, target=ds)
                timing["probe"] += time.perf_counter() - tick
                timing["probed"] += 1
                print(f"  probed {source} on {name} ({time.perf_counter() - tick:.1f} s)", file=sys.stderr)
    print(
        f"\nMatrix: {timing['trained']} runs trained ({timing['finetune']:.0f} s), {timing['probed']} pairs "
        f"probed ({timing['probe']:.0f} s), the rest from the cache; {time.perf_counter() - started:.0f} s "
        "in all.\n"
    )
    return sources, targets, accuracy


def matrix_table(sources: list[str], targets: dict, accuracy: dict) -> str:
    """Mean test accuracy over the seeds, source x target."""
    names = [name for name, _ in targets.values()]
    lines = ["| source \\ target | " + " | ".join(names) + " |", "|---|" + "---|" * len(names)]
    for s in sources:
        lines.append(f"| {s} | " + " | ".join(fmt(statistics.mean(accuracy[s, t])) for t in targets) + " |")
    return "\n".join(lines)


def seed_spread(accuracy: dict) -> str:
    """How far the seeds' accuracies for one pair spread: the noise floor of the matrix."""
    sds = [statistics.stdev(runs) for runs in accuracy.values() if len(runs) > 1]
    if not sds:
        return "One seed per pair: the matrix's seed noise is not measured."
    seeds = max(len(runs) for runs in accuracy.values())
    return (
        f"Seed spread: the standard deviation of a pair's accuracy over its {seeds} seeds is "
        f"{statistics.mean(sds):.3f} on average (median {statistics.median(sds):.3f}, largest "
        f"{max(sds):.3f}); the evaluation judges each pair by its mean over the seeds."
    )


def loto_table(result: LotoResult, names: dict[str, str]) -> str:
    methods = list(result.methods)
    lines = ["| target | n | " + " | ".join(f"{m} r | {m} tau" for m in methods) + " |"]
    lines.append("|---|---|" + "---|---|" * len(methods))
    for row in result.targets:
        cells = []
        for m in methods:
            r, tau = row.scores.get(m, (math.nan, math.nan))
            cells += [fmt(r), fmt(tau)]
        lines.append(f"| {names.get(row.name, row.name)} | {row.n_models} | " + " | ".join(cells) + " |")
    cells = []
    for m in methods:
        r, tau, _ = result.mean(m)
        cells += [f"**{fmt(r)}**", f"**{fmt(tau)}**"]
    lines.append("| **mean** | | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def record_target_similarities(store: GraphStore, target_ids: list[str]) -> None:
    """SIMILAR_TO among the targets by every method (concept overlap, profile, embedding on their
    images), recorded once: what a new target brings about itself, no outcomes involved."""
    known = store.query("MATCH (:Dataset)-[r:SIMILAR_TO]->(:Dataset) RETURN count(r) AS n")[0]["n"]
    if known:
        print(f"  {known} SIMILAR_TO edges already recorded", file=sys.stderr)
        return
    for target in target_ids:
        tick = time.perf_counter()
        report = find_similar(store, target, against=[t for t in target_ids if t != target])
        print(
            f"  similarities of {target}: {len(report.similarities)} ({time.perf_counter() - tick:.1f} s)",
            file=sys.stderr,
        )


def evaluate(store: GraphStore, targets: dict, args: argparse.Namespace) -> None:
    record_target_similarities(store, list(targets))
    data, maps = build_hetero(store)
    tuned = {
        row["id"]
        for row in store.query("MATCH (m:Model) WHERE m.source = $s RETURN m.id AS id", {"s": TUNED_SOURCE})
    }
    keep = torch.tensor([mid not in tuned for mid in maps.ids["model"]])
    outcomes_before = data["model", "transferred_to", "dataset"].edge_index.shape[1]
    data = data.subgraph({"model": keep})
    outcomes_after = data["model", "transferred_to", "dataset"].edge_index.shape[1]
    if outcomes_after != outcomes_before:
        raise SystemExit(
            f"dropping the fine-tuned models lost outcomes ({outcomes_before} -> {outcomes_after})."
        )
    print(
        f"Graph for the evaluation: {data['model'].num_nodes} models "
        f"({len(tuned)} fine-tuned models dropped), "
        f"{data['dataset'].num_nodes} datasets, {outcomes_after} outcome pairs, "
        f"{data['model', 'scored_on', 'dataset'].edge_index.shape[1]} SCORED_ON measurements.\n"
    )
    rows = [maps.index_of("dataset", t) for t in targets]
    train = TrainConfig(ensemble=args.ensemble, epochs=args.gnn_epochs)
    started = time.perf_counter()
    result = loto(
        data,
        names=maps.ids["dataset"],
        targets=rows,
        train=train,
        seed=args.gnn_seed,
        progress=lambda line: print(f"  [loto] {line}", file=sys.stderr),
    )
    without = loto(
        data,
        names=maps.ids["dataset"],
        targets=rows,
        gnn=GnnConfig(similarity_pool=False),
        train=train,
        seed=args.gnn_seed,
        baselines=False,
        progress=lambda line: print(f"  [loto, no SIMILAR_TO] {line}", file=sys.stderr),
    )
    for row, other in zip(result.targets, without.targets, strict=True):
        row.scores["gnn-no-similar"] = other.scores["gnn"]
    result.methods = (result.methods[0], "gnn-no-similar", *result.methods[1:])
    print(
        f"## Leave-one-target-out on the local zoo (ensemble {train.ensemble}, {train.epochs} epochs, "
        f"seed {args.gnn_seed}; {time.perf_counter() - started:.0f} s)\n"
    )
    print(loto_table(result, {t: name for t, (name, _) in targets.items()}))
    print()
    for note in result.notes:
        print(f"Note: {note}")
    gnn_r, gnn_tau, _ = result.mean("gnn")
    singles = {k: result.mean(k) for k in ESTIMATOR_KINDS if k in result.methods}
    if singles:
        best = max(singles, key=lambda k: singles[k][1])
        margin = gnn_tau - singles[best][1]
        verdict = "met" if margin >= 0.1 else "NOT met"
        print(
            f"- GNN mean r {fmt(gnn_r)}, mean weighted tau {fmt(gnn_tau)}; best single estimator by tau: "
            f"{best} (r {fmt(singles[best][0])}, tau {fmt(singles[best][1])}); margin {margin:+.3f} "
            f"(aim >= +0.1: {verdict})."
        )
    for m in result.methods:
        if m == "gnn":
            continue
        r, tau, n = result.mean(m)
        print(f"  - {m}: mean r {fmt(r)}, tau {fmt(tau)} over {n} targets.")
    print(
        "\nThe target's estimator evidence re-ordering the probed candidates (gnn.evidence; every source is "
        "probed here, so the scorer's head learned the estimators and it blends with weight 0; "
        f"{GnnConfig().estimator_weight:g} is for scorers that never saw one), from the same predictions:\n"
    )
    print("| estimator_weight | GNN r | GNN tau |\n|---:|---:|---:|")
    for weight in (0.0, 0.25, 0.5, 0.75, 1.0):
        r, tau = result.mean_with_estimator_weight(weight)
        print(f"| {weight:g} | {fmt(r)} | {fmt(tau)} |")
    agreement = ", ".join(
        f"{name} {fmt(run.ranking_agreement(m, min_shared=5))}"
        for name, run, m in (
            ("actual", result, "actual"),
            ("gnn", result, "gnn"),
            ("gnn-no-similar", without, "gnn"),
        )
    )
    print(f"\nRanking agreement between held-out targets (mean Spearman): {agreement}.")


def seed_list(text: str) -> list[int]:
    """``--seeds``: comma-separated integers."""
    try:
        return [int(v) for v in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"--seeds takes comma-separated integers, got {text!r}") from None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cache", type=Path, default=DEFAULT_CACHE)
    parser.add_argument("--cap", type=int, default=4000, help="images per target at most (stratified subset)")
    parser.add_argument("--epochs", type=int, default=2, help="fine-tuning epochs per pair")
    parser.add_argument("--preset", default="fastai")
    parser.add_argument(
        "--seeds",
        type=seed_list,
        default=[0, 1, 2],
        help="fine-tuning seeds per pair, comma-separated; the evaluation graph averages every run of a pair "
        "that the store holds",
    )
    parser.add_argument("--probe-n", type=int, default=500)
    parser.add_argument("--ensemble", type=int, default=4)
    parser.add_argument("--gnn-epochs", type=int, default=300)
    parser.add_argument("--gnn-seed", type=int, default=0, help="seed of the scorer's training")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument(
        "--sources",
        default="all",
        help="datasets to pretrain a SmallCNN on, comma-separated, or 'all' (every registered demo dataset; "
        f"the demo itself uses {','.join(ZOO_SOURCES)})",
    )
    parser.add_argument("--max-sources", type=int, default=None, help="first N sources only (smoke runs)")
    parser.add_argument("--max-targets", type=int, default=None, help="first N targets only (smoke runs)")
    parser.add_argument("--skip-eval", action="store_true")
    args = parser.parse_args()
    warnings.filterwarnings("ignore", category=FutureWarning)
    torch.set_num_threads(args.threads)
    args.cache.mkdir(parents=True, exist_ok=True)
    print("# GNN scorer on the local zoo\n")
    print(f"machine: {machine()}; {args.threads} torch thread(s)\n")
    print(
        f"Settings: preset {args.preset}, {args.epochs} epochs, seeds {args.seeds}, targets capped at "
        f"{args.cap} images, probes on {args.probe_n} target images.\n"
    )
    with open_store(f"embedded:{args.cache / 'zoo.lbug'}") as store:
        sources, targets, accuracy = run_matrix(store, args)
        print("## Fine-tuned test accuracy (source x target)\n")
        print(matrix_table(sources, targets, accuracy))
        print()
        print(seed_spread(accuracy))
        print()
        if not args.skip_eval:
            evaluate(store, targets, args)
    print(f"\nmachine at the end: {machine()}")


if __name__ == "__main__":
    main()

"""The GNN scorer on the public TransferGraph records: leave-one-target-out against baselines, and speed.

Reads ../shared/benchmarks/transfergraph (or ``--data``), imports it into a fresh LadybugDB file and
prints markdown tables, with the machine named:

1. LOTO (each of the 13 targets hidden in turn, all its outcomes): Pearson r and weighted Kendall tau
   per target and their mean, side by side in ONE run for the GNN (SAGE and HGT structural convs,
   and, with ``--nested``, a per-fold inner selection among a small grid) and the baselines
   (``gnn.evaluate``): mean within-target z elsewhere, reported accuracy, a gradient-boosted regressor
   on the node features without the graph, and estimator scores (none recorded in TransferGraph).
2. Timings: building a 100,000-node graph, training the scorer on the full TransferGraph graph
   (aim < 60 s), scoring one target against 1,000 synthetic candidate models (aim < 1 s) and
   ``recommend`` end to end.

Before the evaluation it records SIMILAR_TO by the graph's methods among the targets (the records
give only size and class count, so in effect the profile; ``--no-similar`` skips it), and the
``sage-no-similar`` variant shows the scorer without that pool in the same run. The targets' ranking
agreement (mean Spearman between two held-out targets' rankings) says how far each method gives every
target the same ranking.

Failed runs (at chance, ``kg.outcomes``) are not a ranking signal: they are left out of training and
of the ground truth, so food101, whose records are nearly all at chance, is no longer a target.

Usage: ``python benchmarks/gnn_eval.py [--data DIR] [--ensemble 4] [--epochs 300] [--nested]
[--variants sage,sage-no-similar,hgt] [--no-similar] [--targets dtd,pets] [--skip-loto]
[--skip-timing] [--neo4j]``.
"""

from __future__ import annotations

import argparse
import math
import os
import platform
import random
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import torch
from machine import cpu_name  # benchmarks/machine.py: run these scripts as files

from gnn.builder import PairContext, build_hetero
from gnn.evaluate import LotoResult, loto
from gnn.model import GnnConfig
from gnn.scores import recommend
from gnn.train import TrainConfig, load_scorer, outcome_table, train_scorer
from kg import GraphBatch, GraphStore, open_store
from kg.ids import dataset_id
from kg.similarity import GRAPH_METHODS, graph_similarities, record_similarities
from kg.transfergraph import transfergraph_batch
from ontology.vocab import Label, Rel

DEFAULT_DATA = Path(__file__).resolve().parents[2] / "shared/benchmarks/transfergraph"
D, M = Label.DATASET, Label.MODEL


def machine() -> str:
    cpu = cpu_name()
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else math.nan
    return (
        f"{platform.node()}: {cpu}, {os.cpu_count()} cores (load {load:.1f} at start), "
        f"Python {platform.python_version()}, torch {torch.__version__} "
        f"(CPU, {torch.get_num_threads()} threads)"
    )


VARIANTS: dict[str, GnnConfig] = {
    "sage": GnnConfig(conv="sage"),
    "sage-no-similar": GnnConfig(conv="sage", similarity_pool=False),
    "hgt": GnnConfig(conv="hgt"),
}
"""Scorer variants ``--variants`` picks from: the default, the default without the SIMILAR_TO pool,
and the HGT structural conv."""


def record_target_similarities(store: GraphStore) -> int:
    """SIMILAR_TO by the graph's methods among the datasets with outcomes (the records carry only
    size and class count, so in effect the profile); what a new target brings about itself."""
    ids = [
        r["id"]
        for r in store.query("MATCH (:Model)-[:TRANSFERRED_TO]->(d:Dataset) RETURN DISTINCT d.id AS id")
    ]
    written = 0
    for target in ids:
        others = [t for t in ids if t != target]
        written += record_similarities(
            store, target, graph_similarities(store, target, others, GRAPH_METHODS)
        )
    return written


def fmt(x: float) -> str:
    return "n/a" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.3f}"


def loto_tables(runs: dict[str, LotoResult], baseline_run: str) -> str:
    """Per-target and mean tables: every GNN run, then the baselines of ``baseline_run``."""
    base = runs[baseline_run]
    baselines = [m for m in base.methods if m != "gnn"]
    columns = [f"GNN {name}" for name in runs] + baselines
    lines = ["| target | n | " + " | ".join(f"{c} r | {c} tau" for c in columns) + " |"]
    lines.append("|---|---|" + "---|---|" * len(columns))
    for i, row in enumerate(base.targets):
        cells = []
        for name in runs:
            r, tau = runs[name].targets[i].scores["gnn"]
            cells += [fmt(r), fmt(tau)]
        for m in baselines:
            r, tau = row.scores.get(m, (math.nan, math.nan))
            cells += [fmt(r), fmt(tau)]
        lines.append(f"| {row.name} | {row.n_models} | " + " | ".join(cells) + " |")
    cells = []
    for name in runs:
        r, tau, _ = runs[name].mean("gnn")
        cells += [f"**{fmt(r)}**", f"**{fmt(tau)}**"]
    for m in baselines:
        r, tau, _ = base.mean(m)
        cells += [f"**{fmt(r)}**", f"**{fmt(tau)}**"]
    lines.append("| **mean** | | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _compare(ours: float, theirs: float, tie: float = 0.005) -> str:
    if abs(ours - theirs) < tie:
        return "TIES with it (within 0.005)"
    return "beats it" if ours > theirs else "does NOT beat it"


def prior_sensitivity(
    runs: dict[str, LotoResult], baseline_run: str, priors: tuple[float, ...] = (0.0, 1.0, 2.0, 3.0)
) -> str:
    """Mean r / tau of each GNN run, and of mean-z from ``baseline_run``, had ``seen_prior`` been each
    of ``priors``: the prior is added after the learned prediction, so one run answers it."""
    columns = [(name, "gnn") for name in runs] + [(baseline_run, "mean-z")]
    titles = [f"GNN {name}" for name in runs] + ["mean-z"]
    lines = ["| seen_prior | " + " | ".join(f"{t} r | {t} tau" for t in titles) + " |"]
    lines.append("|---:|" + "---:|---:|" * len(columns))
    for prior in priors:
        cells = []
        for run_name, method in columns:
            pairs = np.array([t.scores_with_prior(method, prior) for t in runs[run_name].targets])
            cells += [fmt(float(np.nanmean(pairs[:, 0]))), fmt(float(np.nanmean(pairs[:, 1])))]
        lines.append(f"| {prior:g} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def verdicts(runs: dict[str, LotoResult], baseline_run: str) -> list[str]:
    base = runs[baseline_run]
    out = []
    for name, run in runs.items():
        r, tau, _ = run.mean("gnn")
        aims = (
            f"aims r > 0.80: {'met' if r > 0.80 else 'NOT met'}, "
            f"tau > 0.55: {'met' if tau > 0.55 else 'NOT met'}"
        )
        out.append(f"- GNN {name}: mean r {fmt(r)}, tau {fmt(tau)}; {aims}.")
        for m in base.methods:
            if m == "gnn":
                continue
            br, btau, n = base.mean(m)
            if n == 0:
                out.append(f"  - vs {m}: no scores (n/a).")
                continue
            out.append(
                f"  - vs {m}: {_compare(r, br)} on r ({r:.4f} vs {br:.4f}), "
                f"{_compare(tau, btau)} on tau ({tau:.4f} vs {btau:.4f})."
            )
    return out


def synthetic_graph(n_nodes: int, seed: int = 0) -> GraphBatch:
    """A lineage-shaped graph: 80% datasets (DERIVED_FROM a nearby one, IN_DOMAIN one of 20), 20% models
    (TRAINED_ON a dataset, half FINETUNED_FROM an earlier model), with features on every node."""
    rng = random.Random(seed)
    n_data = int(n_nodes * 0.8)
    b = GraphBatch()
    for k in range(20):
        b.node(Label.DOMAIN, f"domain{k}", name=f"domain {k}")
    for i in range(n_data):
        b.node(
            D,
            f"d{i}",
            n_samples=rng.randint(100, 100_000),
            n_classes=rng.randint(2, 1000),
            image_size=[32, 32],
            channels=3,
            mean=[0.5, 0.5, 0.5],
            std=[0.25, 0.25, 0.25],
        )
        if i:
            b.edge(Rel.DERIVED_FROM, (D, f"d{i}"), (D, f"d{rng.randrange(max(0, i - 50), i)}"), how="subset")
        b.edge(Rel.IN_DOMAIN, (D, f"d{i}"), (Label.DOMAIN, f"domain{rng.randrange(20)}"))
    for i in range(n_nodes - n_data - 20):
        b.node(
            M,
            f"m{i}",
            num_params=rng.randint(10_000, 10_000_000),
            num_classes=10,
            architecture=rng.choice(["resnet18", "vit_b_16", "convnext_tiny"]),
        )
        b.edge(Rel.TRAINED_ON, (M, f"m{i}"), (D, f"d{rng.randrange(n_data)}"))
        if i and rng.random() < 0.5:
            b.edge(Rel.FINETUNED_FROM, (M, f"m{i}"), (M, f"m{rng.randrange(i)}"))
    return b


def candidates(n: int, pretraining: list[str], seed: int = 0) -> GraphBatch:
    """``n`` synthetic candidate models like the Hugging Face ones, trained on the real pretraining sets."""
    rng = random.Random(seed)
    b = GraphBatch()
    archs = [
        "ViTForImageClassification",
        "SwinForImageClassification",
        "ConvNextForImageClassification",
        "BeitForImageClassification",
        "ResNetForImageClassification",
    ]
    for i in range(n):
        id = f"synthetic:candidate-{i}"
        b.node(
            M,
            id,
            name=f"candidate {i}",
            architecture=rng.choice(archs),
            num_params=rng.randint(5, 300) * 10**6,
            num_classes=rng.choice([2, 10, 100, 1000]),
            input_size=[3, 224, 224],
            metrics={"reported_accuracy": rng.uniform(0.6, 0.99)},
        )
        b.edge(Rel.TRAINED_ON, (M, id), (D, rng.choice(pretraining)))
    return b


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--ensemble", type=int, default=4)
    parser.add_argument("--epochs", type=int, default=300)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--targets", default="", help="comma-separated target names (default: all)")
    parser.add_argument("--nested", action="store_true", help="also run per-fold inner config selection")
    parser.add_argument(
        "--variants",
        default="sage,sage-no-similar,hgt",
        help=f"scorer variants to evaluate, sage first ({', '.join(VARIANTS)})",
    )
    parser.add_argument(
        "--no-similar", action="store_true", help="do not record SIMILAR_TO (profile) among the targets"
    )
    parser.add_argument("--skip-loto", action="store_true")
    parser.add_argument("--skip-timing", action="store_true")
    parser.add_argument("--graph-nodes", type=int, default=100_000)
    parser.add_argument(
        "--neo4j", action="store_true", help="also time build_hetero on the Neo4j at NEO4J_URI (it is wiped)"
    )
    args = parser.parse_args()
    if args.neo4j and not os.environ.get("NEO4J_URI"):
        parser.error("--neo4j needs NEO4J_URI pointing at your own server (its graph is wiped).")
    if args.neo4j and os.environ["NEO4J_URI"].rstrip("/").endswith(":7687"):
        parser.error("--neo4j refuses the shared default port 7687 (its graph would be wiped).")
    warnings.filterwarnings("ignore", category=FutureWarning)

    train = TrainConfig(ensemble=args.ensemble, epochs=args.epochs)
    print("# GNN scorer on TransferGraph\n")
    print(f"machine: {machine()}\n")
    tmp = Path(tempfile.mkdtemp(prefix="gnn-eval-"))
    uri = f"embedded:{tmp / 'tg.lbug'}"
    with open_store(uri) as store:
        started = time.perf_counter()
        batch = transfergraph_batch(args.data)
        stats = store.apply(batch)
        import_s = time.perf_counter() - started
        n_similar = record_target_similarities(store) if not args.no_similar else 0
        started = time.perf_counter()
        data, maps = build_hetero(store)
        build_s = time.perf_counter() - started
    print(
        f"TransferGraph import: {stats.nodes_created} nodes, {stats.edges_created} relationships in "
        f"{import_s:.2f} s; HeteroData built in {build_s:.2f} s "
        f"({data['model'].num_nodes} models, {data['dataset'].num_nodes} datasets, "
        f"{data['model', 'transferred_to', 'dataset'].edge_index.shape[1]} outcome pairs; "
        f"{int(data.n_failed_runs)} runs at chance flagged failed and left out of the ranking signal; "
        f"{n_similar} SIMILAR_TO measurements recorded among the targets).\n"
    )

    if not args.skip_loto:
        names = maps.names["dataset"]
        targets = None
        if args.targets:
            targets = [maps.index_of("dataset", dataset_id(t.strip())) for t in args.targets.split(",")]
        print(
            f"## Leave-one-target-out (ensemble {train.ensemble}, {train.epochs} epochs, seed {args.seed})\n"
        )
        runs: dict[str, LotoResult] = {}
        for variant in args.variants.split(","):
            started = time.perf_counter()
            runs[variant] = loto(
                data,
                names=names,
                targets=targets,
                gnn=VARIANTS[variant],
                train=train,
                seed=args.seed,
                baselines=variant == "sage",
                progress=lambda line, v=variant: print(f"  [{v}] {line}", file=sys.stderr),
            )
            print(f"{variant}: LOTO in {time.perf_counter() - started:.0f} s", file=sys.stderr)
        if args.nested:
            grid = [
                (GnnConfig(conv="sage"), train),
                (GnnConfig(conv="hgt"), train),
                (
                    GnnConfig(conv="sage"),
                    TrainConfig.from_dict({**train.to_dict(), "holdout_fraction": 0.25, "epochs": 150}),
                ),
                (GnnConfig(conv="sage", history=False, residual=False), train),
            ]
            runs["nested"] = loto(
                data,
                names=names,
                targets=targets,
                train=train,
                seed=args.seed,
                baselines=False,
                select=grid,
                progress=lambda line: print(f"  [nested] {line}", file=sys.stderr),
            )
        print(loto_tables(runs, "sage"))
        print()
        print(
            "Sensitivity to the seen prior (z added to sources trained on the target's data; the scorer "
            f"uses {GnnConfig().seen_prior:g}), from the same predictions:\n"
        )
        print(prior_sensitivity({k: v for k, v in runs.items() if k != "nested"}, "sage"))
        print()
        agreement = ", ".join(
            [f"{m} {fmt(runs['sage'].ranking_agreement(m))}" for m in ("actual", "mean-z")]
            + [f"GNN {name} {fmt(run.ranking_agreement('gnn'))}" for name, run in runs.items()]
        )
        print(
            "Ranking agreement between held-out targets (mean Spearman over the models two targets "
            f"share; 1 = one ranking for every target): {agreement}.\n"
        )
        for note in runs["sage"].notes:
            print(f"Note: {note}")
        if args.nested:
            picks = [row.chosen for row in runs["nested"].targets]
            print(
                "Nested: per fold, a 3-group inner CV over the other targets (one member per fit) picked "
                "among [0: sage, 1: hgt, 2: sage with a quarter of the targets held out per epoch and "
                f"150 epochs, 3: sage without the history readout]: {', '.join(picks)}."
            )
        print()
        print("\n".join(verdicts(runs, "sage")))
        print()

    if not args.skip_timing:
        print("## Timings\n")
        print("| what | size | seconds | aim |")
        print("|---|---|---|---|")
        with open_store(f"embedded:{tmp / 'big.lbug'}") as store:
            store.apply(synthetic_graph(args.graph_nodes))
            started = time.perf_counter()
            big, _ = build_hetero(store)
            seconds = time.perf_counter() - started
            n = sum(big[nt].num_nodes for nt in big.node_types)
            e = sum(big[et].edge_index.shape[1] for et in big.edge_types)
            print(
                f"| build_hetero (LadybugDB) | {n:,} nodes, {e:,} edges (with reverses) "
                f"| {seconds:.2f} | seconds |"
            )
            started = time.perf_counter()
            PairContext(big)
            print(f"| PairContext on it | {n:,} nodes | {time.perf_counter() - started:.2f} | |")
        if args.neo4j:
            with open_store(os.environ["NEO4J_URI"]) as store:
                store.clear()
                store.apply(synthetic_graph(args.graph_nodes))
                started = time.perf_counter()
                big, _ = build_hetero(store)
                seconds = time.perf_counter() - started
                store.clear()
            print(
                f"| build_hetero (Neo4j 5.26, same machine) | {n:,} nodes, {e:,} edges "
                f"| {seconds:.2f} | seconds |"
            )
        with open_store(uri) as store:
            started = time.perf_counter()
            info = train_scorer(store, tmp / "scorers", seed=args.seed, train=train)
            seconds = time.perf_counter() - started
            print(
                f"| train_scorer, full TransferGraph (incl. graph read + save) | ensemble {train.ensemble} x "
                f"{train.epochs} epochs, {info.n_outcomes} outcomes | {seconds:.1f} | < 60 |"
            )
            pretraining = [
                maps.ids["dataset"][int(d)] for d in data["model", "trained_on", "dataset"].edge_index[1]
            ]
            store.apply(candidates(1000, sorted(set(pretraining)), seed=args.seed))
            target = dataset_id("dtd")
            started = time.perf_counter()
            ensemble, _ = load_scorer(store)
            g, gmaps = build_hetero(store)
            ctx = PairContext(g)
            read_s = time.perf_counter() - started
            rows = np.array([gmaps.index_of("model", f"synthetic:candidate-{i}") for i in range(1000)])
            outcomes = outcome_table(g)
            t_row = gmaps.index_of("dataset", target)
            ensemble.predict(g, ctx, outcomes, t_row, rows)  # warm-up
            times = []
            for _ in range(5):
                started = time.perf_counter()
                ensemble.predict(g, ctx, outcomes, t_row, rows)
                times.append(time.perf_counter() - started)
            print(
                f"| load scorer + read graph + pair context | {g['model'].num_nodes} models "
                f"| {read_s:.2f} | |"
            )
            print(
                f"| score 1 target x 1,000 synthetic candidates (GNN ensemble, in memory; median of 5) | "
                f"ensemble {len(ensemble.members)} | {np.median(times):.3f} | < 1 |"
            )
            started = time.perf_counter()
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                recs = recommend(store, target, top=10)
            print(
                f"| recommend(dtd, top=10) end to end over {g['model'].num_nodes} candidates "
                "(graph read, scoring, shift + bias risk of the top 10) | "
                f"| {time.perf_counter() - started:.2f} | |"
            )
        print()
        print("Top 3 for dtd among real + synthetic candidates:")
        for r in recs[:3]:
            print(
                f"- {r.rank}. {r.name}: compatibility {r.compatibility:.3f} +- {r.uncertainty:.3f}, "
                f"shift risk {r.shift_risk:.2f}, bias risk {r.bias_risk:.2f}; {r.facts['compatibility'][0]}"
            )


if __name__ == "__main__":
    main()

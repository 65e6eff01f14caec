"""Bulk load and lineage-query speed of each store on a synthetic graph.

100,000 nodes (80% datasets, 20% models) and 200,000 relationships, in two shapes:

* ``tree`` (like real lineage): each dataset DERIVED_FROM one earlier dataset nearby (10% have a
  second parent) and IN_DOMAIN one of 20 domains; each model TRAINED_ON a dataset, and half are
  FINETUNED_FROM an earlier model.
* ``dense`` (a stress case): each dataset DERIVED_FROM two earlier datasets nearby, so a depth-10
  ancestor query reaches ~600 nodes; models as above, all fine-tuned.

Measures bulk load (elements per second) and the depth-10 ancestors query with paths (p50 / p95 over
100 random start models) on LadybugDB and, when ``NEO4J_URI`` is set, on Neo4j, in one run. Loads:
``apply`` is one ``GraphStore.apply`` (one transaction); ``bulk`` is ``kg.bulk.bulk_apply`` (Neo4j:
chunks of 10,000 committed one by one, resumable; LadybugDB: the same atomic load as ``apply``).
Before the timed load each store loads and clears a small graph (1% of the size, at least 1,000
nodes) so that a server's JIT is warm, as on a long-running server; ``--no-warm-up`` skips that.

Usage: ``python benchmarks/kg_bench.py [--nodes 100000] [--shape tree|dense|both]
[--neo4j-load apply|bulk|both]``; for a million nodes ``--nodes 1000000 --shape tree --neo4j-load bulk``.
"""

import argparse
import os
import platform
import random
import statistics
import tempfile
import time

from machine import cpu_name  # benchmarks/machine.py: run these scripts as files

from kg import GraphBatch, open_store
from kg.bulk import bulk_apply
from kg.errors import KgError
from kg.lineage import ancestors
from ontology.vocab import Label, Rel

D, M = Label.DATASET, Label.MODEL


def synthetic(n_nodes: int, shape: str = "tree", seed: int = 0) -> GraphBatch:
    """The benchmark graph (see the module docstring)."""
    rng = random.Random(seed)
    n_data = int(n_nodes * 0.8)
    n_models = n_nodes - n_data
    b = GraphBatch()
    for i in range(n_data):
        b.node(D, f"d{i}", name=f"dataset {i}", n_samples=rng.randint(100, 100_000))
    for i in range(n_models):
        b.node(M, f"m{i}", name=f"model {i}", num_params=rng.randint(10_000, 10_000_000))
    if shape == "tree":
        for k in range(20):
            b.node(Label.DOMAIN, f"domain{k}", name=f"domain {k}")
    for i in range(1, n_data):
        parents = 2 if shape == "dense" or rng.random() < 0.1 else 1
        for parent in rng.sample(range(max(0, i - 50), i), min(parents, i)):
            b.edge(
                Rel.DERIVED_FROM,
                (D, f"d{i}"),
                (D, f"d{parent}"),
                how=rng.choice(["subset", "rotate", "blur"]),
            )
        if shape == "tree":
            b.edge(Rel.IN_DOMAIN, (D, f"d{i}"), (Label.DOMAIN, f"domain{rng.randrange(20)}"))
    for i in range(n_models):
        b.edge(Rel.TRAINED_ON, (M, f"m{i}"), (D, f"d{rng.randrange(n_data)}"))
        if i and (shape == "dense" or rng.random() < 0.5):
            b.edge(Rel.FINETUNED_FROM, (M, f"m{i}"), (M, f"m{rng.randrange(i)}"))
    return b


def bench(
    uri: str, batch: GraphBatch, n_models: int, load: str = "apply", queries: int = 100, warm_up: bool = True
) -> dict[str, float]:
    """Load ``batch`` into the store at ``uri`` (``apply`` or ``bulk``), then time depth-10 ancestors."""
    write = bulk_apply if load == "bulk" else (lambda store, b: store.apply(b))
    with open_store(uri) as store:
        store.clear()
        if warm_up:
            small = max(1_000, n_models * 5 // 100)
            write(store, synthetic(small, "tree", seed=7))
            store.clear()
        start = time.perf_counter()
        stats = write(store, batch)
        load_s = time.perf_counter() - start
        rng = random.Random(1)
        ancestors(store, M, "m0", depth=10)  # warm-up
        times, sizes = [], []
        for _ in range(queries):
            start = time.perf_counter()
            found = ancestors(store, M, f"m{rng.randrange(n_models)}", depth=10)
            times.append((time.perf_counter() - start) * 1000)
            sizes.append(len(found))
        if store.dialect == "neo4j":
            store.clear()
    times.sort()
    return {
        "elements": stats.total,
        "load_s": load_s,
        "per_s": stats.total / load_s,
        "p50_ms": statistics.median(times),
        "p95_ms": times[int(0.95 * len(times)) - 1],
        "mean_ancestors": statistics.mean(sizes),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nodes", type=int, default=100_000)
    parser.add_argument("--shape", choices=["tree", "dense", "both"], default="both")
    parser.add_argument(
        "--neo4j-load", choices=["apply", "bulk", "both"], default="both", help="how to load Neo4j"
    )
    parser.add_argument("--no-warm-up", action="store_true", help="time the first load of a fresh process")
    args = parser.parse_args()
    print(
        f"machine: {cpu_name()} ({platform.machine()}), {os.cpu_count()} cores, "
        f"Python {platform.python_version()}; load average at start {os.getloadavg()[0]:.1f}\n"
    )
    print(
        "| graph | store | load | elements | load time | elements/s | depth-10 ancestors p50 | p95 "
        "| mean ancestors | load average |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|")
    n_models = args.nodes - int(args.nodes * 0.8)
    for shape in ("tree", "dense") if args.shape == "both" else (args.shape,):
        batch = synthetic(args.nodes, shape)
        targets = [("LadybugDB (embedded)", f"embedded:{tempfile.mkdtemp()}/bench.lbug", "apply")]
        if os.environ.get("NEO4J_URI"):
            loads = ("apply", "bulk") if args.neo4j_load == "both" else (args.neo4j_load,)
            targets += [("Neo4j 5.26 (Bolt, local)", os.environ["NEO4J_URI"], load) for load in loads]
        for name, uri, load in targets:
            try:
                r = bench(uri, batch, n_models, load, warm_up=not args.no_warm_up)
            except KgError as exc:  # e.g. one transaction over the server's memory limit: a result too
                print(f"| {shape} | {name} | {load} | failed: {exc} |||||| {os.getloadavg()[0]:.1f} |")
                with open_store(uri) as store:
                    store.clear()
                continue
            print(
                f"| {shape} | {name} | {load} | {r['elements']:,} | {r['load_s']:.1f} s | {r['per_s']:,.0f} "
                f"| {r['p50_ms']:.1f} ms | {r['p95_ms']:.1f} ms | {r['mean_ancestors']:.0f} "
                f"| {os.getloadavg()[0]:.1f} |",
                flush=True,
            )


if __name__ == "__main__":
    main()

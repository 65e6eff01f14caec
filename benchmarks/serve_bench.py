"""Load test of ``kgraft serve`` over loopback: concurrent clients on lineage and recommend, with writes.

Builds a synthetic graph (``--datasets`` datasets in derivation chains with profiles, ``--models``
models trained on them, some fine-tuned from others, biases upstream), trains a quick GNN scorer,
starts ``kgraft serve`` in a subprocess on a free loopback port, then runs ``--clients`` concurrent
clients for ``--duration`` seconds. Each client loops, picking at random: the lineage of a dataset or
model (up or down, depth 10) or a recommendation for a dataset (top 10). ``--writers`` more clients
record fine-tuning outcomes (``POST /api/outcomes``) throughout. It prints p50 / p99 latency and the
error count per kind of request, the request rate, and checks that every acknowledged write is in
the graph afterwards (TRANSFERRED_TO count before and after). The same-run baseline is the median
time of the same lineage and recommend calls made in-process, one at a time, before the server starts.

The clients run in this process (asyncio + httpx) on the same machine as the server, so the client
side takes some of the CPU the server would otherwise get; the figures are for that setup.

Usage: ``python benchmarks/serve_bench.py [--store embedded|neo4j] [--clients 50] [--duration 30]``
(``neo4j`` uses ``NEO4J_URI`` and wipes that database).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.machine import cpu_name  # noqa: E402
from kg import GraphBatch, open_store  # noqa: E402
from ontology.vocab import Label, Rel  # noqa: E402

D, M, B = Label.DATASET, Label.MODEL, Label.BIAS
TOKEN = "bench-token"
OUTCOMES = "MATCH (:Model)-[t:TRANSFERRED_TO]->(:Dataset) RETURN count(t) AS c"


def synthetic(n_datasets: int, n_models: int, seed: int = 0) -> GraphBatch:
    """Datasets in derivation chains of up to 8 (each with a profile), models trained on them (a third
    fine-tuned from an earlier model), a bias on every chain's root."""
    rng = random.Random(seed)
    b = GraphBatch()
    for i in range(n_datasets):
        n = rng.randint(500, 50_000)
        b.node(
            D,
            f"d{i}",
            name=f"dataset {i}",
            n_samples=n,
            n_classes=10,
            channels=1,
            image_size=[28, 28],
            mean=[rng.random()],
            std=[0.2 + 0.2 * rng.random()],
            imbalance=1 + 3 * rng.random(),
            class_counts={str(c): n // 10 for c in range(10)},
        )
        if i % 8:
            b.edge(
                Rel.DERIVED_FROM, (D, f"d{i}"), (D, f"d{i - 1}"), how=rng.choice(["rotate", "blur", "subset"])
            )
        else:
            b.node(B, f"b{i}", name=f"bias {i}", kind="sampling", source="human", severity="low")
            b.edge(Rel.HAS_BIAS, (D, f"d{i}"), (B, f"b{i}"))
    for j in range(n_models):
        b.node(M, f"m{j}", name=f"model {j}", kind="classifier", architecture="smallcnn", num_classes=10)
        b.edge(Rel.TRAINED_ON, (M, f"m{j}"), (D, f"d{rng.randrange(n_datasets)}"))
        if j and j % 3 == 0:
            b.edge(Rel.FINETUNED_FROM, (M, f"m{j}"), (M, f"m{rng.randrange(j)}"))
    return b


def build(uri: str, args: argparse.Namespace, work: Path) -> dict[str, float]:
    """Write the graph and train the scorer; then the baseline: the median time of the same reads as
    plain library calls in this process, one at a time (recommend with one shared scoring context, as
    the server keeps it)."""
    from gnn.scores import recommend, scoring_context
    from gnn.train import TrainConfig, train_scorer
    from kg.lineage import lineage

    rng = random.Random(1)
    with open_store(uri) as store:
        store.clear()
        store.apply(synthetic(args.datasets, args.models))
        train_scorer(store, work / "scorers", train=TrainConfig(epochs=30, ensemble=2))
        context = scoring_context(store)
        times: dict[str, list[float]] = {"lineage": [], "recommend": []}
        for _ in range(30):
            t = time.perf_counter()
            lineage(store, D, f"d{rng.randrange(args.datasets)}", 10, rng.choice(["up", "down"]))
            times["lineage"].append(time.perf_counter() - t)
            t = time.perf_counter()
            recommend(store, f"d{rng.randrange(args.datasets)}", 10, context=context)
            times["recommend"].append(time.perf_counter() - t)
    return {kind: statistics.median(values) for kind, values in times.items()}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(uri: str, work: Path) -> tuple[subprocess.Popen, str]:
    port = free_port()
    env = {**os.environ, "PYTHONPATH": str(ROOT), "KGRAFT_TOKEN": TOKEN}
    cmd = [sys.executable, "-m", "transfer.cli", "--store", uri, "serve", "--port", str(port)]
    proc = subprocess.Popen([*cmd, "--reports-dir", str(work / "reports")], env=env, cwd=ROOT)
    base = f"http://127.0.0.1:{port}"
    for _ in range(600):
        try:
            if httpx.get(f"{base}/api/health", timeout=2).status_code == 200:
                return proc, base
        except httpx.TransportError:
            time.sleep(0.2)
    proc.kill()
    raise SystemExit("the server did not start")


async def count_outcomes(client: httpx.AsyncClient) -> int:
    r = await client.post("/api/cypher", json={"cypher": OUTCOMES})
    r.raise_for_status()
    return r.json()["rows"][0]["c"]


async def load(base: str, args: argparse.Namespace) -> tuple[dict[str, list[float]], dict[str, int], int]:
    """Run the readers and writers; latencies (s) and errors per kind, and acknowledged writes."""
    latencies: dict[str, list[float]] = {"lineage": [], "recommend": [], "write": []}
    errors = dict.fromkeys(latencies, 0)
    acknowledged = 0
    limits = httpx.Limits(max_connections=args.clients + args.writers + 4)
    async with httpx.AsyncClient(base_url=base, timeout=120, limits=limits) as client:
        # one warm-up of each kind, not timed (the first recommendation loads torch and the scorer)
        await client.get("/api/recommend/d1")
        await client.get("/api/lineage/dataset/d1")
        before = await count_outcomes(client)
        stop = time.monotonic() + args.duration

        async def reader(seed: int) -> None:
            rng = random.Random(seed)
            while time.monotonic() < stop:
                if rng.random() < args.recommend_share:
                    kind, url = "recommend", f"/api/recommend/d{rng.randrange(args.datasets)}"
                else:
                    label = "model" if rng.random() < 0.3 else "dataset"
                    n = args.models if label == "model" else args.datasets
                    direction = rng.choice(["up", "down"])
                    kind = "lineage"
                    url = f"/api/lineage/{label}/{label[0]}{rng.randrange(n)}?direction={direction}"
                t = time.perf_counter()
                try:
                    r = await client.get(url)
                    ok = r.status_code == 200
                except httpx.HTTPError:
                    ok = False
                latencies[kind].append(time.perf_counter() - t)
                errors[kind] += not ok

        async def writer(seed: int) -> None:
            nonlocal acknowledged
            rng = random.Random(10_000 + seed)
            while time.monotonic() < stop:
                body = {
                    "source": f"m{rng.randrange(args.models)}",
                    "target": f"d{rng.randrange(args.datasets)}",
                    "accuracy": round(rng.uniform(0.3, 0.95), 4),
                    "epochs": 3,
                }
                t = time.perf_counter()
                try:
                    r = await client.post(
                        "/api/outcomes", json=body, headers={"Authorization": f"Bearer {TOKEN}"}
                    )
                    ok = r.status_code == 201
                except httpx.HTTPError:
                    ok = False
                latencies["write"].append(time.perf_counter() - t)
                errors["write"] += not ok
                acknowledged += ok
                await asyncio.sleep(args.write_pause)

        await asyncio.gather(
            *(reader(i) for i in range(args.clients)), *(writer(i) for i in range(args.writers))
        )
        after = await count_outcomes(client)
    if after != before + acknowledged:
        errors["write"] += abs(after - before - acknowledged)
        print(f"LOST WRITES: {acknowledged} acknowledged, the graph gained {after - before}")
    else:
        print(f"writes: {acknowledged} acknowledged, {after - before} in the graph afterwards (none lost)")
    return latencies, errors, acknowledged


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--store", choices=["embedded", "neo4j"], default="embedded")
    parser.add_argument("--clients", type=int, default=50)
    parser.add_argument("--writers", type=int, default=2)
    parser.add_argument("--duration", type=float, default=30.0)
    parser.add_argument("--datasets", type=int, default=400)
    parser.add_argument("--models", type=int, default=60)
    parser.add_argument("--recommend-share", type=float, default=0.5)
    parser.add_argument("--write-pause", type=float, default=0.5, help="Seconds between a writer's posts.")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="kgraft-serve-bench-"))
    if args.store == "neo4j":
        uri = os.environ.get("NEO4J_URI") or sys.exit("set NEO4J_URI for --store neo4j")
    else:
        uri = f"embedded:{work / 'g.lbug'}"
    t = time.perf_counter()
    baseline = build(uri, args, work)
    print(
        f"graph: {args.datasets} datasets, {args.models} models, "
        f"scorer trained ({time.perf_counter() - t:.1f} s)"
    )
    proc, base = start_server(uri, work)
    try:
        latencies, errors, _ = asyncio.run(load(base, args))
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    load_avg = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(
        f"machine: {cpu_name()}, {os.cpu_count()} CPUs, load average {load_avg:.1f}; store {args.store}; "
        f"{args.clients} readers + {args.writers} writers for {args.duration:g} s"
    )
    print(f"{'request':<10} {'count':>7} {'per s':>7} {'p50 ms':>8} {'p99 ms':>8} {'errors':>7}")
    for kind, values in latencies.items():
        print(
            f"{kind:<10} {len(values):>7} {len(values) / args.duration:>7.1f} "
            f"{1000 * percentile(values, 0.5):>8.0f} {1000 * percentile(values, 0.99):>8.0f} "
            f"{errors[kind]:>7}"
        )
    for kind, seconds in baseline.items():
        p50 = percentile(latencies[kind], 0.5)
        print(
            f"baseline {kind}: {1000 * seconds:.0f} ms as one library call in-process; the server's p50 "
            f"under this load is {p50 / seconds:.0f}x that"
        )
    if args.store == "neo4j":
        with open_store(uri) as store:
            store.clear()
    if statistics.fmean([errors[k] for k in errors]) > 0:
        sys.exit(1)


if __name__ == "__main__":
    main()

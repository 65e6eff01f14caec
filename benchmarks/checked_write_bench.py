"""What checking ``kgraft query --write`` against the SHACL shapes costs, on LadybugDB.

For graphs of N datasets, times (best of 3, one warm process) one small write, ``CREATE`` of one
Dataset, three ways: unchecked (``GraphStore.execute``), checked as kgraft does it
(``kg.checked_write.execute_checked``: rows of the touched labels read before and after, only the new
or changed ones validated), and the naive check (every node of the touched labels validated after the
write). Prints milliseconds and the ratios to the unchecked write of the same run.

Usage: ``python benchmarks/checked_write_bench.py [--sizes 1000,10000]``.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from collections.abc import Callable

from benchmarks.machine import cpu_name
from kg import GraphBatch, GraphStore, open_store
from kg.checked_write import execute_checked, shape_violations, touched
from kg.rdf import export_selection
from ontology.vocab import Label

CREATE = "CREATE (d:Dataset {id: $id, name: $id, n_samples: $n})"


def naive(store: GraphStore, cypher: str, params: dict) -> None:
    """The check without the before/after diff: every node of the touched labels is validated."""
    scope = touched(cypher)
    with store.transaction() as tx:
        tx.run(cypher, params)
        assert shape_violations(export_selection(tx.run, scope.labels, scope.rels)) == []


def best_ms(write: Callable[[GraphStore, str, dict], object], store: GraphStore, tag: str) -> float:
    times = []
    for i in range(3):
        started = time.perf_counter()
        write(store, CREATE, {"id": f"{tag}-{i}", "n": 10})
        times.append(time.perf_counter() - started)
    return 1000 * min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="1000,10000", help="comma-separated dataset counts")
    args = parser.parse_args()
    print(f"machine: {cpu_name()}")
    print("datasets | unchecked | checked (diff) | naive (all) | checked / unchecked | naive / checked")
    with tempfile.TemporaryDirectory() as tmp:
        for n in (int(s) for s in args.sizes.split(",")):
            with open_store(f"embedded:{tmp}/g{n}.lbug") as store:
                batch = GraphBatch()
                for i in range(n):
                    batch.node(Label.DATASET, f"d{i}", name=f"dataset {i}", n_samples=100 + i, n_classes=10)
                store.apply(batch)
                execute_checked(store, CREATE, {"id": "warm-up", "n": 1})  # imports pyshacl, loads shapes
                plain = best_ms(lambda s, c, p: s.execute(c, p), store, "plain")
                checked = best_ms(execute_checked, store, "checked")
                full = best_ms(naive, store, "naive")
            print(
                f"{n:,} | {plain:.1f} ms | {checked:.0f} ms | {full:.0f} ms | "
                f"{checked / plain:.0f}x | {full / checked:.1f}x"
            )


if __name__ == "__main__":
    main()

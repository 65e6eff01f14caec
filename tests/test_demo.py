"""``kgraft demo`` (what ``make demo`` runs) end to end on an empty embedded store, then rerun."""

from __future__ import annotations

import time

from kg import open_store
from tests.cli import kgraft


def test_demo_end_to_end_and_idempotent(tmp_path) -> None:
    first = kgraft("demo", cwd=tmp_path, timeout=900)
    assert first.returncode == 0, first.stderr[-2000:]
    assert "registered 9 datasets and 8 models" in first.stdout
    assert "shift input-level" in first.stdout and "shift label" in first.stdout
    assert "class-imbalance" in first.stdout  # the bias query's answer
    uri = f"embedded:{tmp_path / '.kgraft/graph.lbug'}"
    with open_store(uri, read_only=True) as store:
        counts = {label: store.count(label) for label in ("Dataset", "Model", "Bias", "Activity")}
        outcomes = store.query("MATCH ()-[t:TRANSFERRED_TO]->() RETURN count(t) AS c")[0]["c"]
        scored = store.query("MATCH ()-[s:SCORED_ON]->() RETURN count(s) AS c")[0]["c"]
    assert outcomes == 1 and scored > 30
    start = time.monotonic()
    second = kgraft("demo", cwd=tmp_path, timeout=900)
    assert second.returncode == 0, second.stderr[-2000:]
    assert "recorded by an earlier run" in second.stdout
    with open_store(uri, read_only=True) as store:
        assert {label: store.count(label) for label in counts} == counts
        assert store.query("MATCH ()-[t:TRANSFERRED_TO]->() RETURN count(t) AS c")[0]["c"] == 1
    assert time.monotonic() - start < 300  # cached: no retraining

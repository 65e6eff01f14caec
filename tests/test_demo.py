"""``kgraft demo`` (what ``make demo`` runs) end to end on an empty embedded store, then rerun; and the
smaller variant (``--small``) against a real Neo4j server."""

from __future__ import annotations

import json
import time
from pathlib import Path

from kg import open_store
from tests.cli import kgraft

TARGET = "animal-mnist"


def _flat(text: str) -> str:
    return " ".join(text.split())  # rich wraps long lines


def _check_report(folder: Path) -> dict:
    from transfer.report import chosen_source, validate_report

    assert (folder / "report.html").is_file() and (folder / "report.md").is_file()
    document = json.loads((folder / "report.json").read_text())
    validate_report(document)
    assert document["target"]["id"] == TARGET
    return {"source": chosen_source(document)}


def _loop_state(uri: str) -> dict:
    """The auto run on the demo target, the scorers, and the outcome count, read from the graph."""
    from gnn.train import latest_scorer

    with open_store(uri, read_only=True) as store:
        runs = store.query(
            "MATCH (s:Model)-[t:TRANSFERRED_TO]->(:Dataset {id: $d}) RETURN s.id AS source, t.preset AS "
            "preset, t.activity AS run, t.accuracy AS accuracy",
            {"d": TARGET},
        )
        tuned = store.query(
            "MATCH (m:Model)-[:FINETUNED_FROM]->(s:Model) MATCH (m)-[:TRAINED_ON]->(:Dataset {id: $d}) "
            "RETURN m.id AS id, s.id AS source",
            {"d": TARGET},
        )
        counts = {label: store.count(label) for label in ("Dataset", "Model", "Bias", "Activity")}
        outcomes = store.query("MATCH ()-[t:TRANSFERRED_TO]->() RETURN count(t) AS c")[0]["c"]
        scored = store.query("MATCH ()-[s:SCORED_ON]->() RETURN count(s) AS c")[0]["c"]
        scorer = latest_scorer(store)
    return {
        "runs": runs,
        "tuned": tuned,
        "counts": counts,
        "outcomes": outcomes,
        "scored": scored,
        "scorer": scorer,
    }


def _check_first_run(out: str, state: dict, report: dict) -> None:
    assert "GNN scorer gnn-scorer:v1: trained (no scorer yet)" in out
    (run,) = state["runs"]
    assert run["preset"] == "auto" and run["accuracy"] > 0.2  # ten classes: chance is 0.1
    assert run["source"] == report["source"]  # the report's choice is what was fine-tuned
    assert f"source for {TARGET}: {run['source']}" in out
    assert f"fine-tuned {run['source']} -> {TARGET} with auto settings" in out
    assert "auto: freeze_cut" in out and "auto: lr_mult" in out
    # the zoo's own Animal-MNIST model is no source for Animal-MNIST
    assert "smallcnn.animal-mnist" not in run["source"]
    (tuned,) = state["tuned"]
    assert tuned["source"] == run["source"]
    assert f"$ kgraft lineage {tuned['id']}" in out  # the lineage query's answer, printed
    assert state["outcomes"] == 1
    # the scorer learned from the new outcome at the end of the loop
    assert state["scorer"].n_outcomes == 1 and "trained on the new outcome" in out
    assert "report: " in out and "report.html" in out


def test_demo_end_to_end_and_idempotent(tmp_path) -> None:
    start = time.monotonic()
    first = kgraft("demo", cwd=tmp_path, timeout=900)
    first_seconds = time.monotonic() - start
    assert first.returncode == 0, first.stderr[-2000:]
    out = _flat(first.stdout)
    assert "registered 9 datasets and 8 models" in out
    assert "shift input-level" in out and "shift label" in out
    assert "class-imbalance" in out  # the bias query's answer
    uri = f"embedded:{tmp_path / '.kgraft/graph.lbug'}"
    report = _check_report(tmp_path / ".kgraft/reports" / TARGET)
    state = _loop_state(uri)
    _check_first_run(out, state, report)
    assert state["scored"] > 30
    print(f"first demo run: {first_seconds:.0f} s")

    start = time.monotonic()
    second = kgraft("demo", cwd=tmp_path, timeout=900)
    assert second.returncode == 0, second.stderr[-2000:]
    out = _flat(second.stdout)
    assert "recorded by an earlier run" in out and "up to date, reused" in out
    assert _check_report(tmp_path / ".kgraft/reports" / TARGET) == report
    again = _loop_state(uri)
    assert again["counts"] == state["counts"] and again["outcomes"] == 1
    assert again["runs"] == state["runs"] and again["scorer"].id == state["scorer"].id
    assert time.monotonic() - start < 300  # cached: no retraining


def test_small_demo_on_neo4j(neo4j_uri, tmp_path) -> None:
    with open_store(neo4j_uri) as store:
        store.clear()
    try:
        proc = kgraft("demo", "--small", store=neo4j_uri, cwd=tmp_path, timeout=900)
        assert proc.returncode == 0, proc.stderr[-2000:]
        out = _flat(proc.stdout)
        assert "registered 9 datasets and 5 models" in out  # two zoo models and ccexam's three
        report = _check_report(tmp_path / ".kgraft/reports" / TARGET)
        state = _loop_state(neo4j_uri)
        _check_first_run(out, state, report)
    finally:
        with open_store(neo4j_uri) as store:
            store.clear()

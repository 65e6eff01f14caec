"""``kgraft gnn train|eval`` and ``kgraft recommend`` as a user runs them, on a real LadybugDB file holding
a small subset of the published TransferGraph records (read from ../shared, never copied into the
project), and the bad inputs of the GNN issue: a graph with no outcomes, a target with no profile, a
stale scorer, unknown or unusable targets."""

from __future__ import annotations

import csv
import os
from pathlib import Path

import pytest

from kg import GraphBatch, open_store
from ontology.vocab import Label, Rel
from tests.cli import assert_clean_failure, kgraft

TRANSFERGRAPH = Path(__file__).resolve().parents[2] / "shared/benchmarks/transfergraph"
TARGETS = ("dtd", "pets", "flowers", "food101")  # food101 has no row in target_dataset_features.csv
N_MODELS = 40
QUICK = ("--epochs", "20", "--ensemble", "1")
D, M = Label.DATASET, Label.MODEL


def _rows(path: Path) -> tuple[list[str], list[dict[str, str]]]:
    with path.open(newline="") as f:
        reader = csv.DictReader(f)
        return list(reader.fieldnames or []), list(reader)


def _write(path: Path, fields: list[str], rows: list[dict[str, str]]) -> None:
    with path.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=fields)
        writer.writeheader()
        writer.writerows(rows)


@pytest.fixture
def tg_subset(tmp_path) -> Path:
    """The records of the first 40 models (by name) that have an outcome on all four targets."""
    if not (TRANSFERGRAPH / "records.csv").is_file():
        if os.environ.get("CI") == "true":
            pytest.fail(f"the TransferGraph records are missing at {TRANSFERGRAPH}")
        pytest.skip(f"the TransferGraph records are not at {TRANSFERGRAPH}")
    fields, records = _rows(TRANSFERGRAPH / "records.csv")
    on = {t: {r["model"] for r in records if r["finetuned_dataset"] == t} for t in TARGETS}
    models = sorted(set.intersection(*on.values()))[:N_MODELS]
    assert len(models) == N_MODELS
    folder = tmp_path / "tg"
    folder.mkdir()
    _write(
        folder / "records.csv",
        fields,
        [r for r in records if r["model"] in models and r["finetuned_dataset"] in TARGETS],
    )
    fields, configs = _rows(TRANSFERGRAPH / "model_config_dataset.csv")
    _write(folder / "model_config_dataset.csv", fields, [r for r in configs if r["model"] in models])
    fields, features = _rows(TRANSFERGRAPH / "target_dataset_features.csv")
    _write(
        folder / "target_dataset_features.csv",
        fields,
        [r for r in features if r["target_dataset"] in TARGETS],
    )
    return folder


def _imported(tmp_path: Path, folder: Path) -> str:
    uri = f"embedded:{tmp_path / 'g.lbug'}"
    proc = kgraft("import", "transfergraph", str(folder), store=uri)
    assert proc.returncode == 0, proc.stderr
    return uri


def test_gnn_eval_on_chosen_transfergraph_targets(tmp_path, tg_subset) -> None:
    uri = _imported(tmp_path, tg_subset)
    proc = kgraft("gnn", "eval", "--targets", "dtd,transfergraph:pets", *QUICK, store=uri)
    assert proc.returncode == 0, proc.stderr
    lines = {line.split("│")[1].strip(): line for line in proc.stdout.splitlines() if line.count("│") > 3}
    for method in ("gnn", "mean-z", "gbr"):
        cells = [c.strip() for c in lines[method].split("│")[2:5]]
        assert cells[2] == "2", lines[method]  # both targets scored
        r, tau = float(cells[0]), float(cells[1])
        assert -1.0 <= r <= 1.0 and -1.0 <= tau <= 1.0
    assert "transfergraph:dtd" in proc.stdout and "transfergraph:pets" in proc.stdout
    assert "flowers" not in proc.stdout  # only the targets asked for
    assert "no SCORED_ON estimator measurements" in proc.stdout


def test_gnn_eval_refuses_unknown_and_unusable_targets(tmp_path, tg_subset) -> None:
    uri = _imported(tmp_path, tg_subset)
    assert_clean_failure(kgraft("gnn", "eval", "--targets", "dtd,nosuch", *QUICK, store=uri), "nosuch")
    with open_store(uri, read_only=True) as store:
        (row,) = store.query(
            "MATCH (m:Model)-[:TRAINED_ON]->(d:Dataset) RETURN d.id AS id ORDER BY id LIMIT 1", {}
        )
    assert_clean_failure(
        kgraft("gnn", "eval", "--targets", row["id"], *QUICK, store=uri), "has 0 recorded outcomes"
    )


def test_recommend_notes_a_target_without_profile_and_a_stale_scorer(tmp_path, tg_subset) -> None:
    uri = _imported(tmp_path, tg_subset)
    trained = kgraft("gnn", "train", "--out", str(tmp_path / "scorers"), *QUICK, store=uri)
    assert trained.returncode == 0, trained.stderr
    assert f"trained on {len(TARGETS) * N_MODELS} outcomes" in trained.stdout

    profiled = kgraft("recommend", "dtd", "--top", "3", store=uri)
    assert profiled.returncode == 0, profiled.stderr
    assert "no profile" not in profiled.stderr and "stale" not in profiled.stderr
    assert profiled.stdout.count("outcomes") >= 3  # basis column: learned from outcomes

    bare = kgraft("recommend", "food101", "--top", "3", store=uri)
    assert bare.returncode == 0, bare.stderr
    assert "'food101' has no profile" in " ".join(bare.stderr.split())

    model = _a_model(uri)
    with open_store(uri) as store:
        late = GraphBatch()
        late.edge(
            Rel.TRANSFERRED_TO,
            (M, model),
            (D, "transfergraph:dtd"),
            activity="run:late",
            accuracy=0.5,
            time="2999-01-01T00:00:00+00:00",
        )
        store.apply(late)
    stale = kgraft("recommend", "dtd", "--top", "3", store=uri)
    assert stale.returncode == 0, stale.stderr
    message = " ".join(stale.stderr.split())
    assert "is stale" in message and "retrain it with `kgraft gnn train`" in message
    assert "StaleScorerWarning" not in stale.stderr and "Traceback" not in stale.stderr
    assert message.count("is stale") == 1


def _a_model(uri: str) -> str:
    with open_store(uri, read_only=True) as store:
        (row,) = store.query(
            "MATCH (m:Model)-[:TRANSFERRED_TO]->(:Dataset {id: $d}) RETURN m.id AS id ORDER BY id LIMIT 1",
            {"d": "transfergraph:dtd"},
        )
    return row["id"]


def test_a_graph_without_outcomes_falls_back_and_eval_refuses(tmp_path) -> None:
    uri = f"embedded:{tmp_path / 'g.lbug'}"
    b = GraphBatch()
    b.node(D, "photos", name="photos", n_samples=5000, n_classes=10, image_size=[32, 32], channels=3)
    b.node(D, "target", name="target", n_samples=800, n_classes=5, image_size=[32, 32], channels=3)
    for i, arch in enumerate(("resnet18", "vit_b_16", "convnext_tiny")):
        b.node(M, f"m{i}", name=f"m{i}", architecture=arch, num_params=10**6 * (i + 1), num_classes=10)
        b.edge(Rel.TRAINED_ON, (M, f"m{i}"), (D, "photos"), split="train")
    with open_store(uri) as store:
        store.apply(b)
    trained = kgraft("gnn", "train", "--out", str(tmp_path / "scorers"), *QUICK, store=uri)
    assert trained.returncode == 0, trained.stderr
    assert "no recorded outcomes" in trained.stdout
    recs = kgraft("recommend", "target", store=uri)
    assert recs.returncode == 0, recs.stderr
    assert "falls back" in " ".join(recs.stderr.split())
    assert "self-supervised" in recs.stdout
    assert_clean_failure(kgraft("gnn", "eval", *QUICK, store=uri), "no TRANSFERRED_TO outcomes")

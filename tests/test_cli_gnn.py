"""``kgraft gnn train|eval`` and ``kgraft recommend`` as a user runs them, on a real LadybugDB file holding
the repository's invented TransferGraph-layout records (tests/fixtures/transfergraph: 16 models, 5
targets, 78 runs), and the bad inputs of the GNN issue: a graph with no outcomes, a target with no
profile, a stale scorer, unknown or unusable targets."""

from __future__ import annotations

from pathlib import Path

from kg import GraphBatch, open_store
from ontology.vocab import Label, Rel
from tests.cli import assert_clean_failure, kgraft
from tests.corpus import TRANSFERGRAPH

N_RUNS = 78  # rows of records.csv
QUICK = ("--epochs", "20", "--ensemble", "1")
D, M = Label.DATASET, Label.MODEL


def _imported(tmp_path: Path) -> str:
    """The fixture records (``sketches`` is a target with no row in target_dataset_features.csv)."""
    uri = f"embedded:{tmp_path / 'g.lbug'}"
    proc = kgraft("import", "transfergraph", str(TRANSFERGRAPH), store=uri)
    assert proc.returncode == 0, proc.stderr
    return uri


def test_gnn_eval_on_chosen_transfergraph_targets(tmp_path) -> None:
    uri = _imported(tmp_path)
    proc = kgraft("gnn", "eval", "--targets", "textures,pets", *QUICK, store=uri)
    assert proc.returncode == 0, proc.stderr
    lines = {line.split("│")[1].strip(): line for line in proc.stdout.splitlines() if line.count("│") > 3}
    for method in ("gnn", "mean-z", "gbr"):
        cells = [c.strip() for c in lines[method].split("│")[2:5]]
        assert cells[2] == "2", lines[method]  # both targets scored
        r, tau = float(cells[0]), float(cells[1])
        assert -1.0 <= r <= 1.0 and -1.0 <= tau <= 1.0
    assert "textures" in proc.stdout and "pets" in proc.stdout
    assert "leaves" not in proc.stdout  # only the targets asked for
    assert "no SCORED_ON estimator measurements" in proc.stdout


def test_gnn_eval_refuses_unknown_and_unusable_targets(tmp_path) -> None:
    uri = _imported(tmp_path)
    assert_clean_failure(kgraft("gnn", "eval", "--targets", "textures,nosuch", *QUICK, store=uri), "nosuch")
    with open_store(uri, read_only=True) as store:
        (row,) = store.query(
            "MATCH (m:Model)-[:TRAINED_ON]->(d:Dataset) RETURN d.id AS id ORDER BY id LIMIT 1", {}
        )
    assert_clean_failure(
        kgraft("gnn", "eval", "--targets", row["id"], *QUICK, store=uri), "has 0 recorded outcomes"
    )


def test_recommend_notes_a_target_without_profile_and_a_stale_scorer(tmp_path) -> None:
    uri = _imported(tmp_path)
    trained = kgraft("gnn", "train", "--out", str(tmp_path / "scorers"), *QUICK, store=uri)
    assert trained.returncode == 0, trained.stderr
    assert f"trained on {N_RUNS} recorded outcomes" in trained.stdout
    assert trained.stdout.count("trained on") == 1  # said once

    profiled = kgraft("recommend", "textures", "--top", "3", store=uri)
    assert profiled.returncode == 0, profiled.stderr
    assert "no profile" not in profiled.stderr and "stale" not in profiled.stderr
    assert profiled.stdout.count("outcomes") >= 3  # basis column: learned from outcomes

    bare = kgraft("recommend", "sketches", "--top", "3", store=uri)
    assert bare.returncode == 0, bare.stderr
    assert "'sketches' has no profile" in " ".join(bare.stderr.split())

    model = _a_model(uri)
    with open_store(uri) as store:
        late = GraphBatch()
        late.edge(
            Rel.TRANSFERRED_TO,
            (M, model),
            (D, "textures"),
            activity="run:late",
            accuracy=0.5,
            time="2999-01-01T00:00:00+00:00",
        )
        store.apply(late)
    stale = kgraft("recommend", "textures", "--top", "3", store=uri)
    assert stale.returncode == 0, stale.stderr
    message = " ".join(stale.stderr.split())
    assert "is stale" in message and "retrain it with `kgraft gnn train`" in message
    assert "StaleScorerWarning" not in stale.stderr and "Traceback" not in stale.stderr
    assert message.count("is stale") == 1


def _a_model(uri: str) -> str:
    with open_store(uri, read_only=True) as store:
        (row,) = store.query(
            "MATCH (m:Model)-[:TRANSFERRED_TO]->(:Dataset {id: $d}) RETURN m.id AS id ORDER BY id LIMIT 1",
            {"d": "textures"},
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

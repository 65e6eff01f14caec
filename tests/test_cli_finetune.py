"""``kgraft finetune`` end to end on the embedded store: the run and its outcome land in the graph."""

from __future__ import annotations

import json

from kg import open_store
from tests.cli import assert_clean_failure, kgraft


def test_cli_finetune_records_run_and_outcome(tmp_path) -> None:
    uri = f"embedded:{tmp_path / 'g.lbug'}"
    assert kgraft("dataset", "add", "digits", "--no-concepts", store=uri).returncode == 0
    assert kgraft("model", "add", "ccexam:usps", store=uri).returncode == 0
    proc = kgraft(
        "finetune",
        "--source",
        "ccexam.usps",
        "--target",
        "digits",
        "--epochs",
        "2",
        "--out",
        str(tmp_path / "run"),
        store=uri,
    )
    assert proc.returncode == 0, proc.stderr
    assert "TRANSFERRED_TO ccexam.usps -> digits" in proc.stdout
    with open_store(uri, read_only=True) as store:
        (outcome,) = store.query(
            "MATCH (:Model {id: $s})-[t:TRANSFERRED_TO]->(:Dataset {id: $d}) RETURN t.accuracy AS acc, "
            "t.activity AS run",
            {"s": "ccexam.usps", "d": "digits"},
        )
        assert outcome["acc"] > 0.3  # ten classes: chance is 0.1
        (tuned,) = store.query(
            "MATCH (m:Model)-[:FINETUNED_FROM]->(:Model {id: $s}) MATCH (m)-[:TRAINED_ON]->(d:Dataset) "
            "MATCH (m)-[:GENERATED_BY]->(a:Activity) "
            "RETURN m.id AS id, d.id AS data, a.id AS run, a.status AS s",
            {"s": "ccexam.usps"},
        )
        assert tuned["data"] == "digits" and tuned["run"] == outcome["run"] and tuned["s"] == "finished"
    lineage = json.loads(kgraft("lineage", tuned["id"], "--format", "json", store=uri).stdout)
    assert {r["id"] for r in lineage["results"]} >= {"ccexam.usps", "digits"}
    assert_clean_failure(
        kgraft("finetune", "--source", "ccexam.usps", "--target", "digits", "--settings", "turbo", store=uri),
        "",
    )
    assert_clean_failure(kgraft("finetune", "--source", "nope", "--target", "digits", store=uri), "no model")


def _outcome_count_of_latest_scorer(uri: str) -> int:
    from gnn.train import latest_scorer

    with open_store(uri, read_only=True) as store:
        info = latest_scorer(store)
    assert info is not None
    return info.n_outcomes


def test_cli_finetune_auto_source_and_settings(tmp_path) -> None:
    """``--source auto --settings auto``: the scorer's best fine-tunable source is chosen and said, the
    policy gets its compatibility, unusable models are skipped, and the next ``gnn train`` learns from it."""
    import torch

    from transfer.zoo import build_model, save_checkpoint

    uri = f"embedded:{tmp_path / 'g.lbug'}"
    assert kgraft("dataset", "add", "digits", "--no-concepts", store=uri).returncode == 0
    for spec in ("ccexam:usps", "ccexam:mnist"):
        assert kgraft("model", "add", spec, store=uri).returncode == 0
    # A model whose checkpoint went missing after registration: ranked, but never chosen.
    torch.manual_seed(0)
    weights = tmp_path / "gone.safetensors"
    save_checkpoint(build_model("smallcnn", 10, in_channels=1, image_size=8), weights)
    proc = kgraft(
        "model", "add", str(weights), "--name", "gone", "--architecture", "smallcnn",
        "--input-size", "1,8,8", "--mean", "0.5", "--std", "0.5", store=uri,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    weights.unlink()
    auto = (
        "finetune", "--source", "auto", "--target", "digits", "--settings", "auto", "--epochs", "1",
        "--probe", "0",  # the scorer's own basis; probing first is tests/test_loop.py
    )  # fmt: skip

    assert_clean_failure(kgraft(*auto, store=uri), "kgraft gnn train")  # no scorer yet
    assert kgraft("gnn", "train", "--out", str(tmp_path / "scorers"), store=uri).returncode == 0
    assert _outcome_count_of_latest_scorer(uri) == 0

    proc = kgraft(*auto, "--out", str(tmp_path / "run"), store=uri)
    assert proc.returncode == 0, proc.stderr
    out = " ".join(proc.stdout.split())  # rich wraps long lines
    chosen = out.split("source: ", 1)[1].split(":", 1)[0]
    assert chosen in {"ccexam.usps", "ccexam.mnist"}
    assert "compatibility" in out and "basis: self-supervised" in out
    assert "auto: lr_mult" in out and "compatibility" in out.split("auto: lr_mult", 1)[1][:80]
    assert f"TRANSFERRED_TO {chosen} -> digits" in out
    with open_store(uri, read_only=True) as store:
        (row,) = store.query(
            "MATCH (:Model {id: $s})-[t:TRANSFERRED_TO]->(:Dataset {id: $d}) RETURN t.preset AS preset",
            {"s": chosen, "d": "digits"},
        )
        assert row["preset"] == "auto"

    # The scorer is now stale; the next auto run says so and skips the model fine-tuned on digits.
    proc = kgraft("recommend", "digits", "--json", store=uri)
    assert "stale" in proc.stdout
    assert kgraft("gnn", "train", "--out", str(tmp_path / "scorers"), store=uri).returncode == 0
    assert _outcome_count_of_latest_scorer(uri) == 1
    proc = kgraft("recommend", "digits", "--json", store=uri)
    assert proc.returncode == 0 and "stale" not in proc.stdout
    assert json.loads(proc.stdout)[0]["basis"] == "outcomes"

    # Nothing left to fine-tune: one sentence.
    only_gone = f"embedded:{tmp_path / 'gone.lbug'}"
    assert kgraft("dataset", "add", "digits", "--no-concepts", store=only_gone).returncode == 0
    save_checkpoint(build_model("smallcnn", 10, in_channels=1, image_size=8), weights)
    proc = kgraft(
        "model", "add", str(weights), "--name", "gone", "--architecture", "smallcnn",
        "--input-size", "1,8,8", "--mean", "0.5", "--std", "0.5", store=only_gone,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    weights.unlink()
    assert kgraft("gnn", "train", "--out", str(tmp_path / "scorers2"), store=only_gone).returncode == 0
    assert_clean_failure(kgraft(*auto, store=only_gone), "no model in the graph can be fine-tuned on digits")

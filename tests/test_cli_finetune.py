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

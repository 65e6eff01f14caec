"""OpenLineage out and in: kgraft's runs as RunEvents through the official client, RunEvents from other
producers (written by the same client's FileTransport) into the graph, the round trip, and bad input."""

from __future__ import annotations

import json
import threading
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import jsonschema
import pytest
from openlineage.client import OpenLineageClient
from openlineage.client.event_v2 import InputDataset, Job, OutputDataset, Run, RunEvent, RunState
from openlineage.client.facet_v2 import RunFacet, job_type_job, schema_dataset
from openlineage.client.transport.file import FileConfig, FileTransport

from kg import GraphStore, open_store
from kg.errors import InvalidRecord
from kg.lineage import ancestors, descendants
from kg.openlineage import activity_events, emit, import_file, run_id_for, transport_for
from ontology.vocab import Label
from tests.cli import assert_clean_failure, kgraft
from tests.tracking_fixture import accuracy, source_model, source_record, target_dataset, tensors
from transfer import track
from transfer.data import derive
from transfer.register import external_dataset_batch, register_dataset, register_model
from transfer.zoo import ccexam_installed

ROOT = Path(__file__).resolve().parents[1]
SCHEMA = json.loads((ROOT / "ontology/openlineage-facets.schema.json").read_text())
pytestmark = pytest.mark.skipif(not ccexam_installed(), reason="needs the ccexam weights: pip install ccexam")


def build_graph(store: GraphStore) -> dict[str, str]:
    """MNIST -pretrain-> the ccexam CNN; digits-300 -rotate-> digits-300-rot; one finished and one failed
    tracked fine-tuning run of the CNN, and a finished one on the rotated digits. Returns the ids."""
    record, ds = source_record(), target_dataset()
    store.apply(external_dataset_batch("mnist"))
    register_model(
        store,
        record,
        pretrained_on="mnist",
        training={
            "settings": {"epochs": 10},
            "started": "2024-01-01T00:00:00+00:00",
            "ended": "2024-01-01T01:00:00+00:00",
        },
    )
    register_dataset(store, ds)
    rotated = derive(ds, "rotate", {"degrees": 90}, name="digits-300-rot")
    register_dataset(store, rotated, derived_from=ds.name)
    test = tensors(ds, record, "test")
    with track.run(store, source=record, target=ds, train_size=300, epochs=1, batch_size=32,
                   learning_rate=0.05, preset="head-only") as tuned:  # fmt: skip
        tuned.log(epoch=1, accuracy=accuracy(source_model(record), test), loss=1.5)
    with pytest.raises(RuntimeError), track.run(store, source=record, target=rotated, epochs=2) as broken:
        broken.log(epoch=1, accuracy=0.2)
        raise RuntimeError("out of memory")
    with track.run(store, source=record, target=rotated, train_size=300, epochs=1) as other:
        other.set_outcome(accuracy=0.31, baseline_accuracy=0.2)
    return {"source": record.id, "tuned": tuned.model_id, "run": tuned.run_id, "failed": broken.run_id,
            "other": other.run_id, "root": "digits-300"}  # fmt: skip


def lineage_answers(store: GraphStore, ids: dict[str, str]) -> dict:
    """The questions a user asks of the lineage, answered from ``store``."""

    def reach(rows):
        return sorted((r.label, r.id, r.name, r.distance, r.path_text("x")) for r in rows)

    return {
        "tuned up": reach(ancestors(store, Label.MODEL, ids["tuned"])),
        "root down": reach(descendants(store, Label.DATASET, ids["root"])),
        "source down": reach(descendants(store, Label.MODEL, ids["source"])),
        "outcomes": store.query(
            "MATCH (s:Model)-[t:TRANSFERRED_TO]->(d:Dataset) RETURN s.id AS src, d.id AS dst, "
            "t.activity AS act, t.accuracy AS acc, t.baseline_accuracy AS base, t.gain AS gain, "
            "t.train_size AS n, t.epochs AS epochs, t.batch_size AS batch, t.learning_rate AS lr, "
            "t.preset AS preset, t.failed AS failed ORDER BY act"
        ),
        "activities": store.query(
            "MATCH (a:Activity) RETURN a.id AS id, a.kind AS kind, a.status AS status, a.name AS name, "
            "a.started AS started, a.ended AS ended ORDER BY id"
        ),
        "used": store.query(
            "MATCH (a:Activity)-[u:USED]->(x) RETURN a.id AS act, x.id AS used, u.role AS role "
            "ORDER BY act, used"
        ),
    }


def test_export_events_carry_runs_inputs_outputs_and_kgraft_facets(store: GraphStore, tmp_path) -> None:
    ids = build_graph(store)
    events = activity_events(store)
    path = tmp_path / "events.jsonl"
    assert emit(events, transport_for(f"file:{path}")) == len(events)
    lines = [json.loads(line) for line in path.read_text().splitlines()]
    by_run: dict[str, list[dict]] = {}
    for event in lines:
        by_run.setdefault(event["run"]["runId"], []).append(event)
    # Five activities: pretrain, derive, three fine-tunes; each a START and an end event.
    assert len(by_run) == 5 and len(lines) == 10
    tuned = by_run[run_id_for(ids["run"])]
    assert [e["eventType"] for e in tuned] == ["START", "COMPLETE"]
    complete = tuned[1]
    assert {(d["namespace"], d["name"]) for d in complete["inputs"]} == {
        ("kgraft", "ccexam.mnist"),
        ("kgraft", "digits-300"),
    }
    (output,) = complete["outputs"]
    entity = output["facets"]["kgraft_entity"]
    assert (entity["label"], entity["id"]) == ("Model", ids["tuned"])
    assert entity["finetunedFrom"] == [{"id": "ccexam.mnist", "name": "ccexam mnist CNN"}]
    facets = complete["run"]["facets"]
    assert facets["kgraft_regime"]["trainSize"] == 300 and facets["kgraft_regime"]["preset"] == "head-only"
    assert (
        facets["kgraft_outcome"]["source"] == "ccexam.mnist" and facets["kgraft_outcome"]["failed"] is False
    )
    failed = by_run[run_id_for(ids["failed"])]
    assert [e["eventType"] for e in failed] == ["START", "FAIL"]
    assert failed[1]["run"]["facets"]["errorMessage"]["message"] == "RuntimeError: out of memory"
    assert failed[1]["outputs"] == [] and "kgraft_outcome" not in failed[1]["run"]["facets"]
    # Every kgraft facet validates against the schema published with the ontology.
    bodies = {
        name: d["allOf"][1] | {"$defs": SCHEMA["$defs"]}
        for name, d in SCHEMA["$defs"].items()
        if "allOf" in d
    }
    checked = 0
    for event in lines:
        named = {
            f"Kgraft{k.split('_')[1].title()}RunFacet": v
            for k, v in event["run"]["facets"].items()
            if k.startswith("kgraft_")
        }
        for item in event["inputs"] + event["outputs"]:
            named[f"KgraftEntityDatasetFacet/{item['name']}"] = item["facets"]["kgraft_entity"]
        for name, facet in named.items():
            assert facet["_schemaURL"].endswith("#/$defs/" + name.split("/")[0])
            jsonschema.validate(facet, bodies[name.split("/")[0]])
            checked += 1
    assert checked > 20
    # --since keeps the later activities only.
    assert {e.run.runId for e in activity_events(store, since="2025-01-01")} == set(by_run) - {
        run_id_for("pretrain:ccexam.mnist")
    }


def test_round_trip_gives_the_same_lineage_answers(store: GraphStore, tmp_path) -> None:
    ids = build_graph(store)
    before = lineage_answers(store, ids)
    store_uri = store.uri
    if store.dialect == "ladybug":
        store.close()  # the command opens the file itself
    path = tmp_path / "events.jsonl"
    out = kgraft("openlineage", "export", "--to", f"file:{path}", store=store_uri)
    assert out.returncode == 0, out.stderr
    assert "emitted 10 OpenLineage events for 5 runs" in out.stderr
    console = kgraft("openlineage", "export", "--to", "console", "--since", "2025-01-01", store=store_uri)
    assert console.returncode == 0, console.stderr
    shown = [json.loads(line) for line in console.stdout.splitlines()]  # the pretraining (2024) left out
    assert len(shown) == 8 and {e["job"]["namespace"] for e in shown} == {"kgraft"}
    fresh = f"embedded:{tmp_path / 'fresh.lbug'}"
    imported = kgraft("openlineage", "import", str(path), store=fresh)
    assert imported.returncode == 0, imported.stderr
    again = kgraft("openlineage", "import", str(path), store=fresh)  # the run id is the key: no change
    assert "0 nodes and 0 relationships created" in again.stdout, again.stdout
    with open_store(fresh) as copy:
        after = lineage_answers(copy, ids)
    assert after == before
    assert before["outcomes"] and before["tuned up"] and before["root down"]


def test_http_transport_posts_the_events(store: GraphStore) -> None:
    received: list[dict] = []

    class Lineage(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            received.append(
                {"path": self.path, **json.loads(self.rfile.read(int(self.headers["Content-Length"])))}
            )
            self.send_response(201)
            self.end_headers()

        def log_message(self, *args) -> None:
            pass

    build_graph(store)
    server = ThreadingHTTPServer(("127.0.0.1", 0), Lineage)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        events = activity_events(store)
        assert emit(events, transport_for(f"http:http://127.0.0.1:{server.server_port}")) == len(events)
    finally:
        server.shutdown()
    assert len(received) == len(events) == 10
    assert {r["path"] for r in received} == {"/api/v1/lineage"}
    assert {r["eventType"] for r in received} == {"START", "COMPLETE", "FAIL"}


def client_file(path: Path) -> OpenLineageClient:
    return OpenLineageClient(transport=FileTransport(FileConfig(log_file_path=str(path), append=True)))


def event(state, time, run_id, job, producer, inputs=(), outputs=(), facets=None) -> RunEvent:
    return RunEvent(
        eventType=state,
        eventTime=time,
        run=Run(runId=run_id, facets=facets or {}),
        job=job,
        producer=producer,
        inputs=list(inputs),
        outputs=list(outputs),
    )


AIRFLOW = "https://github.com/apache/airflow/tree/providers-openlineage/2.1.0"
SPARK = "https://github.com/OpenLineage/OpenLineage/tree/1.24.0/integration/spark"


def airflow_and_spark_events(path: Path) -> tuple[str, str]:
    """An Airflow task and a Spark job, as their integrations would send them, written by the client."""
    client = client_file(path)
    airflow_run, spark_run = str(uuid.uuid4()), str(uuid.uuid4())
    job_type = job_type_job.JobTypeJobFacet(processingType="BATCH", integration="AIRFLOW", jobType="TASK")
    job = Job(namespace="airflow-prod", name="images_etl.clean", facets={"jobType": job_type})
    raw = InputDataset(namespace="s3://lake", name="raw/digits")
    field = schema_dataset.SchemaDatasetFacetFields(name="pixels", type="binary")
    clean = OutputDataset(
        namespace="s3://lake",
        name="clean/digits",
        facets={"schema": schema_dataset.SchemaDatasetFacet(fields=[field])},
    )
    airflow = RunFacet().with_additional_properties(dag={"dag_id": "images_etl"}, task={"task_id": "clean"})
    for state, time in (
        (RunState.START, "2025-03-01T10:00:00Z"),
        (RunState.COMPLETE, "2025-03-01T10:05:00Z"),
    ):
        client.emit(event(state, time, airflow_run, job, AIRFLOW, [raw], [clean], {"airflow": airflow}))
    spark_job = Job(namespace="spark://cluster", name="digits_features")
    spark = {"spark_version": RunFacet().with_additional_properties(version="3.5.1")}
    cleaned = InputDataset(namespace="s3://lake", name="clean/digits")
    features = OutputDataset(namespace="s3://lake", name="features/digits")
    client.emit(
        event(RunState.START, "2025-03-01T11:00:00Z", spark_run, spark_job, SPARK, [cleaned], [], spark)
    )
    client.emit(
        event(RunState.FAIL, "2025-03-01T11:02:00Z", spark_run, spark_job, SPARK, [cleaned], [features])
    )
    return airflow_run, spark_run


def test_events_from_other_producers_become_activities_and_lineage(store: GraphStore, tmp_path) -> None:
    path = tmp_path / "other.jsonl"
    airflow_run, spark_run = airflow_and_spark_events(path)
    summary = import_file(store, path)
    assert (summary.events, summary.runs) == (4, 2)
    task = store.node(Label.ACTIVITY, f"openlineage:{airflow_run}")
    assert (task["name"], task["kind"], task["status"]) == ("images_etl.clean", "task", "finished")
    assert (task["started"], task["ended"]) == ("2025-03-01T10:00:00Z", "2025-03-01T10:05:00Z")
    kept = task["extra"]["openlineage"]
    assert kept["job"] == ["airflow-prod", "images_etl.clean"] and kept["runId"] == airflow_run
    assert kept["run_facets"]["airflow"]["dag"] == {"dag_id": "images_etl"}  # unknown facets kept
    assert kept["job_facets"]["jobType"]["integration"] == "AIRFLOW"
    assert store.node(Label.ACTIVITY, f"openlineage:{spark_run}")["status"] == "failed"
    clean = store.node(Label.DATASET, "s3://lake/clean/digits")
    assert clean["name"] == "clean/digits"
    (column,) = clean["extra"]["openlineage"]["facets"]["schema"]["fields"]  # a facet kgraft does not use
    assert (column["name"], column["type"]) == ("pixels", "binary")
    up = ancestors(store, Label.DATASET, "s3://lake/features/digits")
    assert [(r.id, r.distance, r.path[-1].how) for r in up] == [
        ("s3://lake/clean/digits", 1, "digits_features"),
        ("s3://lake/raw/digits", 2, "images_etl.clean"),
    ]
    generated = store.query("MATCH (d:Dataset)-[:GENERATED_BY]->(a:Activity) RETURN d.id AS out ORDER BY out")
    assert generated == [{"out": "s3://lake/clean/digits"}, {"out": "s3://lake/features/digits"}]
    # Idempotent: the same file again writes nothing new.
    counts = store.query("MATCH (n) RETURN count(n) AS n")
    edges = store.query("MATCH ()-[r]->() RETURN count(r) AS n")
    import_file(store, path)
    assert store.query("MATCH (n) RETURN count(n) AS n") == counts
    assert store.query("MATCH ()-[r]->() RETURN count(r) AS n") == edges


def test_malformed_or_conflicting_events_are_refused_whole(store: GraphStore, tmp_path) -> None:
    good = tmp_path / "good.jsonl"
    airflow_and_spark_events(good)
    lines = good.read_text().splitlines()
    # A malformed third event: no run.
    broken = json.loads(lines[2])
    del broken["run"]
    bad = tmp_path / "bad.jsonl"
    bad.write_text("\n".join([lines[0], lines[1], json.dumps(broken), lines[3]]) + "\n")
    with pytest.raises(
        InvalidRecord, match=r"^OpenLineage event on line 3: run.runId must be a non-empty string\.$"
    ):
        import_file(store, bad)
    truncated = tmp_path / "truncated.jsonl"
    truncated.write_text(lines[0] + "\n" + lines[1][:40] + "\n")
    with pytest.raises(InvalidRecord, match="line 2: not valid JSON"):
        import_file(store, truncated)
    # A run id reused for another job, written by the client.
    reused = tmp_path / "reused.jsonl"
    client = client_file(reused)
    run = str(uuid.uuid4())
    t1, t2 = InputDataset(namespace="db", name="t1"), OutputDataset(namespace="db", name="t2")
    client.emit(
        event(RunState.START, "2025-03-01T10:00:00Z", run, Job(namespace="airflow", name="a"), AIRFLOW, [t1])
    )
    client.emit(
        event(
            RunState.COMPLETE,
            "2025-03-01T10:01:00Z",
            run,
            Job(namespace="airflow", name="b"),
            AIRFLOW,
            [],
            [t2],
        )
    )
    with pytest.raises(InvalidRecord, match=rf"line 2: run {run} was first seen on line 1 with another job"):
        import_file(store, reused)
    assert store.query("MATCH (n) RETURN count(n) AS n") == [{"n": 0}]  # nothing of any batch written
    # Against the graph: a run id already imported as another job.
    import_file(store, good)
    again = tmp_path / "again.jsonl"
    airflow_run = json.loads(lines[0])["run"]["runId"]
    other_job = Job(namespace="airflow-prod", name="other_task")
    t3 = OutputDataset(namespace="db", name="t3")
    client_file(again).emit(
        event(RunState.COMPLETE, "2025-03-02T10:00:00Z", airflow_run, other_job, AIRFLOW, [], [t3])
    )
    n = store.query("MATCH (n) RETURN count(n) AS n")
    with pytest.raises(
        InvalidRecord, match=r"line 1: run .* is already in the graph as job airflow-prod/images_etl\.clean"
    ):
        import_file(store, again)
    assert store.query("MATCH (n) RETURN count(n) AS n") == n


def test_cli_refuses_bad_input_in_one_sentence(tmp_path) -> None:
    path = tmp_path / "bad.jsonl"
    path.write_text('{"eventType": "START"}\n')
    out = kgraft("openlineage", "import", str(path), store=f"embedded:{tmp_path / 'g.lbug'}")
    assert_clean_failure(out, "OpenLineage event on line 1: run.runId must be a non-empty string.")
    out = kgraft("openlineage", "export", "--to", "kafka:topic", store=f"embedded:{tmp_path / 'g.lbug'}")
    assert_clean_failure(out, "unknown OpenLineage destination 'kafka:topic'")

"""OpenLineage in and out: the graph's Activities as RunEvents, and RunEvents from any producer as Activities.

Out (``activity_events``, ``emit``): each Activity becomes a START event (at ``started``) and, once it
ended, a COMPLETE or FAIL event (at ``ended``), through the official ``openlineage-python`` client's
transports (``file:PATH`` appends JSON lines, ``console``, ``http:URL``). The mapping:

===============================  ============================================================
OpenLineage                      kgraft
===============================  ============================================================
run.runId                        UUID 5 of the Activity id (the same id on every export)
job (namespace ``kgraft``)       the Activity's name
inputs                           what the Activity USED (datasets and models; role kept)
outputs                          what was GENERATED_BY it
run facet ``kgraft_activity``    id, kind, name, status, settings, metrics, device, times, extra
run facet ``kgraft_regime``      train size, epochs, batch size, learning rate, preset
run facet ``kgraft_outcome``     the TRANSFERRED_TO outcome: source, target, accuracy, ... failed
run facet ``errorMessage``       a failed run's error (the standard facet)
dataset facet ``kgraft_entity``  label (Dataset or Model), id, name, role, and the entity's own
                                 lineage: DERIVED_FROM (how), TRAINED_ON (split), FINETUNED_FROM
===============================  ============================================================

The custom facets' JSON schema is ``ontology/openlineage-facets.schema.json`` (``FACET_SCHEMA_URL``).

In (``read_events``, ``import_batch``): JSON lines of RunEvents from any producer. The run id is the
key: a run becomes the Activity ``openlineage:{runId}`` (or the id in its ``kgraft_activity`` facet),
its status from its latest event (START/RUNNING running, COMPLETE finished, FAIL failed, ABORT aborted).
Inputs are USED, outputs GENERATED_BY it; each output dataset is DERIVED_FROM each input dataset (how:
the job's name) unless a ``kgraft_entity`` facet gives the exact lineage. Facets kgraft does not know
(Airflow's, Spark's, anyone's) are kept under ``extra.openlineage``. The whole file is one batch:
a malformed event, or a run id reused with other facts (another job, another kgraft id, another
outcome), is refused with one sentence naming its line, and nothing is written.
"""

from __future__ import annotations

import json
import logging
import sys
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import attr
from openlineage.client import OpenLineageClient
from openlineage.client.event_v2 import InputDataset, Job, OutputDataset, Run, RunEvent, RunState
from openlineage.client.facet_v2 import DatasetFacet, RunFacet, error_message_run
from openlineage.client.transport import Transport
from openlineage.client.transport.console import ConsoleConfig, ConsoleTransport
from openlineage.client.transport.file import FileConfig, FileTransport
from openlineage.client.transport.http import HttpConfig, HttpTransport

from kg.batch import GraphBatch
from kg.errors import InvalidRecord
from kg.ids import openlineage_dataset_id
from kg.store import GraphStore
from ontology.vocab import NAMESPACE, Label, Rel

NAMESPACE_KGRAFT = "kgraft"
"""Job and dataset namespace of everything kgraft emits."""
PRODUCER = "https://kgraft.dev/kgraft"
FACET_SCHEMA_URL = "https://kgraft.dev/ontology/openlineage-facets.schema.json"
RUN_ID_NAMESPACE = uuid.uuid5(uuid.NAMESPACE_URL, NAMESPACE)
D, M, A = Label.DATASET, Label.MODEL, Label.ACTIVITY
KGRAFT_FACETS = ("kgraft_activity", "kgraft_regime", "kgraft_outcome", "kgraft_entity")
STATUS = {
    "START": "running",
    "RUNNING": "running",
    "COMPLETE": "finished",
    "FAIL": "failed",
    "ABORT": "aborted",
}
EVENT_TYPES = (*STATUS, "OTHER")


# -- the custom facets (their schema: ontology/openlineage-facets.schema.json) ----------------------


@attr.define
class KgraftActivityRunFacet(RunFacet):
    """The kgraft Activity behind a run."""

    id: str
    kind: str | None = None
    name: str | None = None
    status: str | None = None
    settings: dict[str, Any] | None = None
    metrics: dict[str, Any] | None = None
    device: str | None = None
    started: str | None = None
    ended: str | None = None
    extra: dict[str, Any] | None = None

    @staticmethod
    def _get_schema() -> str:
        return f"{FACET_SCHEMA_URL}#/$defs/KgraftActivityRunFacet"


@attr.define
class KgraftRegimeRunFacet(RunFacet):
    """What a fine-tuning run trained under."""

    trainSize: int | None = None  # OpenLineage facets name their fields in camelCase
    epochs: int | None = None
    batchSize: int | None = None
    learningRate: float | None = None
    preset: str | None = None

    @staticmethod
    def _get_schema() -> str:
        return f"{FACET_SCHEMA_URL}#/$defs/KgraftRegimeRunFacet"


@attr.define
class KgraftOutcomeRunFacet(RunFacet):
    """A fine-tuning outcome: how well ``source`` transferred to ``target``."""

    source: str
    target: str
    accuracy: float | None = None
    baselineAccuracy: float | None = None
    gain: float | None = None
    sourceAccuracyBefore: float | None = None
    sourceAccuracyAfter: float | None = None
    forgetting: float | None = None
    failed: bool | None = None
    time: str | None = None

    @staticmethod
    def _get_schema() -> str:
        return f"{FACET_SCHEMA_URL}#/$defs/KgraftOutcomeRunFacet"


@attr.define
class KgraftEntityDatasetFacet(DatasetFacet):
    """The kgraft node an OpenLineage dataset stands for, and its own lineage."""

    label: str
    id: str
    name: str | None = None
    role: str | None = None
    derivedFrom: list[dict[str, Any]] | None = None
    trainedOn: list[dict[str, Any]] | None = None
    finetunedFrom: list[dict[str, Any]] | None = None

    @staticmethod
    def _get_schema() -> str:
        return f"{FACET_SCHEMA_URL}#/$defs/KgraftEntityDatasetFacet"


OUTCOME_FIELDS = {
    "accuracy": "accuracy",
    "baseline_accuracy": "baselineAccuracy",
    "gain": "gain",
    "source_accuracy_before": "sourceAccuracyBefore",
    "source_accuracy_after": "sourceAccuracyAfter",
    "forgetting": "forgetting",
    "failed": "failed",
    "time": "time",
}
REGIME_FIELDS = {
    "train_size": "trainSize",
    "epochs": "epochs",
    "batch_size": "batchSize",
    "learning_rate": "learningRate",
    "preset": "preset",
}


# -- out --------------------------------------------------------------------------------------------


def run_id_for(activity_id: str) -> str:
    """The OpenLineage run id of an Activity: a UUID 5, so every export names the run the same."""
    return str(uuid.uuid5(RUN_ID_NAMESPACE, activity_id))


def _lineage(store: GraphStore, label: Label, ids: list[str]) -> dict[str, dict[str, list]]:
    """Each entity's own lineage relationships, three queries for all of them."""
    out: dict[str, dict[str, list]] = {
        i: {"derivedFrom": [], "trainedOn": [], "finetunedFrom": []} for i in ids
    }
    if not ids:
        return out
    queries = [
        ("trainedOn", Rel.TRAINED_ON, D, "r.split AS split"),
        ("finetunedFrom", Rel.FINETUNED_FROM, M, ""),
    ]
    if label == D:
        queries = [("derivedFrom", Rel.DERIVED_FROM, D, "r.how AS how")]
    for key, rel, parent, extra_col in queries:
        cols = "x.id AS child, p.id AS id, p.name AS name" + (f", {extra_col}" if extra_col else "")
        rows = store.query(
            f"MATCH (x:{label})-[r:{rel}]->(p:{parent}) WHERE x.id IN $ids RETURN {cols} ORDER BY id",
            {"ids": ids},
        )
        for row in rows:
            child = row.pop("child")
            out[child][key].append({k: v for k, v in row.items() if v is not None})
    return out


def _entities(store: GraphStore, activity_id: str, pattern: str) -> list[dict[str, Any]]:
    """The datasets and models joined to an Activity by ``pattern`` (``x`` the entity, ``r`` the edge)."""
    rows: list[dict[str, Any]] = []
    for label in (D, M):
        role = "r.role AS role" if "USED" in pattern else "NULL AS role"
        found = store.query(
            f"MATCH {pattern.format(label=label)} WHERE a.id = $id RETURN x.id AS id, x.name AS name, {role} "
            "ORDER BY id",
            {"id": activity_id},
        )
        lineage = _lineage(store, label, [r["id"] for r in found])
        rows += [{"label": str(label), **r, **lineage[r["id"]]} for r in found]
    return rows


def _entity_facet(entity: dict[str, Any]) -> KgraftEntityDatasetFacet:
    return KgraftEntityDatasetFacet(
        label=entity["label"],
        id=entity["id"],
        name=entity.get("name"),
        role=entity.get("role"),
        derivedFrom=entity.get("derivedFrom") or None,
        trainedOn=entity.get("trainedOn") or None,
        finetunedFrom=entity.get("finetunedFrom") or None,
        producer=PRODUCER,
    )


def activity_events(store: GraphStore, since: str | None = None) -> list[RunEvent]:
    """START and COMPLETE/FAIL/ABORT RunEvents of every Activity (started at or after ``since``, an ISO
    time), oldest first."""
    activities = [
        a for a in store.nodes(A) if not since or (a.get("started") or a.get("created") or "") >= since
    ]
    activities.sort(key=lambda a: (a.get("started") or a.get("created") or "", a["id"]))
    events: list[RunEvent] = []
    for act in activities:
        inputs = _entities(store, act["id"], "(a:Activity)-[r:USED]->(x:{label})")
        outputs = _entities(store, act["id"], "(x:{label})-[r:GENERATED_BY]->(a:Activity)")
        job = Job(namespace=NAMESPACE_KGRAFT, name=act.get("name") or act["id"])
        facets: dict[str, RunFacet] = {
            "kgraft_activity": KgraftActivityRunFacet(
                id=act["id"],
                **{
                    k: act.get(k)
                    for k in ("kind", "name", "status", "settings", "metrics", "device", "started")
                },
                ended=act.get("ended"),
                extra=act.get("extra"),
                producer=PRODUCER,
            )
        }
        outcome = store.query(
            "MATCH (s:Model)-[t:TRANSFERRED_TO]->(d:Dataset) WHERE t.activity = $id RETURN s.id AS source, "
            "d.id AS target, " + ", ".join(f"t.{p} AS {p}" for p in (*OUTCOME_FIELDS, *REGIME_FIELDS)),
            {"id": act["id"]},
        )
        if outcome:
            row = outcome[0]
            facets["kgraft_outcome"] = KgraftOutcomeRunFacet(
                source=row["source"],
                target=row["target"],
                **{camel: row[p] for p, camel in OUTCOME_FIELDS.items()},
                producer=PRODUCER,
            )
            facets["kgraft_regime"] = KgraftRegimeRunFacet(
                **{camel: row[p] for p, camel in REGIME_FIELDS.items()}, producer=PRODUCER
            )
        run_id = run_id_for(act["id"])
        ins = [
            InputDataset(NAMESPACE_KGRAFT, e["id"], facets={"kgraft_entity": _entity_facet(e)})
            for e in inputs
        ]
        outs = [
            OutputDataset(NAMESPACE_KGRAFT, e["id"], facets={"kgraft_entity": _entity_facet(e)})
            for e in outputs
        ]
        start_time = act.get("started") or act.get("created") or act.get("ended")
        if start_time:
            start_facets = {"kgraft_activity": facets["kgraft_activity"]}
            events.append(_event(RunState.START, start_time, run_id, job, start_facets, ins, []))
        status = act.get("status")
        end_state = {"finished": RunState.COMPLETE, "failed": RunState.FAIL, "aborted": RunState.ABORT}.get(
            status
        )
        if end_state is not None and act.get("ended"):
            error = (act.get("extra") or {}).get("error")
            if end_state == RunState.FAIL and error:
                facets["errorMessage"] = error_message_run.ErrorMessageRunFacet(
                    message=str(error), programmingLanguage="python", producer=PRODUCER
                )
            events.append(_event(end_state, act["ended"], run_id, job, facets, ins, outs))
    return events


def _event(
    state: RunState,
    time: str,
    run_id: str,
    job: Job,
    facets: dict[str, RunFacet],
    inputs: list[InputDataset],
    outputs: list[OutputDataset],
) -> RunEvent:
    return RunEvent(
        eventType=state,
        eventTime=time,
        run=Run(runId=run_id, facets=facets),
        job=job,
        producer=PRODUCER,
        inputs=inputs,
        outputs=outputs,
    )


def transport_for(spec: str) -> Transport:
    """The client transport named by ``file:PATH`` (JSON lines, appended), ``console`` (stdout) or
    ``http:URL`` / ``https://...`` (an OpenLineage endpoint, e.g. Marquez)."""
    if spec.startswith("file:"):
        path = Path(spec.removeprefix("file:")).expanduser()
        if not path.parent.is_dir():
            raise InvalidRecord(
                f"cannot write OpenLineage events to {path}: folder {path.parent} does not exist."
            )
        return FileTransport(FileConfig(log_file_path=str(path), append=True))
    if spec == "console":
        console = logging.getLogger("openlineage.client.transport.console")
        if not any(getattr(h, "kgraft", False) for h in console.handlers):
            handler = logging.StreamHandler(sys.stdout)
            handler.kgraft = True  # type: ignore[attr-defined]
            handler.setFormatter(logging.Formatter("%(message)s"))
            console.addHandler(handler)
        console.setLevel(logging.INFO)
        return ConsoleTransport(ConsoleConfig())
    if spec.startswith(("http:", "https:")):
        url = spec if spec.startswith(("http://", "https://")) else spec.removeprefix("http:")
        if not url.startswith(("http://", "https://")):
            raise InvalidRecord(
                f"http:URL needs a full URL such as http:http://localhost:5000, got {spec!r}."
            )
        return HttpTransport(HttpConfig(url=url))
    raise InvalidRecord(f"unknown OpenLineage destination {spec!r}: use file:PATH, console or http:URL.")


def emit(events: Iterable[RunEvent], transport: Transport) -> int:
    """Send ``events`` through the official client with ``transport``; returns how many were sent."""
    client = OpenLineageClient(transport=transport)
    n = 0
    for event in events:
        client.emit(event)
        n += 1
    return n


# -- in ---------------------------------------------------------------------------------------------


@dataclass
class _Run:
    """Everything the events of one run id say, merged."""

    run_id: str
    line: int
    job: tuple[str, str]
    activity_id: str
    events: list[tuple[str, str, int]] = field(default_factory=list)  # (time, type, line)
    facets: dict[str, Any] = field(default_factory=dict)
    job_facets: dict[str, Any] = field(default_factory=dict)
    producer: str | None = None
    inputs: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)
    outputs: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)


@dataclass(frozen=True)
class ImportSummary:
    """What an import read and wrote."""

    events: int
    runs: int
    activities: list[str]
    batch: GraphBatch


def _fail(line: int, message: str) -> InvalidRecord:
    return InvalidRecord(f"OpenLineage event on line {line}: {message}")


def read_events(path: str | Path) -> list[tuple[int, dict[str, Any]]]:
    """The JSON-lines file's events with their line numbers (blank lines skipped); one sentence for a
    line that is not a JSON object."""
    path = Path(path)
    if not path.is_file():
        raise InvalidRecord(f"no OpenLineage file at {path}.")
    events = []
    with path.open(encoding="utf-8") as f:
        for n, text in enumerate(f, 1):
            if not text.strip():
                continue
            try:
                event = json.loads(text)
            except json.JSONDecodeError as err:
                raise _fail(n, f"not valid JSON ({err.msg} at column {err.colno}).") from None
            if not isinstance(event, dict):
                raise _fail(n, "not a JSON object.")
            events.append((n, event))
    return events


def _text(event: Mapping[str, Any], line: int, *path: str) -> str:
    value: Any = event
    for key in path:
        value = value.get(key) if isinstance(value, Mapping) else None
    if not isinstance(value, str) or not value:
        raise _fail(line, f"{'.'.join(path)} must be a non-empty string.")
    return value


def _check_event(event: Mapping[str, Any], line: int) -> None:
    """A RunEvent's required parts (OpenLineage 2-0-2): run.runId (a UUID), job namespace and name,
    eventTime; eventType, when given, one of the spec's; inputs and outputs lists of datasets."""
    run_id = _text(event, line, "run", "runId")
    try:
        uuid.UUID(run_id)
    except ValueError:
        raise _fail(line, f"run.runId {run_id!r} is not a UUID.") from None
    _text(event, line, "job", "namespace")
    _text(event, line, "job", "name")
    _text(event, line, "eventTime")
    kind = event.get("eventType")
    if kind is not None and kind not in EVENT_TYPES:
        raise _fail(line, f"eventType {kind!r} is not one of {', '.join(EVENT_TYPES)}.")
    for side in ("inputs", "outputs"):
        items = event.get(side) or []
        if not isinstance(items, list):
            raise _fail(line, f"{side} must be a list.")
        for i, item in enumerate(items):
            if not isinstance(item, Mapping):
                raise _fail(line, f"{side}[{i}] must be an object.")
            _text({side: item}, line, side, "namespace")
            _text({side: item}, line, side, "name")
            if not isinstance(item.get("facets") or {}, Mapping):
                raise _fail(line, f"{side}[{i}].facets must be an object.")
    for part in ("run", "job"):
        if not isinstance(event[part].get("facets") or {}, Mapping):
            raise _fail(line, f"{part}.facets must be an object.")


def _same(run: _Run, name: str, old: Any, new: Any, line: int) -> None:
    if old is not None and new is not None and old != new:
        raise _fail(
            line,
            f"run {run.run_id} was first seen on line {run.line} with another {name} ({old!r}, now {new!r}).",
        )


def _facet_body(facet: Any) -> dict[str, Any]:
    """A facet without the ``_producer`` / ``_schemaURL`` bookkeeping."""
    return {k: v for k, v in facet.items() if not k.startswith("_")} if isinstance(facet, Mapping) else {}


def _merge_runs(events: list[tuple[int, dict[str, Any]]]) -> dict[str, _Run]:
    runs: dict[str, _Run] = {}
    for line, event in events:
        _check_event(event, line)
        run_id = event["run"]["runId"]
        job = (event["job"]["namespace"], event["job"]["name"])
        facets = event["run"].get("facets") or {}
        kgraft_id = _facet_body(facets.get("kgraft_activity")).get("id")
        activity_id = kgraft_id or f"openlineage:{run_id}"
        run = runs.get(run_id)
        if run is None:
            run = runs[run_id] = _Run(run_id, line, job, activity_id)
        _same(run, "job", f"{run.job[0]}/{run.job[1]}", f"{job[0]}/{job[1]}", line)
        _same(run, "kgraft activity id", run.activity_id, activity_id, line)
        for name in ("kgraft_outcome", "kgraft_regime"):
            if name in facets and name in run.facets:
                _same(
                    run,
                    name.replace("_", " "),
                    _facet_body(run.facets[name]),
                    _facet_body(facets[name]),
                    line,
                )
        run.facets.update(facets)
        run.job_facets.update(event["job"].get("facets") or {})
        run.producer = event.get("producer") or run.producer
        run.events.append((event["eventTime"], event.get("eventType") or "OTHER", line))
        for side, into in (("inputs", run.inputs), ("outputs", run.outputs)):
            for item in event.get(side) or []:
                key = (item["namespace"], item["name"])
                into.setdefault(key, {}).update(item.get("facets") or {})
    return runs


def _node_id(key: tuple[str, str], facets: Mapping[str, Any]) -> tuple[Label, str, str]:
    """(label, id, name) of an OpenLineage dataset: the kgraft node its facet names, else a Dataset
    ``{namespace}/{name}`` (just ``name`` in the kgraft namespace)."""
    entity = _facet_body(facets.get("kgraft_entity"))
    if entity.get("id") and entity.get("label") in (str(D), str(M)):
        return Label(entity["label"]), entity["id"], entity.get("name") or entity["id"]
    namespace, name = key
    return D, openlineage_dataset_id(namespace, name, NAMESPACE_KGRAFT), name


def _check_store(store: GraphStore, runs: dict[str, _Run]) -> None:
    """A run id already imported must not come back as another Activity or another job."""
    for run in runs.values():
        existing = store.node(A, run.activity_id)
        seen = ((existing or {}).get("extra") or {}).get("openlineage") or {}
        if seen.get("runId") not in (None, run.run_id):
            raise _fail(
                run.line, f"activity {run.activity_id} is already in the graph as run {seen['runId']}."
            )
        if seen.get("job") and tuple(seen["job"]) != run.job:
            old = "/".join(seen["job"])
            raise _fail(
                run.line, f"run {run.run_id} is already in the graph as job {old}, not {'/'.join(run.job)}."
            )


def _existing_extra(store: GraphStore, label: Label, id: str, cache: dict) -> dict[str, Any]:
    if (label, id) not in cache:
        cache[(label, id)] = dict(((store.node(label, id) or {}).get("extra")) or {})
    return cache[(label, id)]


def import_batch(store: GraphStore, events: list[tuple[int, dict[str, Any]]]) -> ImportSummary:
    """The batch that records ``events`` (see the module docstring); nothing is written here."""
    runs = _merge_runs(events)
    _check_store(store, runs)
    batch = GraphBatch()
    extras: dict[tuple[Label, str], dict[str, Any]] = {}
    for run in runs.values():
        try:
            _record_run(store, batch, run, extras)
        except (InvalidRecord, KeyError, TypeError, ValueError) as err:
            reason = str(err) if isinstance(err, InvalidRecord) else f"a facet is malformed ({err!r})."
            raise _fail(run.line, f"run {run.run_id} cannot be recorded: {reason}") from None
    return ImportSummary(len(events), len(runs), sorted(r.activity_id for r in runs.values()), batch)


def _record_run(store: GraphStore, batch: GraphBatch, run: _Run, extras: dict) -> None:
    """Add one merged run's Activity, entities, lineage and outcome to ``batch``."""
    # Time order; at the same instant a run starts before it runs, and runs before it ends.
    rank = {"START": 0, "RUNNING": 1, "OTHER": 2}
    order = sorted(run.events, key=lambda e: (e[0], rank.get(e[1], 3), e[2]))
    states = [kind for _, kind, _ in order if kind in STATUS]
    act_facet = _facet_body(run.facets.get("kgraft_activity"))
    started = next((t for t, kind, _ in order if kind == "START"), order[0][0])
    ended = next((t for t, kind, _ in reversed(order) if kind in ("COMPLETE", "FAIL", "ABORT")), None)
    extra = dict(act_facet.get("extra") or {})
    error = _facet_body(run.facets.get("errorMessage")).get("message")
    if error:
        extra.setdefault("error", error)
    extra["openlineage"] = {
        "runId": run.run_id,
        "job": list(run.job),
        "producer": run.producer,
        "run_facets": {k: v for k, v in run.facets.items() if k not in (*KGRAFT_FACETS, "errorMessage")},
        "job_facets": run.job_facets,
    }
    job_type = _facet_body(run.job_facets.get("jobType")).get("jobType")
    batch.node(
        A,
        run.activity_id,
        name=act_facet.get("name") or run.job[1],
        kind=act_facet.get("kind") or (str(job_type).lower() if job_type else "openlineage"),
        status=STATUS[states[-1]] if states else act_facet.get("status"),
        settings=act_facet.get("settings"),
        metrics=act_facet.get("metrics"),
        device=act_facet.get("device"),
        started=act_facet.get("started") or started,
        ended=act_facet.get("ended") or ended,
        extra=extra,
    )
    ins = [(_node_id(k, f), f, k) for k, f in sorted(run.inputs.items())]
    outs = [(_node_id(k, f), f, k) for k, f in sorted(run.outputs.items())]
    for (label, id, name), facets, key in [*ins, *outs]:
        entity = _facet_body(facets.get("kgraft_entity"))
        unknown = {k: v for k, v in facets.items() if k != "kgraft_entity"}
        props: dict[str, Any] = {"name": name}
        if unknown or not entity:
            extra_now = _existing_extra(store, label, id, extras)
            known = (extra_now.get("openlineage") or {}).get("facets") or {}
            extra_now["openlineage"] = {"namespace": key[0], "name": key[1], "facets": {**known, **unknown}}
            props["extra"] = extra_now
        batch.node(label, id, **props)
        _entity_lineage(batch, label, id, entity)
    for (label, id, _), facets, _ in ins:
        role = _facet_body(facets.get("kgraft_entity")).get("role") or "input"
        batch.edge(Rel.USED, (A, run.activity_id), (label, id), role=role)
    for (label, id, _), facets, _ in outs:
        batch.edge(Rel.GENERATED_BY, (label, id), (A, run.activity_id))
        if label == D and not _facet_body(facets.get("kgraft_entity")):
            for (in_label, in_id, _), _, _ in ins:
                if in_label == D and in_id != id:
                    batch.edge(
                        Rel.DERIVED_FROM, (D, id), (D, in_id), how=run.job[1], activity=run.activity_id
                    )
    _outcome(batch, run)


def _entity_lineage(batch: GraphBatch, label: Label, id: str, entity: Mapping[str, Any]) -> None:
    """The lineage a ``kgraft_entity`` facet carries, with any parent it names."""
    for parent in entity.get("derivedFrom") or []:
        batch.node(D, parent["id"], name=parent.get("name"))
        batch.edge(Rel.DERIVED_FROM, (label, id), (D, parent["id"]), how=parent.get("how"))
    for parent in entity.get("trainedOn") or []:
        batch.node(D, parent["id"], name=parent.get("name"))
        batch.edge(Rel.TRAINED_ON, (label, id), (D, parent["id"]), split=parent.get("split"))
    for parent in entity.get("finetunedFrom") or []:
        batch.node(M, parent["id"], name=parent.get("name"))
        batch.edge(Rel.FINETUNED_FROM, (label, id), (M, parent["id"]))


def _outcome(batch: GraphBatch, run: _Run) -> None:
    outcome = _facet_body(run.facets.get("kgraft_outcome"))
    if not outcome.get("source") or not outcome.get("target"):
        return
    regime = _facet_body(run.facets.get("kgraft_regime"))
    batch.node(M, outcome["source"])
    batch.node(D, outcome["target"])
    batch.edge(
        Rel.TRANSFERRED_TO,
        (M, outcome["source"]),
        (D, outcome["target"]),
        activity=run.activity_id,
        **{p: outcome.get(camel) for p, camel in OUTCOME_FIELDS.items()},
        **{p: regime.get(camel) for p, camel in REGIME_FIELDS.items()},
    )


def import_file(store: GraphStore, path: str | Path) -> ImportSummary:
    """Record a JSON-lines file of RunEvents in one transaction (all of it, or nothing)."""
    summary = import_batch(store, read_events(path))
    store.apply(summary.batch)
    return summary


__all__ = [
    "FACET_SCHEMA_URL",
    "ImportSummary",
    "KgraftActivityRunFacet",
    "KgraftEntityDatasetFacet",
    "KgraftOutcomeRunFacet",
    "KgraftRegimeRunFacet",
    "activity_events",
    "emit",
    "import_batch",
    "import_file",
    "read_events",
    "run_id_for",
    "transport_for",
]

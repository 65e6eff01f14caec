"""The ranked candidate sources: the GNN's scores beside the estimator scores recorded in the graph.

Compatibility, uncertainty, shift and bias risk come from ``gnn.scores.recommend``; the
transferability estimators (LogME, LEEP, NCE, H-score, SFDA, k-NN, linear probe) are the SCORED_ON
measurements ``kgraft probe`` recorded for each (candidate, target) pair. Each candidate also says
whether its checkpoint is on this machine, since only such a source can be probed or fine-tuned.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

from gnn.builder import ESTIMATOR_KINDS, SCORER_KIND
from gnn.scores import Recommendation, StaleScorerWarning, recommend
from kg.store import GraphStore
from ontology.vocab import Label
from transfer.report.errors import ReportError
from transfer.report.values import number

ALL = 1_000_000


def candidate_count(store: GraphStore) -> int:
    """How many models in the graph can be a source (every model but the GNN scorers)."""
    rows = store.query(
        "MATCH (m:Model) WHERE m.kind IS NULL OR m.kind <> $scorer RETURN count(m) AS c",
        {"scorer": SCORER_KIND},
    )
    return int(rows[0]["c"])


def rank(store: GraphStore, target_id: str, top: int, scorer_id: str | None) -> list[Recommendation]:
    """``recommend`` for the target; the stale-scorer warning travels in each recommendation's notes."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", StaleScorerWarning)
        return recommend(store, target_id, top=top, scorer_id=scorer_id)


def estimator_scores(store: GraphStore, target_id: str) -> dict[str, dict[str, dict[str, Any]]]:
    """Recorded transferability estimates on the target: model id -> kind -> {value, time, n}."""
    rows = store.query(
        "MATCH (m:Model)-[r:SCORED_ON]->(:Dataset {id: $t}) WHERE r.layer = $layer "
        "RETURN m.id AS model, r.kind AS kind, r.value AS value, r.time AS time, r.sample_size AS n",
        {"t": target_id, "layer": "penultimate"},
    )
    out: dict[str, dict[str, dict[str, Any]]] = {}
    for r in rows:
        if r["kind"] in ESTIMATOR_KINDS:
            out.setdefault(r["model"], {})[r["kind"]] = {
                "value": number(r["value"]),
                "time": r["time"],
                "sample_size": r["n"],
            }
    return out


def checkpoint_problem(store: GraphStore, model_id: str) -> str | None:
    """Why ``model_id`` cannot be loaded on this machine (one sentence), or ``None`` when it can."""
    from transfer.zoo.loading import checkpoint_path
    from transfer.zoo.record import ModelRecord

    node = store.node(Label.MODEL, model_id)
    if node is None:
        return f"no model {model_id!r} in the graph."
    try:
        path = Path(checkpoint_path(ModelRecord.from_properties(node)))
    except Exception as exc:  # ZooError: no record to rebuild, no weights recorded
        return f"model {model_id!r} cannot be loaded here: {exc}"
    if not path.is_file():
        return f"the checkpoint of model {model_id!r} is missing: {path} does not exist."
    return None


def not_finetunable(store: GraphStore, model_id: str, target_id: str | None = None) -> str | None:
    """Why ``model_id`` cannot be a fine-tuning source (for ``target_id``), or ``None`` when it can."""
    from transfer.zoo.loading import checkpoint_path
    from transfer.zoo.record import ModelRecord, ZooError

    props = store.node(Label.MODEL, model_id)
    if props is None:
        return "not in the graph"
    kind = props.get("kind") or "classifier"
    if kind != "classifier":
        return f"a {kind}, not a classifier"
    try:
        record = ModelRecord.from_properties(props)
        path = checkpoint_path(record)
    except ZooError as exc:
        return str(exc).rstrip(".")
    if not path.is_file():
        return f"its checkpoint {path} is missing"
    if target_id is not None:
        rows = store.query(
            "MATCH (:Model {id: $m})-[:TRAINED_ON]->(d:Dataset {id: $d}) RETURN d.id AS id",
            {"m": model_id, "d": target_id},
        )
        if rows:
            return "already trained on the target itself"
    return None


def candidate_row(rec: Recommendation, estimates: dict[str, dict[str, Any]], problem: str | None) -> dict:
    """One ranking row of the report document."""
    return {
        "rank": rec.rank,
        "model_id": rec.model_id,
        "name": rec.name,
        "compatibility": number(rec.compatibility),
        "uncertainty": number(rec.uncertainty),
        "shift_risk": number(rec.shift_risk),
        "bias_risk": number(rec.bias_risk),
        "basis": rec.basis,
        "predicted_accuracy": number(rec.predicted_accuracy),
        "recorded_accuracy": number(rec.recorded_accuracy),
        "estimators": {kind: e["value"] for kind, e in sorted(estimates.items())},
        "facts": {key: list(values) for key, values in rec.facts.items()},
        "loadable": problem is None,
        "load_problem": problem,
    }


def choose(
    store: GraphStore,
    target_id: str,
    recs: list[Recommendation],
    source_id: str | None,
    scorer_id: str | None,
) -> tuple[Recommendation, list[str]]:
    """The recommendation for the source to report on, and notes on candidates passed over.

    An explicit source must be loadable (else ``ReportError`` naming the missing file). Without one,
    the best-ranked candidate that can be fine-tuned here is chosen, by the same test as ``kgraft
    finetune --source auto`` (``not_finetunable``: a classifier whose checkpoint is on this machine, not
    already trained on the target itself).
    """
    if source_id is not None:
        problem = checkpoint_problem(store, source_id)
        if problem:
            raise ReportError(problem)
        found = [r for r in recs if r.model_id == source_id]
        if not found:
            found = [r for r in rank(store, target_id, ALL, scorer_id) if r.model_id == source_id]
        if not found:
            raise ReportError(f"model {source_id!r} is not a candidate source for {target_id!r}.")
        return found[0], []
    passed: list[str] = []
    seen: set[str] = set()
    for batch in (recs, None):
        for rec in batch if batch is not None else rank(store, target_id, ALL, scorer_id):
            if rec.model_id in seen:
                continue
            seen.add(rec.model_id)
            problem = not_finetunable(store, rec.model_id, target_id)
            if problem is None:
                return rec, passed
            passed.append(f"passed over rank {rec.rank} {rec.model_id}: {problem}")
    shown = "; ".join(passed[:2])
    raise ReportError(
        f"none of the {len(seen)} candidate sources for {target_id!r} can be fine-tuned on this "
        f"machine ({shown})."
    )

"""The ranked candidate sources: the GNN's scores beside the estimator scores recorded in the graph.

Compatibility, uncertainty, shift and bias risk come from ``gnn.scores.recommend``; the
transferability estimators (LogME, LEEP, NCE, H-score, SFDA, k-NN, linear probe) are the SCORED_ON
measurements ``kgraft probe`` recorded for each (candidate, target) pair. Each candidate also says
whether its checkpoint is on this machine, since only such a source can be probed or fine-tuned.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from gnn.builder import ESTIMATOR_KINDS, SCORER_KIND
from gnn.scores import Recommendation
from kg.store import GraphStore
from ontology.vocab import Label
from transfer.report.values import number


def candidate_count(store: GraphStore) -> int:
    """How many models in the graph can be a source (every model but the GNN scorers)."""
    rows = store.query(
        "MATCH (m:Model) WHERE m.kind IS NULL OR m.kind <> $scorer RETURN count(m) AS c",
        {"scorer": SCORER_KIND},
    )
    return int(rows[0]["c"])


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

"""``build_report``: the transfer-suitability report for a target as one JSON-able document.

The document (schema: ``report.schema.json``) holds the ranked candidate sources, the chosen
source's shift analysis and bias analysis, the recommended fine-tuning settings with their reasons,
and the report's own provenance. The ranking needs a trained GNN scorer (``kgraft gnn train``); with
no outcomes recorded the scorer falls back to estimator scores and says so in each row's ``basis``.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from kg.errors import NotFound
from kg.store import GraphStore
from ontology.vocab import Label
from transfer.report.bias import bias_section
from transfer.report.errors import ReportError
from transfer.report.provenance import now, provenance_section, scorer_info
from transfer.report.ranking import (
    candidate_count,
    candidate_row,
    checkpoint_problem,
    choose,
    estimator_scores,
    rank,
)
from transfer.report.settings import settings_section
from transfer.report.shift import measurements, shift_section

SCHEMA_ID = "kgraft-report/1"
MAX_NOTES = 5


def _resolve(store: GraphStore, name: str, label: Label, what: str) -> str:
    try:
        return store.resolve(name, (label,))[1]
    except NotFound as exc:
        raise ReportError(f"unknown {what}: {exc}") from None


def build_report(
    store: GraphStore,
    target: str,
    source: str | None = None,
    *,
    top: int = 10,
    scorer_id: str | None = None,
    probe_missing: bool = True,
    work_dir: Path | None = None,
    step: Callable[[str], None] = lambda _: None,
) -> dict[str, Any]:
    """The report document for ``target`` (dataset id or name).

    ``source`` (model id or name) fixes the source to analyse; without it the best-ranked candidate
    whose checkpoint is on this machine is chosen. ``top`` rows are ranked. When the chosen pair was
    never probed, ``probe_missing`` runs ``kgraft probe``'s measurement first (curves to ``work_dir``);
    otherwise the report says how to measure it. ``step`` receives progress messages. Raises
    ``ReportError`` (one sentence) for an unknown target or source, a graph without candidates, a
    missing checkpoint, or no trained scorer.
    """
    if top < 1:
        raise ReportError(f"--top must be at least 1, got {top}.")
    target_id = _resolve(store, target, Label.DATASET, "target dataset")
    source_id = _resolve(store, source, Label.MODEL, "source model") if source is not None else None
    if source_id is not None and (problem := checkpoint_problem(store, source_id)):
        raise ReportError(problem)
    if candidate_count(store) == 0:
        raise ReportError(
            f"the graph holds no candidate source models for {target_id!r}; add some with "
            "`kgraft model add` or `kgraft zoo build`."
        )
    info = scorer_info(store, scorer_id)
    step(f"ranking sources for {target_id}")
    recs = rank(store, target_id, top, info.id)
    if not recs:
        raise ReportError(f"the scorer ranked no candidate source models for {target_id!r}.")
    chosen, passed = choose(store, target_id, recs, source_id, info.id)
    estimates = estimator_scores(store, target_id)
    rows = [
        candidate_row(r, estimates.get(r.model_id, {}), checkpoint_problem(store, r.model_id)) for r in recs
    ]
    if all(r["model_id"] != chosen.model_id for r in rows):
        rows.append(candidate_row(chosen, estimates.get(chosen.model_id, {}), None))
    shift = shift_section(
        store, chosen.model_id, target_id, probe_missing=probe_missing, work_dir=work_dir, step=step
    )
    if shift["probed_now"]:  # the new measurements belong in the ranking row too
        estimates = estimator_scores(store, target_id)
        for row in rows:
            if row["model_id"] == chosen.model_id:
                row["estimators"] = {
                    k: e["value"] for k, e in sorted(estimates.get(chosen.model_id, {}).items())
                }
    step("bias analysis and settings")
    target_node = store.node(Label.DATASET, target_id) or {}
    how = "given" if source_id is not None else ("top-ranked" if chosen.rank == 1 else "best fine-tunable")
    notes = list(dict.fromkeys(note for r in recs for note in r.notes))
    notes += passed[:MAX_NOTES]
    if len(passed) > MAX_NOTES:
        notes.append(f"... and {len(passed) - MAX_NOTES} more candidates passed over")
    generated = now()
    return {
        "schema": SCHEMA_ID,
        "generated_at": generated,
        "target": {
            "id": target_id,
            "name": target_node.get("name") or target_id,
            "n_samples": target_node.get("n_samples"),
            "n_classes": target_node.get("n_classes"),
            "split_counts": target_node.get("split_counts") or {},
        },
        "chosen_source": {
            "id": chosen.model_id,
            "name": chosen.name,
            "rank": chosen.rank,
            "how": how,
            "compatibility": rows[[r["model_id"] for r in rows].index(chosen.model_id)]["compatibility"],
        },
        "ranking": {
            "basis": recs[0].basis,
            "top": top,
            "candidates_in_graph": candidate_count(store),
            "candidates": rows,
        },
        "shift": shift,
        "bias": bias_section(store, chosen.model_id, target_id),
        "settings": settings_section(
            store, chosen.model_id, target_id, chosen.compatibility, chosen.uncertainty
        ),
        "provenance": provenance_section(
            store, info, measurements(store, chosen.model_id, target_id), estimates, generated
        ),
        "notes": notes,
    }


def chosen_source(document: dict[str, Any]) -> str:
    """The model id the report recommends as the source."""
    return document["chosen_source"]["id"]

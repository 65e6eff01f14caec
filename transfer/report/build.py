"""``build_report``: the transfer-suitability report for a target as one JSON-able document.

``render_document`` renders a ``transfer.loop.TransferPlan`` (it reads the graph and does no work);
``build_report`` plans with auto settings and renders.

The document (schema: ``report.schema.json``) holds the ranked candidate sources, the chosen
source's shift analysis and bias analysis, the recommended fine-tuning settings with their reasons,
and the report's own provenance. The ranking needs a trained GNN scorer (``kgraft gnn train``); with
no outcomes recorded the scorer falls back to estimator scores and says so in each row's ``basis``.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from gnn.train import ScorerInfo
from kg.clock import now
from kg.errors import NotFound
from kg.store import GraphStore
from ontology.vocab import Label
from transfer.loop import NotACandidate, TransferPlan, plan
from transfer.report.bias import bias_section
from transfer.report.errors import ReportError
from transfer.report.provenance import provenance_section, scorer_info
from transfer.report.ranking import candidate_count, candidate_row, checkpoint_problem, estimator_scores
from transfer.report.settings import settings_section
from transfer.report.shift import measurements, shift_section
from transfer.report.values import number
from transfer.source_choice import NoCandidateSource

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
    probe: int = 0,
    work_dir: Path | None = None,
    step: Callable[[str], None] = lambda _: None,
    probe_progress: Callable[[str, int, int], None] | None = None,
) -> dict[str, Any]:
    """The report document for ``target`` (dataset id or name): ``plan`` with auto settings, rendered.

    ``source`` (model id or name) fixes the source to analyse; without it the best-ranked candidate
    that can be fine-tuned here is chosen. ``top`` rows are shown. ``probe=K`` probes the K most
    promising unmeasured candidates before ranking; ``probe_missing`` probes the chosen pair when it
    was never measured (curves to ``work_dir``), otherwise the report says how to measure it. ``step``
    receives progress messages. Raises ``ReportError`` (one sentence) for an unknown target or source,
    a graph without candidates, a missing checkpoint, or no trained scorer.
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
    try:
        p = plan(
            store,
            target_id,
            source_id or "auto",
            "auto",
            top=top,
            probe=probe,
            probe_missing=probe_missing,
            scorer_id=info.id,
            work_dir=work_dir,
            step=step,
            probe_progress=probe_progress,
        )
    except (NoCandidateSource, NotACandidate) as exc:
        raise ReportError(str(exc)) from None
    return render_document(p, top=top, scorer=info)


def _passed_over(p: TransferPlan) -> list[str]:
    return [f"passed over rank {rank} {model}: {why}" for rank, model, why in p.choice.skipped]


def render_document(p: TransferPlan, *, top: int = 10, scorer: ScorerInfo | None = None) -> dict[str, Any]:
    """The report document of a plan: its ranking (the first ``top`` rows, and the chosen source's row
    when it lies further down), the chosen pair's shift and bias analysis read from the graph, the
    plan's settings with their reasons, and provenance. Reads the graph; probes and ranks nothing."""
    store, target_id = p.store, p.target_id
    if p.ranking is None or not p.ranking.candidates:
        raise ReportError(f"the scorer ranked no candidate source models for {target_id!r}.")
    info = scorer if scorer is not None else scorer_info(store, p.scorer_id)
    recs = list(p.ranking.candidates)
    estimates = estimator_scores(store, target_id)
    shown = recs[:top]
    if all(r.model_id != p.source_id for r in shown):
        shown += [r for r in recs if r.model_id == p.source_id]
    rows = [
        candidate_row(r, estimates.get(r.model_id, {}), checkpoint_problem(store, r.model_id)) for r in shown
    ]
    chosen = next(r for r in recs if r.model_id == p.source_id)
    passed = _passed_over(p)
    notes = list(p.ranking.notes) + passed[:MAX_NOTES]
    if len(passed) > MAX_NOTES:
        notes.append(f"... and {len(passed) - MAX_NOTES} more candidates passed over")
    target_node = store.node(Label.DATASET, target_id) or {}
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
            "how": p.how,
            "compatibility": number(chosen.compatibility),
        },
        "ranking": {
            "basis": recs[0].basis,
            "top": top,
            "candidates_in_graph": candidate_count(store),
            "candidates": rows,
        },
        "shift": shift_section(store, chosen.model_id, target_id, probed_now=p.probed_now),
        "bias": bias_section(store, chosen.model_id, target_id),
        "settings": settings_section(p),
        "provenance": provenance_section(
            store, info, measurements(store, chosen.model_id, target_id), estimates, generated
        ),
        "notes": notes,
    }


def chosen_source(document: dict[str, Any]) -> str:
    """The model id the report recommends as the source."""
    return document["chosen_source"]["id"]

"""Provenance of a report: the scorer that ranked, the measurements it shows and when, the software
and the store."""

from __future__ import annotations

import importlib.metadata
from typing import Any

from gnn.train import ScorerInfo, latest_scorer, load_scorer
from kg.store import GraphStore
from transfer.report.errors import ReportError


def kgraft_version() -> str:
    """The installed kgraft version (``unknown`` when run from a bare checkout)."""
    try:
        return importlib.metadata.version("kgraft")
    except importlib.metadata.PackageNotFoundError:
        return "unknown"


def scorer_info(store: GraphStore, scorer_id: str | None) -> ScorerInfo:
    """The scorer the ranking used: ``scorer_id``, else the newest one recorded."""
    info = latest_scorer(store) if scorer_id is None else load_scorer(store, scorer_id)[1]
    if info is None:
        raise ReportError("the graph holds no trained GNN scorer; run `kgraft gnn train` first.")
    return info


def provenance_section(
    store: GraphStore,
    info: ScorerInfo,
    pair_measurements: list[dict[str, Any]],
    estimates: dict[str, dict[str, dict[str, Any]]],
    generated_at: str,
) -> dict[str, Any]:
    """The report's ``provenance`` section."""
    times = [e["time"] for kinds in estimates.values() for e in kinds.values() if e.get("time")]
    return {
        "generated_at": generated_at,
        "kgraft_version": kgraft_version(),
        "store": store.uri,
        "scorer": {
            "id": info.id,
            "version": info.version,
            "trained_at": info.created or None,
            "basis": info.basis,
            "n_outcomes": info.n_outcomes,
            "checksum": info.checksum or None,
            "snapshot": info.snapshot_id or None,
        },
        "measurements": pair_measurements,
        "candidate_estimates": {
            "pairs": len(estimates),
            "oldest": min(times, default=None),
            "newest": max(times, default=None),
        },
    }

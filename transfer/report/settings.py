"""Recommended fine-tuning settings for the chosen pair: the policy's decisions, each with its reason."""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from kg.store import GraphStore
from transfer.policy import inputs_from_graph, recommend_settings
from transfer.report.values import json_safe, number


def settings_section(
    store: GraphStore, source_id: str, target_id: str, compatibility: float | None, uncertainty: float | None
) -> dict[str, Any]:
    """The report's ``settings`` section: ``decisions`` (setting, value, reason) and every ``values``."""
    inputs = inputs_from_graph(
        store, source_id, target_id, compatibility=number(compatibility), uncertainty=number(uncertainty)
    )
    chosen, decisions = recommend_settings(inputs)
    return {
        "preset": "auto",
        "decisions": [
            {"setting": d.setting, "value": json_safe(d.value), "reason": d.reason} for d in decisions
        ],
        "values": json_safe(asdict(chosen)),
        "command": f"kgraft finetune --source {source_id} --target {target_id} --settings auto",
    }

"""Recommended fine-tuning settings for the chosen pair: the plan's settings and the policy's decisions,
each with its reason."""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from transfer.loop import TransferPlan
from transfer.report.values import json_safe


def settings_section(p: TransferPlan) -> dict[str, Any]:
    """The report's ``settings`` section: ``decisions`` (setting, value, reason) and every ``values``."""
    return {
        "preset": p.preset,
        "decisions": [
            {"setting": d.setting, "value": json_safe(d.value), "reason": d.reason} for d in p.decisions
        ],
        "values": json_safe(asdict(p.settings)),
        "command": f"kgraft finetune --source {p.source_id} --target {p.target_id} --settings {p.preset}",
    }

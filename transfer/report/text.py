"""Formatting shared by the Markdown and HTML renderings: numbers, shares and setting values."""

from __future__ import annotations

import json
from typing import Any


def fmt(value: Any, digits: int = 3) -> str:
    """A number to ``digits`` decimals, a p-value in scientific form when tiny, ``-`` for none."""
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.2e}" if 0 < abs(value) < 10 ** (-digits) else f"{value:.{digits}f}"
    return str(value)


def p_value(value: float | None) -> str:
    """A p-value: scientific when tiny, ``< 1e-300`` when it underflowed to zero, ``-`` for none."""
    if value is None:
        return "-"
    if value == 0:
        return "< 1e-300"
    return f"{value:.2e}" if value < 1e-3 else f"{value:.3f}"


def pct(value: float | None) -> str:
    """A share as a percentage, ``unknown`` for none."""
    return "unknown" if value is None else f"{value:.0%}"


def setting_value(value: Any) -> str:
    """A setting's value as short text."""
    if isinstance(value, dict | list):
        return json.dumps(value, separators=(", ", ": "))
    return str(value)


def compatibility_text(row: dict[str, Any]) -> str:
    """``0.812 ± 0.031`` (or without the spread when unknown)."""
    spread = row.get("uncertainty")
    return fmt(row["compatibility"]) + ("" if spread is None else f" ± {spread:.3f}")


ESTIMATOR_ORDER = ("logme", "leep", "nce", "hscore", "sfda", "knn_accuracy", "linear_probe_accuracy")
ESTIMATOR_NAMES = {
    "logme": "LogME",
    "leep": "LEEP",
    "nce": "NCE",
    "hscore": "H-score",
    "sfda": "SFDA",
    "knn_accuracy": "k-NN",
    "linear_probe_accuracy": "lin. probe",
}


def estimator_columns(document: dict[str, Any]) -> list[str]:
    """The estimator kinds recorded for any ranked candidate, in a fixed order."""
    seen = {k for row in document["ranking"]["candidates"] for k in row["estimators"]}
    return [k for k in ESTIMATOR_ORDER if k in seen] + sorted(seen - set(ESTIMATOR_ORDER))

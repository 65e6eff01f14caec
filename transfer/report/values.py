"""Small value helpers shared by the report's sections: JSON-safe numbers and measured-kind names."""

from __future__ import annotations

import json
import math
from typing import Any


def number(value: Any) -> float | None:
    """``value`` as a finite float, else ``None`` (NaN and infinity are not JSON)."""
    if value is None or isinstance(value, bool):
        return None
    try:
        out = float(value)
    except (TypeError, ValueError):
        return None
    return out if math.isfinite(out) else None


def decoded(value: Any) -> Any:
    """A JSON property as stored by either store: text is parsed, anything else passes through."""
    if isinstance(value, str):
        try:
            return json.loads(value)
        except json.JSONDecodeError:
            return value
    return value


def json_safe(value: Any) -> Any:
    """``value`` with every non-finite float replaced by ``None`` and tuples as lists."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [json_safe(v) for v in value]
    return value

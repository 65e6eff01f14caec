"""Encoding of property values between Python and the stores.

Stores hold scalars only; ``json``-kind properties (lists, dicts) travel as canonical JSON text.
"""

from __future__ import annotations

import json
import math
from typing import Any

from kg.errors import InvalidRecord
from ontology.vocab import NODES, RELS, Label, Rel


def _props(owner: Label | Rel) -> dict[str, str]:
    return NODES[owner].properties if isinstance(owner, Label) else RELS[owner].properties


def encode_value(kind: str, value: Any, where: str) -> Any:
    """Check ``value`` against ``kind`` and turn it into what the store holds."""
    if value is None:
        return None
    if kind == "json":
        return json.dumps(value, sort_keys=True, separators=(",", ":"), allow_nan=False)
    if kind == "string":
        if not isinstance(value, str):
            raise InvalidRecord(f"{where} must be text, got {type(value).__name__}.")
        return value
    if kind == "bool":
        if not isinstance(value, bool):
            raise InvalidRecord(f"{where} must be true or false, got {value!r}.")
        return value
    if kind == "int":
        if isinstance(value, bool) or not isinstance(value, int):
            if isinstance(value, float) and value.is_integer():
                return int(value)
            raise InvalidRecord(f"{where} must be a whole number, got {value!r}.")
        return value
    if kind == "float":
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise InvalidRecord(f"{where} must be a number, got {value!r}.")
        if not math.isfinite(value):
            raise InvalidRecord(f"{where} must be a finite number, got {value!r}.")
        return float(value)
    raise AssertionError(f"unknown kind {kind}")


def encode_props(owner: Label | Rel, props: dict[str, Any], what: str) -> dict[str, Any]:
    """Validate and encode a property dict; unknown names are refused with the list of known ones."""
    spec = _props(owner)
    out: dict[str, Any] = {}
    for name, value in props.items():
        kind = spec.get(name)
        if kind is None:
            known = ", ".join(sorted(spec))
            raise InvalidRecord(f"{what}: {owner} has no property {name!r} (known: {known}).")
        out[name] = encode_value(kind, value, f"{what}: {owner}.{name}")
    return out


def decode_props(owner: Label | Rel, props: dict[str, Any]) -> dict[str, Any]:
    """Turn stored values back into Python ones (JSON text into lists and dicts); drop nulls."""
    spec = _props(owner)
    out: dict[str, Any] = {}
    for name, value in props.items():
        if value is None or name.startswith("_") or name not in spec:
            continue
        out[name] = json.loads(value) if spec[name] == "json" and isinstance(value, str) else value
    return out

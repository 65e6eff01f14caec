"""The report's published JSON Schema (draft 2020-12) and validation against it."""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path
from typing import Any

from transfer.report.errors import ReportError

SCHEMA_PATH = Path(__file__).with_name("report.schema.json")


@cache
def report_schema() -> dict[str, Any]:
    """The schema document (``report.schema.json`` beside this module)."""
    return json.loads(SCHEMA_PATH.read_text())


def validate_report(document: dict[str, Any]) -> None:
    """Raise ``ReportError`` naming the first place where ``document`` breaks the schema."""
    import jsonschema

    validator = jsonschema.Draft202012Validator(
        report_schema(), format_checker=jsonschema.Draft202012Validator.FORMAT_CHECKER
    )
    error = jsonschema.exceptions.best_match(validator.iter_errors(document))
    if error is not None:
        where = "/".join(str(p) for p in error.absolute_path) or "(top level)"
        raise ReportError(f"the report does not match its schema at {where}: {error.message}.")

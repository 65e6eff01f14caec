"""The one error type of the report package: a user can fix it, and it reads as one sentence."""

from __future__ import annotations


class ReportError(Exception):
    """A report cannot be built or written (unknown target, no candidates, missing checkpoint, ...)."""

"""The one error type of the report package: a user can fix it, and it reads as one sentence."""

from __future__ import annotations

from kg.errors import UserError


class ReportError(UserError):
    """A report cannot be built or written (unknown target, no candidates, missing checkpoint, ...)."""

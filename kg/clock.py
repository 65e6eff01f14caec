"""The one clock: every time kgraft stores is UTC, ISO 8601, to the second."""

from __future__ import annotations

from datetime import UTC, datetime


def now() -> str:
    """The current UTC time as ISO 8601 to the second (how kgraft stores times)."""
    return datetime.now(UTC).isoformat(timespec="seconds")

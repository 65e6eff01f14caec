"""Errors the graph layer raises for things a user can fix.

Each carries one clear sentence; the command line prints it and exits non-zero, without a traceback.
"""

from __future__ import annotations


class UserError(Exception):
    """Base of every refusal a user can fix (bad input, unknown names, missing files, unreachable
    servers): one sentence, printed by the command line without a traceback and with exit code 1.

    Every layer's error types derive from it (``KgError`` here; ``DataError``, ``ZooError``,
    ``ProbeError``, ``FinetuneError``, ``ReportError``, ``ScorerError`` above), so one ``isinstance``
    test recognises them all.
    """


class KgError(UserError):
    """The graph layer's user-facing failures."""


class StoreUnavailable(KgError):
    """The store cannot be opened or reached (server down, file locked, bad URI)."""


class AuthenticationFailed(StoreUnavailable):
    """The server refused the credentials."""


class QueryFailed(KgError):
    """A Cypher query was malformed or failed when run."""


class ReadOnlyViolation(KgError):
    """A write was attempted through a read-only query or store."""


class InvalidRecord(KgError):
    """A record or import file is malformed or violates the ontology's shapes."""


class NotFound(KgError):
    """A named dataset, model or other node is not in the graph."""


def is_user_error(exc: BaseException) -> bool:
    """True for an error a user can fix (a ``UserError``), False for a bug."""
    return isinstance(exc, UserError)

"""Errors the graph layer raises for things a user can fix.

Each carries one clear sentence; the command line prints it and exits non-zero, without a traceback.
"""

from __future__ import annotations


class KgError(Exception):
    """Base class: a user-facing failure with a one-sentence message."""


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

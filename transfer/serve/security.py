"""The server's two guards: the bearer token on writes, and read-only Cypher.

Read-only Cypher is checked twice. First the text: comments, string literals and quoted names are
removed, the statement must start with a reading clause, and no keyword that writes, calls a
procedure or reads files may appear (``CREATE``, ``MERGE``, ``SET``, ``DELETE``, ``REMOVE``, ``CALL``,
``LOAD CSV``, LadybugDB's ``COPY`` / ``LOAD FROM`` / ``EXPORT`` / ``ATTACH`` / ``INSTALL`` ...). Then
the store runs it in a read-only transaction (LadybugDB ``READ ONLY``, Neo4j read access, rolled
back), so a write that slipped past the text check still fails.
"""

from __future__ import annotations

import hmac
import re

from kg.errors import KgError

READING_STARTS = {"MATCH", "OPTIONAL", "WITH", "UNWIND", "RETURN"}
FORBIDDEN = {
    # writes
    "CREATE", "MERGE", "SET", "DELETE", "DETACH", "REMOVE", "DROP", "ALTER", "FOREACH",
    # procedures, subqueries that may call them, files and the database itself
    "CALL", "LOAD", "COPY", "EXPORT", "IMPORT", "ATTACH", "INSTALL", "USE", "CHECKPOINT",
    "BEGIN", "COMMIT", "ROLLBACK", "GRANT", "REVOKE", "DENY", "START", "STOP", "TERMINATE", "SHOW",
    "EXPLAIN", "PROFILE",
}  # fmt: skip
_LITERALS = re.compile(
    r"""//[^\n]*|/\*.*?\*/|'(?:[^'\\]|\\.)*'|"(?:[^"\\]|\\.)*"|`[^`]*`""",
    re.DOTALL,
)
_WORDS = re.compile(r"[A-Za-z_][A-Za-z_0-9]*")


class Unauthorized(KgError):
    """A write without the right bearer token."""


class CypherRefused(KgError):
    """A Cypher statement the read-only API will not run."""


def check_token(header: str | None, token: str) -> None:
    """Raise ``Unauthorized`` unless ``header`` is ``Bearer <token>`` (compared in constant time)."""
    if not token:
        raise Unauthorized("writes are disabled: the server was started without KGRAFT_TOKEN.")
    scheme, _, given = (header or "").partition(" ")
    if scheme.lower() != "bearer" or not hmac.compare_digest(given.strip().encode(), token.encode()):
        raise Unauthorized("writes need the header 'Authorization: Bearer <KGRAFT_TOKEN>'.")


def check_read_only_cypher(cypher: str) -> None:
    """Raise ``CypherRefused`` (one sentence) unless ``cypher`` is one reading statement."""
    text = _LITERALS.sub(" ", cypher)
    words = [w.upper() for w in _WORDS.findall(text)]
    if not words:
        raise CypherRefused("the query is empty.")
    if ";" in text.rstrip().rstrip(";"):
        raise CypherRefused("send one statement at a time.")
    if words[0] not in READING_STARTS:
        raise CypherRefused(
            f"a read-only query starts with MATCH, OPTIONAL MATCH, WITH, UNWIND or RETURN, not {words[0]}."
        )
    bad = sorted(set(words) & FORBIDDEN)
    if bad:
        raise CypherRefused(f"the read-only query API does not run {', '.join(bad)}.")

"""Where kgraft keeps the files that belong to a graph (trained scorers, ...): beside the store.

A LadybugDB store is one file, so its files sit next to it: ``embedded:/data/team.lbug`` keeps its
scorers in ``/data/team.lbug.scorers/``. A Neo4j server has no folder of ours, so its files go under
``.kgraft/`` in the current folder, named after the server (never its credentials):
``neo4j://db.example:7687`` -> ``.kgraft/neo4j-db.example-7687.scorers/``. Two graphs never share a
folder, so scorer versions (numbered per graph) cannot overwrite each other.
"""

from __future__ import annotations

import re
from pathlib import Path
from urllib.parse import urlsplit

from kg.store import resolve_store_uri

__all__ = ["beside_store"]

SERVER_FILES = Path(".kgraft")
"""The folder (relative to the current one) that holds the files of server stores."""


def beside_store(uri: str | None, kind: str) -> Path:
    """The folder for ``kind`` files (e.g. ``"scorers"``) of the store ``uri`` (resolved as
    ``open_store`` resolves it: ``--store``, ``KGRAFT_STORE``, kgraft.toml, the default)."""
    uri = resolve_store_uri(uri)
    if uri.startswith("embedded:"):
        path = Path(uri.removeprefix("embedded:")).expanduser()
        return path.parent / f"{path.name}.{kind}"
    parts = urlsplit(uri)
    server = [parts.scheme, parts.hostname or "localhost", str(parts.port or "")]
    server += [p for p in parts.path.split("/") if p]  # a database name, where the URI has one
    name = "-".join(re.sub(r"[^A-Za-z0-9._]+", "-", p).strip("-") for p in server if p)
    return SERVER_FILES / f"{name}.{kind}"

"""Shared fixtures: the same graph tests run against a real LadybugDB file and a real Neo4j server.

Neo4j comes from ``NEO4J_URI`` (``make test`` starts one with ``scripts/neo4j/start.sh``). Without it
the Neo4j half of the suite fails under CI (``CI=true``) and is skipped elsewhere with the reason,
only when Java or Maven is missing; otherwise the fixture starts the server itself.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from kg import GraphStore, open_store

ROOT = Path(__file__).resolve().parents[1]


def _neo4j_uri() -> str:
    if os.environ.get("NEO4J_URI"):
        return os.environ["NEO4J_URI"]
    missing = [tool for tool in ("java", "mvn") if shutil.which(tool) is None]
    if missing and os.environ.get("CI") != "true":
        pytest.skip(f"Neo4j tests need {' and '.join(missing)} to start a local server")
    out = subprocess.run(
        ["bash", str(ROOT / "scripts/neo4j/start.sh")], capture_output=True, text=True, check=False
    )
    if out.returncode != 0:
        pytest.fail(f"could not start Neo4j: {out.stderr.strip().splitlines()[-1:]}")
    for part in out.stdout.split():
        if "=" in part and part.split("=", 1)[0] in {"NEO4J_URI", "NEO4J_USER", "NEO4J_PASSWORD"}:
            key, value = part.split("=", 1)
            os.environ[key] = value
    return os.environ["NEO4J_URI"]


@pytest.fixture(scope="session")
def neo4j_uri() -> str:
    """The Bolt URI of a running Neo4j (started on demand)."""
    return _neo4j_uri()


def _wipe(store: GraphStore) -> None:
    store.clear()


@pytest.fixture(params=["ladybug", "neo4j"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[GraphStore]:
    """An empty store of each kind: a fresh LadybugDB file, or the Neo4j server wiped clean."""
    if request.param == "ladybug":
        s = open_store(f"embedded:{tmp_path / 'graph.lbug'}")
    else:
        s = open_store(request.getfixturevalue("neo4j_uri"))
        _wipe(s)
    try:
        yield s
    finally:
        s.close()  # tests may close it early, to hand the file or server to a subprocess
        if request.param == "neo4j":
            with open_store(s.uri) as fresh:
                _wipe(fresh)


@pytest.fixture
def store_uri(request: pytest.FixtureRequest, store: GraphStore) -> str:
    """The URI of ``store`` (closed first for LadybugDB so another process can open the file)."""
    if store.dialect == "ladybug":
        store.close()
    return store.uri

"""Shared fixtures: the same graph tests run against a real LadybugDB file and a real Neo4j server.

Neo4j comes from ``NEO4J_URI`` (``make test`` starts one with ``scripts/neo4j/start.sh``). Without it
the Neo4j half of the suite fails under CI (``CI=true``) and is skipped elsewhere with the reason,
only when Java or Maven is missing; otherwise the fixture starts the server itself.

Every test's data lives in the repository (``tests/fixtures``), except for the tests that ask for the
``shared_corpus`` fixture or carry the ``shared_corpus`` mark: they read the larger corpus in a
``shared`` folder beside the clone (see ``tests/corpus.py``). Where that folder is absent they are
deselected and the run says so once, in its header and its summary; under CI (``CI=true``) they run.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from kg import GraphStore, open_store
from tests.corpus import SHARED, SHARED_MISSING

ROOT = Path(__file__).resolve().parents[1]
_DESELECTED = pytest.StashKey[int]()


def _shared_present() -> bool:
    return SHARED.is_dir()


def pytest_report_header(config: pytest.Config) -> str:
    return f"shared corpus: {SHARED}" if _shared_present() else SHARED_MISSING


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Deselect the tests that read the shared corpus when it is absent (outside CI), counting them."""
    if _shared_present() or os.environ.get("CI") == "true":
        return

    def reads_corpus(item: pytest.Item) -> bool:
        fixtures = getattr(item, "fixturenames", ())
        return "shared_corpus" in fixtures or item.get_closest_marker("shared_corpus") is not None

    corpus = [item for item in items if reads_corpus(item)]
    if corpus:
        items[:] = [item for item in items if not reads_corpus(item)]
        config.hook.pytest_deselected(items=corpus)
    config.stash[_DESELECTED] = len(corpus)


def pytest_terminal_summary(terminalreporter, exitstatus: int, config: pytest.Config) -> None:
    count = config.stash.get(_DESELECTED, 0)
    if count:
        terminalreporter.write_line(f"{SHARED_MISSING} ({count} deselected)", yellow=True)


@pytest.fixture(scope="session")
def shared_corpus() -> Path:
    """The shared corpus folder; a test asking for it runs only where the folder exists (and in CI)."""
    if not _shared_present():
        pytest.fail(f"the shared corpus is missing at {SHARED}")
    return SHARED


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

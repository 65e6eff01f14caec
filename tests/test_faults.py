"""Faults: ``kill -9`` in the middle of an import, a derivation and a fine-tune, on both stores, then a
rerun; and a Neo4j server stopped under a long import.

Every write kgraft makes is one ``GraphBatch`` applied in one transaction, so a killed command leaves
the graph as it was before that write or with all of it, never part of it, and the same command run
again finishes. The kill points are observed, not guessed where that is possible: LadybugDB's
checkpoint files appear while a commit is being made durable, Neo4j lists the open transaction and
its current statement (``SHOW TRANSACTIONS``), and a fine-tune writes its checkpoint after each epoch.

A fine-tune killed mid-training leaves its Activity ``running`` (nothing can mark a SIGKILLed process
failed). ``kgraft finetune --resume`` with the same ``--out`` takes that same Activity over
(``resumed``, then ``finished``); a fresh run into another folder starts a new Activity and the killed
one stays ``running`` in ``kgraft query`` and the lineage views, without an outcome.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from kg import open_store
from kg.wordnet import DEFAULT_DICT_DIR, WordNet
from tests.cli import ROOT, assert_clean_failure, kgraft

HAS_WORDNET = (Path(DEFAULT_DICT_DIR) / "data.noun").is_file()
needs_wordnet = pytest.mark.skipif(
    not HAS_WORDNET and os.environ.get("CI") != "true",
    reason="the import faults load WordNet from Debian's wordnet-base (/usr/share/wordnet)",
)


# -- running and killing the real command -----------------------------------------------------------
def _spawn(*args: str, store: str) -> subprocess.Popen[str]:
    """``kgraft --store STORE ARGS...`` started in the background, as tests/cli.py runs it."""
    env = {**os.environ, "PYTHONPATH": str(ROOT), "COLUMNS": "200"}
    return subprocess.Popen(
        [sys.executable, "-m", "transfer.cli", "--store", store, *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        cwd=ROOT,
    )


def _wait_for(
    proc: subprocess.Popen[str], ready: Callable[[], bool], what: str, timeout: float = 120
) -> None:
    """Poll ``ready`` until it holds; fail if the command ends first (the fault would hit nothing)."""
    deadline = time.monotonic() + timeout
    while not ready():
        if proc.poll() is not None:
            out, err = proc.communicate()
            pytest.fail(f"the command ended (exit {proc.returncode}) before {what}: {out}{err}")
        if time.monotonic() > deadline:
            proc.kill()
            proc.communicate()
            pytest.fail(f"timed out waiting for {what}")
        time.sleep(0.005)


def _kill(proc: subprocess.Popen[str]) -> None:
    proc.send_signal(signal.SIGKILL)
    proc.communicate(timeout=30)
    assert proc.returncode == -signal.SIGKILL, "the command finished before the kill landed"


def _worker_cpu(pid: int) -> tuple[int, int]:
    """How many threads ``pid`` has, and the CPU ticks of all but the main one."""
    total, threads = 0, os.listdir(f"/proc/{pid}/task")
    for tid in threads:
        if int(tid) == pid:
            continue
        try:
            fields = Path(f"/proc/{pid}/task/{tid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:  # the thread ended
            continue
        total += int(fields[11]) + int(fields[12])  # utime + stime
    return len(threads), total


def _ladybug_in_write(proc: subprocess.Popen[str]) -> Callable[[], bool]:
    """Inside the import's transaction. LadybugDB runs statements on worker threads it starts when the
    file opens; reading WordNet is pure Python on the main thread, so the workers go quiet for a while
    (half a second or more) after the schema check, and start working again on the batch."""
    quiet: dict[str, float] = {}

    def ready() -> bool:
        try:
            threads, ticks = _worker_cpu(proc.pid)
        except OSError:
            return False
        now = time.monotonic()
        if threads < 3:  # the database is not open yet
            return False
        if "ticks" not in quiet or (ticks != quiet["ticks"] and "idle" not in quiet):
            quiet.update(ticks=ticks, since=now)
        elif "idle" not in quiet and now - quiet["since"] >= 0.5:
            quiet["idle"] = ticks
        return "idle" in quiet and ticks - quiet["idle"] >= 3

    return ready


def _ladybug_committing(path: Path) -> Callable[[], bool]:
    """The commit is being made durable: LadybugDB's checkpoint files are there."""
    return lambda: any(p.name.startswith(f"{path.name}.checkpoint") for p in path.parent.iterdir())


def _neo4j_running(uri: str, fragment: str) -> Callable[[], bool]:
    """A transaction on the server is running a statement containing ``fragment``."""
    watcher = open_store(uri, read_only=True)

    def ready() -> bool:
        rows = watcher.query("SHOW TRANSACTIONS YIELD currentQuery RETURN currentQuery AS q")
        if any(fragment in (r["q"] or "") and "SHOW TRANSACTIONS" not in r["q"] for r in rows):
            watcher.close()
            return True
        return False

    return ready


# -- import ----------------------------------------------------------------------------------------
def _wordnet_counts() -> tuple[int, int]:
    wn = WordNet.load()
    return len(wn), sum(len(s.hypernyms) + len(s.instance_hypernyms) for s in wn)


def _concepts_and_is_a(uri: str) -> tuple[int, int]:
    with open_store(uri, read_only=True) as store:  # for LadybugDB: the file opens again, no stale lock
        concepts = store.count("Concept")
        is_a = store.query("MATCH (:Concept)-[r:IS_A]->(:Concept) RETURN count(r) AS c")[0]["c"]
    return concepts, int(is_a)


@needs_wordnet
@pytest.mark.parametrize("moment", ["write", "commit"])
def test_import_killed_leaves_nothing_or_everything_and_reruns(store_uri: str, moment: str) -> None:
    """``kill -9`` inside ``import wordnet``'s one transaction (while it writes, and while it commits):
    the graph holds none of WordNet or all of it, and the same command then loads all of it."""
    full = _wordnet_counts()
    proc = _spawn("import", "wordnet", store=store_uri)
    if store_uri.startswith("embedded:"):
        path = Path(store_uri.removeprefix("embedded:"))
        if moment == "write":
            _wait_for(proc, _ladybug_in_write(proc), "the import's transaction started")
            assert not _ladybug_committing(path)(), "killed too late: the commit had already begun"
        else:
            _wait_for(proc, _ladybug_committing(path), "the import's commit began")
    else:
        # The nodes go first, then the IS_A relationships, all in one transaction; "commit": the last
        # statement is running, so the transaction holds every node and most edges.
        fragment = "CREATE (n:Concept)" if moment == "write" else "CREATE (a)-[r:IS_A]->(b)"
        _wait_for(proc, _neo4j_running(store_uri, fragment), f"the statement {fragment!r} ran")
    _kill(proc)

    assert _concepts_and_is_a(store_uri) in {(0, 0), full}

    rerun = kgraft("import", "wordnet", store=store_uri)
    assert rerun.returncode == 0, rerun.stderr
    assert _concepts_and_is_a(store_uri) == full


# -- derivation ------------------------------------------------------------------------------------
def _derived(uri: str) -> dict[str, int]:
    """What a registered derivation writes: the Dataset, its Activity and the DERIVED_FROM edge."""
    with open_store(uri, read_only=True) as store:
        q = {
            "dataset": "MATCH (d:Dataset {name: $name}) RETURN count(d) AS c",
            "derived_from": "MATCH (:Dataset {name: $name})-[r:DERIVED_FROM]->(:Dataset {id: $parent}) "
            "RETURN count(r) AS c",
            "activity": "MATCH (:Dataset {name: $name})-[:GENERATED_BY]->(a:Activity) RETURN count(a) AS c",
        }
        params = {"name": "digits-rot", "parent": "digits"}
        return {k: int(store.query(v, params)[0]["c"]) for k, v in q.items()}


def test_derive_killed_at_every_second_never_half_registers(store_uri: str) -> None:
    """``dataset derive`` killed 1, 2, 3 ... seconds in, until a run is left to finish: after each kill
    the derived dataset, its Activity and DERIVED_FROM are all there or none is; the last run finishes."""
    assert kgraft("dataset", "add", "digits", "--no-concepts", store=store_uri).returncode == 0
    args = ("dataset", "derive", "digits", "rotate", "-p", "degrees=90", "--name", "digits-rot")
    seen = set()
    for after in range(1, 30):
        proc = _spawn(*args, store=store_uri)
        try:
            proc.wait(timeout=after)
        except subprocess.TimeoutExpired:
            _kill(proc)
            state = _derived(store_uri)
            assert state in ({"dataset": 0, "derived_from": 0, "activity": 0}, {k: 1 for k in state}), state
            seen.add(state["dataset"])
            continue
        out, err = proc.communicate()
        assert proc.returncode == 0, err
        assert "digits-rot" in out
        break
    else:
        pytest.fail("the derivation never finished")
    assert after >= 3, "the derivation finished too fast to be killed mid-way"
    assert _derived(store_uri) == {"dataset": 1, "derived_from": 1, "activity": 1}
    assert 0 in seen  # at least one kill landed before the write


# -- fine-tune -------------------------------------------------------------------------------------
def _runs(uri: str) -> list[dict]:
    with open_store(uri, read_only=True) as store:
        return store.query(
            "MATCH (a:Activity) WHERE a.kind = $kind "
            "OPTIONAL MATCH (:Model {id: $source})-[t:TRANSFERRED_TO]->(:Dataset {id: $target}) "
            "WHERE t.activity = a.id RETURN a.id AS id, a.status AS status, count(t) AS outcomes ORDER BY id",
            {"kind": "finetuning", "source": "ccexam.usps", "target": "digits"},
        )


def _orphan_outcomes(uri: str) -> int:
    """TRANSFERRED_TO outcomes whose Activity is missing or not finished."""
    with open_store(uri, read_only=True) as store:
        rows = store.query(
            "MATCH (:Model)-[t:TRANSFERRED_TO]->(:Dataset) OPTIONAL MATCH (a:Activity {id: t.activity}) "
            "RETURN t.activity AS run, a.status AS status"
        )
    return sum(1 for r in rows if r["status"] != "finished")


def test_finetune_killed_mid_training_then_resumed(store_uri: str, tmp_path: Path) -> None:
    """``kill -9`` after the first epoch's checkpoint: the Activity stays ``running`` with no outcome;
    ``--resume`` finishes the same run; a fresh run elsewhere leaves the killed one ``running``."""
    assert kgraft("dataset", "add", "digits", "--no-concepts", store=store_uri).returncode == 0
    assert kgraft("model", "add", "ccexam:usps", store=store_uri).returncode == 0
    out = tmp_path / "run"
    args = ("finetune", "--source", "ccexam.usps", "--target", "digits", "--settings", "fastai")
    proc = _spawn(*args, "--epochs", "2", "--out", str(out), store=store_uri)
    _wait_for(proc, (out / "checkpoint.pt").exists, "the first epoch's checkpoint")
    _kill(proc)

    (killed,) = _runs(store_uri)
    assert (killed["status"], killed["outcomes"]) == ("running", 0)
    assert _orphan_outcomes(store_uri) == 0

    resumed = kgraft(*args, "--epochs", "2", "--out", str(out), "--resume", store=store_uri)
    assert resumed.returncode == 0, resumed.stderr
    assert _runs(store_uri) == [{"id": killed["id"], "status": "finished", "outcomes": 1}]
    assert _orphan_outcomes(store_uri) == 0

    # Killed again, then not resumed: a new run into another folder; the killed one stays running.
    again = tmp_path / "again"
    proc = _spawn(*args, "--epochs", "2", "--out", str(again), store=store_uri)
    _wait_for(proc, (again / "checkpoint.pt").exists, "the first epoch's checkpoint")
    _kill(proc)
    fresh = kgraft(*args, "--epochs", "2", "--out", str(tmp_path / "fresh"), store=store_uri)
    assert fresh.returncode == 0, fresh.stderr
    runs = _runs(store_uri)
    assert sorted((r["status"], r["outcomes"]) for r in runs) == [
        ("finished", 1),
        ("finished", 1),
        ("running", 0),
    ]
    assert _orphan_outcomes(store_uri) == 0


# -- a Neo4j server stopped under an import ----------------------------------------------------------
@pytest.fixture
def own_neo4j(tmp_path: Path) -> Iterator[tuple[str, Callable[[], None], Callable[[], None]]]:
    """A Neo4j server of this test's own (port 7698, home in tmp_path) that it may stop and start:
    the shared test server is never restarted. Yields the URI, start() and stop()."""
    missing = [tool for tool in ("java",) if shutil.which(tool) is None]
    if missing and os.environ.get("CI") != "true":
        pytest.skip("the Neo4j restart test needs Java to start a server of its own")
    env = {k: v for k, v in os.environ.items() if k != "NEO4J_URI"}
    env |= {"NEO4J_PORT": "7698", "KGRAFT_NEO4J_HOME": str(tmp_path / "neo4j")}

    def start() -> None:
        done = subprocess.run(
            ["bash", str(ROOT / "scripts/neo4j/start.sh")], env=env, capture_output=True, text=True
        )
        assert done.returncode == 0, done.stderr

    def stop() -> None:
        done = subprocess.run(
            ["bash", str(ROOT / "scripts/neo4j/stop.sh")], env=env, capture_output=True, text=True
        )
        assert done.returncode == 0, done.stderr

    start()
    try:
        yield "bolt://127.0.0.1:7698", start, stop
    finally:
        stop()


@needs_wordnet
@pytest.mark.neo4j
def test_neo4j_stopped_during_import_one_sentence_then_clean_retry(own_neo4j, monkeypatch) -> None:
    uri, start, stop = own_neo4j
    monkeypatch.setenv("NEO4J_PASSWORD", "kgraft-test-pw")
    monkeypatch.setenv("NEO4J_USER", "neo4j")
    proc = _spawn("import", "wordnet", store=uri)
    _wait_for(proc, _neo4j_running(uri, "CREATE (n:Concept)"), "the import's transaction")
    stop()
    out, err = proc.communicate(timeout=120)
    failed = subprocess.CompletedProcess(proc.args, proc.returncode, out, err)
    assert_clean_failure(failed, "Neo4j")
    assert len(err.strip().splitlines()) == 1, err
    # Said as the server going away (how depends on the moment), not as a query Neo4j refused.
    reasons = ("database became unavailable", "cannot reach neo4j", "broke while committing")
    assert any(reason in err.lower() for reason in reasons), err

    start()  # start.sh begins from an empty database
    retry = kgraft("import", "wordnet", store=uri)
    assert retry.returncode == 0, retry.stderr
    assert _concepts_and_is_a(uri) == _wordnet_counts()

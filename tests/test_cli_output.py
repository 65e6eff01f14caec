"""What a user sees: no third-party warnings, one line per error, piped output not wrapped, messages
said once, and the scorer's files beside the store. The real ``kgraft`` command, on both stores."""

from __future__ import annotations

import json
import socket
from pathlib import Path

import pytest

from kg import GraphBatch, GraphStore, open_store
from kg.locations import beside_store
from kg.transfergraph import transfergraph_batch
from ontology.vocab import Label
from tests.cli import kgraft
from tests.corpus import TRANSFERGRAPH

QUICK = ("--epochs", "5", "--ensemble", "1")
NOISE = ("Warning", "warn(", "Traceback", "Unable to retrieve routing information")


def test_gnn_train_is_quiet_says_it_once_and_keeps_the_weights_beside_the_store(
    store: GraphStore, tmp_path: Path
) -> None:
    store.apply(transfergraph_batch(TRANSFERGRAPH))
    uri = store.uri
    store.close()
    elsewhere = tmp_path / "elsewhere"  # the folder the command runs in
    elsewhere.mkdir()
    proc = kgraft("gnn", "train", *QUICK, store=uri, cwd=elsewhere)
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == ""  # no FutureWarning from torch.jit.script, no progress left behind
    assert proc.stdout.count("trained on") == 1 and "trained on 78 recorded outcomes" in proc.stdout

    folder = beside_store(uri, "scorers")
    if uri.startswith("embedded:"):
        assert folder == Path(uri.removeprefix("embedded:") + ".scorers") and folder.parent == tmp_path
        assert not (elsewhere / ".kgraft").exists()  # nothing written where the command ran
    else:
        assert folder.parts[0] == ".kgraft" and folder.name.endswith(".scorers")
        folder = elsewhere / folder  # a server store's files go under .kgraft/ where the command ran
    weights = folder / "gnn-scorer-v1.safetensors"
    assert weights.is_file() and f"weights: {weights}" in proc.stdout

    recs = kgraft("recommend", "textures", "--json", "--top", "3", store=uri, cwd=elsewhere)
    assert recs.returncode == 0, recs.stderr
    assert [r["rank"] for r in json.loads(recs.stdout)] == [1, 2, 3]  # nothing but the JSON on stdout
    assert not any(noise in recs.stderr for noise in NOISE), recs.stderr
    unknown = kgraft("recommend", "nosuch", "--json", store=uri, cwd=elsewhere)
    assert unknown.returncode == 1 and unknown.stdout == ""
    assert unknown.stderr == "error: no dataset named 'nosuch' in the graph.\n"  # no bar, no blank line


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.parametrize("scheme", ["neo4j", "bolt"])
def test_an_unreachable_neo4j_is_one_error_line(scheme: str) -> None:
    env = {"NEO4J_USER": "neo4j", "NEO4J_PASSWORD": "not-used"}
    proc = kgraft("init", store=f"{scheme}://127.0.0.1:{_free_port()}", env=env, timeout=120)
    assert proc.returncode == 1 and proc.stdout == ""
    lines = proc.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: cannot reach Neo4j"), proc.stderr


def test_piped_output_is_not_wrapped(store: GraphStore) -> None:
    long_id = "dataset:" + "-".join(f"part{i:02d}" for i in range(20))  # 147 characters
    path = "/data/" + "/".join(f"folder{i:02d}" for i in range(12)) + "/images"
    batch = GraphBatch()
    batch.node(Label.DATASET, long_id, name="a dataset with a long id", url=f"file://{path}")
    store.apply(batch)
    uri = store.uri
    store.close()
    query = "MATCH (d:Dataset) WHERE d.id = $id RETURN d.id AS id, d.url AS url"
    for columns in ("80", "40"):  # what Rich would otherwise wrap at
        proc = kgraft("query", query, "--param", f"id={long_id}", store=uri, env={"COLUMNS": columns})
        assert proc.returncode == 0, proc.stderr
        (row,) = [line for line in proc.stdout.splitlines() if long_id in line]
        assert f"file://{path}" in row  # the id and the path whole, on one line
    with open_store(uri, read_only=True) as check:
        assert check.node(Label.DATASET, long_id)["url"] == f"file://{path}"


def test_beside_store_names_each_graph_its_own_folder() -> None:
    assert beside_store("embedded:/data/team.lbug", "scorers") == Path("/data/team.lbug.scorers")
    assert beside_store("embedded:/data/other.lbug", "scorers") == Path("/data/other.lbug.scorers")
    server = beside_store("neo4j://alice:secret@db.example:7687", "scorers")
    assert server == Path(".kgraft/neo4j-db.example-7687.scorers")  # no credentials in the name
    assert (
        beside_store("bolt://db.example:7687/teamdb", "scorers").name == "bolt-db.example-7687-teamdb.scorers"
    )

"""``kgraft serve`` for real: the server runs as a subprocess on a loopback port over a small real graph
(sklearn digits with derived variants and a bias, two small CNNs pretrained on them, a trained GNN
scorer, and the lineage fixture's chains) on both stores, and headless Chromium (the Debian package,
driven by Playwright) searches a dataset, opens its lineage graph, writes and opens a report through
a job, asks for a recommendation, and fine-tunes a model for one epoch through a job (API and form).
Security: writes without the token get 401 and write nothing, Cypher through the API cannot write, a
``<script>`` name renders as text, and the default bind is loopback only.

The lineage page's screenshot is written to ``docs/serve-lineage.png`` when that file is missing or
``KGRAFT_SCREENSHOTS=1`` (README shows it); otherwise into the test's temporary folder.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import Page, expect, sync_playwright

from kg import open_store
from kg.errors import ReadOnlyViolation
from kg.rdf import write_rdf
from ontology.vocab import Label
from tests.cli import assert_clean_failure, kgraft
from tests.lineage_fixture import lineage_batch
from tests.test_report import TARGET, build_graph
from transfer.serve.security import CypherRefused, check_read_only_cypher

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = "/usr/bin/chromium"
TOKEN = "test-token-5f1c"
HOSTILE = "<script>alert(1)</script>"
SCREENSHOT = ROOT / "docs" / "serve-lineage.png"
TIMEOUT = 120  # seconds; the first recommendation loads torch and the scorer on a busy machine


def get(url: str, **kwargs) -> httpx.Response:
    return httpx.get(url, timeout=TIMEOUT, **kwargs)


def post(url: str, **kwargs) -> httpx.Response:
    return httpx.post(url, timeout=TIMEOUT, **kwargs)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(uri: str, reports: Path, *extra: str, token: str = TOKEN) -> tuple[subprocess.Popen, str]:
    """``kgraft serve`` in a subprocess; returns it and its base URL once /api/health answers."""
    port = free_port()
    env = {**os.environ, "PYTHONPATH": str(ROOT), "KGRAFT_TOKEN": token}
    cmd = [sys.executable, "-m", "transfer.cli", "--store", uri, "serve", "--port", str(port)]
    proc = subprocess.Popen(
        [*cmd, "--reports-dir", str(reports), "--probes-dir", str(reports.parent / "probes"), *extra],
        env=env,
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"the server exited: {proc.stdout.read()}")
        try:
            if httpx.get(f"{base}/api/health", timeout=2).status_code == 200:
                return proc, base
        except httpx.TransportError:
            pass
        time.sleep(0.3)
    proc.kill()
    raise AssertionError("the server did not answer within 120 s")


def stop_server(proc: subprocess.Popen) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


@pytest.fixture(scope="module")
def zoo_dir(tmp_path_factory) -> Path:
    """Checkpoints shared by both stores' graphs (the second build loads them from the cache)."""
    return tmp_path_factory.mktemp("serve-zoo")


@pytest.fixture(scope="module", params=["ladybug", "neo4j"])
def server(request, tmp_path_factory, zoo_dir) -> Iterator[dict]:
    """The graph on one store, served by ``kgraft serve``."""
    folder = tmp_path_factory.mktemp(f"serve-{request.param}")
    if request.param == "ladybug":
        uri = f"embedded:{folder / 'g.lbug'}"
    else:
        uri = request.getfixturevalue("neo4j_uri")
    with open_store(uri) as store:
        store.clear()
        models = build_graph(store, zoo_dir, folder / "scorers")
        store.apply(lineage_batch())
    proc, base = start_server(uri, folder / "reports")
    try:
        yield {"base": base, "uri": uri, "dialect": request.param, "folder": folder, "models": models}
    finally:
        stop_server(proc)
        if request.param == "neo4j":
            with open_store(uri) as store:
                store.clear()


@pytest.fixture(scope="module")
def browser():
    with sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=CHROMIUM, headless=True)
        yield chromium
        chromium.close()


@pytest.fixture
def page(browser) -> Iterator[Page]:
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()
    dialogs: list[str] = []
    page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
    page.dialogs = dialogs  # type: ignore[attr-defined]
    yield page
    context.close()


def count(base: str, cypher: str) -> int:
    r = post(f"{base}/api/cypher", json={"cypher": cypher})
    assert r.status_code == 200, r.text
    return r.json()["rows"][0]["c"]


def totals(base: str) -> tuple[int, int]:
    """(nodes, relationships) in the graph, through the read-only API."""
    return count(base, "MATCH (n) RETURN count(n) AS c"), count(base, "MATCH ()-[r]->() RETURN count(r) AS c")


# ----------------------------------------------------------------------------- the pages


def test_search_lineage_report_and_recommendation_in_chromium(server, page: Page, tmp_path) -> None:
    base = server["base"]
    # search a dataset and open it
    page.goto(base + "/")
    page.fill("#search-box", "rot-blur-noise-small")
    page.click("#search-button")
    page.click("#results a:text-is('fmnist-rot-blur-noise-small')")
    expect(page.locator("h1")).to_contain_text("fmnist-rot-blur-noise-small")
    # its lineage graph: the SVG picture and every path down to fmnist
    page.click("#lineage-up")
    graph = page.locator("#lineage-graph")
    expect(graph).to_be_visible()
    assert page.evaluate("document.getElementById('lineage-graph').naturalWidth") > 100
    paths = page.locator("#paths")
    expect(paths).to_contain_text("-DERIVED_FROM(rotate)-> fmnist")
    expect(paths.locator("tr")).to_have_count(1 + 4)  # header + four ancestors
    if server["dialect"] == "ladybug":
        page.goto(base + "/lineage/model/cnn-tuned")
        expect(page.locator("#paths")).to_contain_text("FINETUNED_FROM")
        shot = (
            SCREENSHOT if (not SCREENSHOT.exists() or os.environ.get("KGRAFT_SCREENSHOTS") == "1") else None
        )
        page.screenshot(path=str(shot or tmp_path / "lineage.png"), full_page=True)
    # write a report through the job, watch its progress bar finish, open it
    page.goto(base + "/reports")
    page.fill("#report-target", TARGET)
    page.fill("#report-token", TOKEN)
    page.click("#report-button")
    page.wait_for_url("**/jobs/*")
    expect(page.locator("#job-progress")).to_be_visible()
    expect(page.locator("#job-status")).to_have_text("finished", timeout=180_000)
    assert page.evaluate("document.getElementById('job-progress').value") == 1
    page.click("#job-report-link")
    expect(page.locator("body")).to_contain_text(TARGET)
    for model in server["models"]:
        expect(page.locator("body")).to_contain_text(model)
    page.goto(base + "/reports")
    expect(page.locator("#report-list")).to_contain_text(TARGET)
    # ask for a recommendation: the ranking and its uncertainty bars
    page.goto(base + "/recommend")
    page.fill("#target-box", TARGET)
    page.click("#recommend-button")
    for model in server["models"]:
        expect(page.locator(f'#ranking a[href="/models/{model}"]')).to_have_count(1)
    bars = page.locator("#ranking-chart line.uncertainty")
    assert bars.count() >= len(server["models"])
    expect(page.locator("#ranking")).to_contain_text("±")
    # a mistyped page is one sentence, not a traceback
    page.goto(base + "/datasets/no-such-data")
    expect(page.locator("#error")).to_contain_text("no dataset")


def test_a_script_name_renders_as_text(server, page: Page) -> None:
    base = server["base"]
    r = post(
        f"{base}/api/datasets",
        json={"spec": "digits", "name": HOSTILE, "derived_from": "fmnist", "concepts": False},
        headers={"Authorization": f"Bearer {TOKEN}"},
    )
    assert r.status_code == 201, r.text
    dataset_id = r.json()["id"]
    hits = get(f"{base}/api/search", params={"q": "script"}).json()
    assert [h["name"] for h in hits if h["id"] == dataset_id] == [HOSTILE]
    for path in (
        "/?q=script",
        f"/datasets/{dataset_id}",
        f"/lineage/dataset/{dataset_id}",
        "/datasets/fmnist",
    ):
        page.goto(base + path)
        assert HOSTILE in page.inner_text("body"), path  # shown as text...
        assert page.locator("main script").count() == 0, path  # ...never as an element
    assert page.dialogs == []  # type: ignore[attr-defined]
    raw = get(f"{base}/datasets/{dataset_id}").text
    assert HOSTILE not in raw and "&lt;script&gt;alert(1)&lt;/script&gt;" in raw


# ----------------------------------------------------------------------------- the API


def test_read_api(server) -> None:
    base = server["base"]
    lineage = get(f"{base}/api/lineage/model/cnn-tuned", params={"depth": 10}).json()
    texts = [r["path_text"] for r in lineage["reaches"]]
    assert "cnn-tuned -FINETUNED_FROM-> cnn-base -TRAINED_ON-> fmnist-imbalanced" in texts
    down = get(f"{base}/api/lineage/dataset/fmnist", params={"direction": "down"}).json()
    assert {"cnn-base", "cnn-tuned"} <= {r["id"] for r in down["reaches"]}
    biases = get(f"{base}/api/bias/model/cnn-tuned").json()
    assert {r["id"] for r in biases["reaches"]} >= {"bias-label-noise", "bias-imbalance", "bias-writers"}
    detail = get(f"{base}/api/datasets/digits").json()
    assert detail["record"]["n_samples"] == 1797 and len(detail["record"]["class_counts"]) == 10
    assert [d["name"] for d in detail["domains"]] == ["handwriting"]
    assert {b["kind"] for b in detail["biases"]} == {"sampling"}
    model = get(f"{base}/api/models/cnn-tuned").json()
    assert [p["id"] for p in model["finetuned_from"]] == ["cnn-base"]
    recs = get(f"{base}/api/recommend/{TARGET}", params={"top": 5}).json()["recommendations"]
    assert {r["model_id"] for r in recs} >= set(server["models"])
    zoo = [r for r in recs if r["model_id"] in server["models"]]
    # the scorer's spread where it has one (null where the score falls back to measured estimators)
    assert all(r["uncertainty"] is None or r["uncertainty"] >= 0 for r in zoo)
    assert any(r["uncertainty"] is not None for r in zoo)
    assert [r["rank"] for r in recs] == list(range(1, len(recs) + 1))
    missing = get(f"{base}/api/lineage/dataset/nope")
    assert missing.status_code == 404 and "nope" in missing.json()["error"]
    assert get(f"{base}/api/lineage/dataset/fmnist", params={"depth": 99}).status_code == 422
    schema = get(f"{base}/openapi.json").json()
    assert {"/api/lineage/{kind}/{node_id}", "/api/cypher", "/api/outcomes"} <= set(schema["paths"])


def test_cypher_api_reads_with_parameters_and_limits(server) -> None:
    base = server["base"]
    r = post(
        f"{base}/api/cypher",
        json={
            "cypher": "MATCH (d:Dataset) WHERE d.id = $id RETURN d.name AS name",
            "params": {"id": "tricky"},
        },
    )
    assert r.json()["rows"] == [{"name": "x\"); MATCH (n) DETACH DELETE n; // 'quoted' RETURN"}]
    r = post(f"{base}/api/cypher", json={"cypher": "MATCH (d:Dataset) RETURN d.id AS id", "max_rows": 3})
    assert r.json()["count"] == 3 and r.json()["truncated"] is True
    slow = "UNWIND range(1, 30000000) AS x WITH x WHERE x % 7 = 3 RETURN count(x) AS c"
    r = post(f"{base}/api/cypher", json={"cypher": slow, "timeout_s": 0.2})
    assert r.status_code == 400 and "limit" in r.json()["error"], r.text


WRITING_CYPHER = [
    "CREATE (d:Dataset {id: 'evil'})",
    "MATCH (d:Dataset) SET d.name = 'evil'",
    "MATCH (d:Dataset {id: 'fmnist'}) DETACH DELETE d",
    "MERGE (d:Dataset {id: 'evil'}) RETURN d",
    "MATCH (d:Dataset) REMOVE d.name RETURN d",
    "MATCH (d:Dataset) WITH d CALL { WITH d DETACH DELETE d } RETURN 1",
    "CALL db.labels() YIELD label RETURN label",
    "CALL dbms.setConfigValue('db.logs.query.enabled', 'OFF')",
    "LOAD CSV FROM 'file:///etc/passwd' AS row CREATE (:Dataset {id: row[0]})",
    "MATCH (d:Dataset) LOAD CSV FROM 'file:///etc/hostname' AS row RETURN row",
    "COPY Dataset FROM '/tmp/evil.csv'",
    "EXPORT DATABASE '/tmp/evil-export'",
    "MATCH (d:Dataset) FOREACH (x IN [1] | SET d.name = 'evil')",
    "MATCH (n) RETURN n; MATCH (n) DETACH DELETE n",
    "match (d:Dataset) set d.name = 'evil'",
]


def test_cypher_api_cannot_write(server) -> None:
    base = server["base"]
    before = totals(base)
    names = count(base, "MATCH (d:Dataset {name: 'fmnist'}) RETURN count(d) AS c")
    for cypher in WRITING_CYPHER:
        r = post(f"{base}/api/cypher", json={"cypher": cypher})
        assert r.status_code == 403, (cypher, r.text)
        assert r.json()["error"].endswith("."), r.text
    assert totals(base) == before
    assert count(base, "MATCH (d:Dataset {name: 'fmnist'}) RETURN count(d) AS c") == names
    assert not Path("/tmp/evil-export").exists()


def test_cypher_store_layer_refuses_a_write_that_passes_the_text_check(server) -> None:
    """The second guard: the read-only transaction the API's queries run in."""
    # the embedded file is held read-write by the server; another process may still open it read-only
    with open_store(server["uri"], read_only=server["dialect"] == "ladybug") as store:
        before = store.count(Label.DATASET)
        with pytest.raises(Exception, match="writes to the graph"):
            store.query("CREATE (d:Dataset {id: 'evil'}) RETURN d.id AS id", timeout_s=5)
        assert store.count(Label.DATASET) == before


def test_writes_need_the_token_and_write_nothing_without_it(server, tmp_path) -> None:
    base = server["base"]
    outcome = {"source": "cnn-base", "target": "digits", "accuracy": 0.9}
    turtle = tmp_path / "one.ttl"
    folder = tmp_path / "one"
    with open_store(f"embedded:{folder / 'g.lbug'}") as small:
        small.apply(lineage_batch())
        write_rdf(small, turtle)
    writes = [
        ("/api/outcomes", {"json": outcome}),
        ("/api/datasets", {"json": {"spec": "digits", "name": "unwanted", "concepts": False}}),
        ("/api/import/rdf", {"content": turtle.read_bytes(), "headers": {"Content-Type": "text/turtle"}}),
        ("/api/import/croissant", {"content": b"{}", "headers": {"Content-Type": "application/ld+json"}}),
        ("/api/jobs/report", {"json": {"target": TARGET}}),
        ("/api/jobs/finetune", {"json": {"target": TARGET, "source": "cnn-base", "epochs": 1}}),
    ]
    before = totals(base)
    jobs_before = len(get(f"{base}/api/jobs").json())
    for path, kwargs in writes:
        for auth in (None, "Bearer wrong-token", TOKEN, f"Basic {TOKEN}"):
            headers = {**kwargs.get("headers", {}), **({"Authorization": auth} if auth else {})}
            r = post(base + path, **{k: v for k, v in kwargs.items() if k != "headers"}, headers=headers)
            assert r.status_code == 401, (path, auth, r.text)
            assert "KGRAFT_TOKEN" in r.json()["error"]
    assert totals(base) == before
    assert len(get(f"{base}/api/jobs").json()) == jobs_before
    # with the token: the run is recorded as transfer.track records it, outcome and regime included
    auth = {"Authorization": f"Bearer {TOKEN}"}
    outcomes = (
        "MATCH (:Model {id: 'cnn-base'})-[t:TRANSFERRED_TO]->(:Dataset {id: 'digits'}) RETURN count(t) AS c"
    )
    had = count(base, outcomes)
    r = post(f"{base}/api/outcomes", json={**outcome, "epochs": 3, "batch_size": 32}, headers=auth)
    assert r.status_code == 201, r.text
    assert count(base, outcomes) == had + 1
    rows = post(
        f"{base}/api/cypher",
        json={
            "cypher": "MATCH (m:Model)-[t:TRANSFERRED_TO]->(:Dataset) WHERE t.activity = $run "
            "RETURN m.id AS m, t.accuracy AS acc, t.epochs AS epochs, t.batch_size AS bs",
            "params": {"run": r.json()["activity"]},
        },
    ).json()["rows"]
    assert rows == [{"m": "cnn-base", "acc": 0.9, "epochs": 3, "bs": 32}]
    # a bad outcome is a sentence and writes nothing
    bad = post(f"{base}/api/outcomes", json={**outcome, "source": "no-such-model"}, headers=auth)
    assert bad.status_code == 404 and "no-such-model" in bad.json()["error"]
    assert post(f"{base}/api/outcomes", json={**outcome, "accuracy": 2}, headers=auth).status_code == 422
    # RDF import through the same validated path as `kgraft import rdf`; a broken document writes nothing
    after = totals(base)
    bad = post(f"{base}/api/import/rdf", content=b"@prefix broken", headers=auth)
    assert bad.status_code == 400 and bad.json()["error"], bad.text
    assert totals(base) == after
    r = post(f"{base}/api/import/rdf", content=turtle.read_bytes(), headers=auth)
    assert r.status_code == 201, r.text
    unknown = post(f"{base}/api/import/nothing", content=b"x", headers=auth)
    assert unknown.status_code == 404 and "croissant" in unknown.json()["error"]


def test_default_bind_is_loopback_only(server) -> None:
    """The server started without --host listens on 127.0.0.1 only (read from the kernel's table)."""
    port = int(server["base"].rsplit(":", 1)[1])
    listening = []
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            local, state = line.split()[1], line.split()[3]
            if state == "0A" and int(local.rsplit(":", 1)[1], 16) == port:
                listening.append(local.rsplit(":", 1)[0])
    assert listening == ["0100007F"]  # 127.0.0.1, and no IPv6 or wildcard socket


def test_other_commands_beside_the_server(server) -> None:
    """One read-write process per LadybugDB file: while the server runs, a command that writes says so
    in one sentence and a read-only one still reads. Neo4j takes writes from any process, and the
    server reads them."""
    write = "MATCH (d:Dataset {id: 'fmnist'}) SET d.description = $text RETURN d.id AS id"
    proc = kgraft("query", write, "--write", "-p", "text=set beside the server", store=server["uri"])
    if server["dialect"] == "ladybug":
        assert_clean_failure(proc, "locked")
        read = kgraft("lineage", "fmnist-rot", store=server["uri"], timeout=120)
        assert read.returncode == 0 and "DERIVED_FROM(rotate)" in read.stdout, read.stderr
    else:
        assert proc.returncode == 0, proc.stderr
        record = get(f"{server['base']}/api/datasets/fmnist").json()["record"]
        assert record["description"] == "set beside the server"


@pytest.mark.parametrize(
    "cypher",
    [
        "MATCH (d:Dataset) WHERE d.name = 'CREATE (x)' RETURN d.id AS id",
        "MATCH (d:Dataset) RETURN d.id AS id // DELETE everything",
        "OPTIONAL MATCH (d:Dataset {id: $id}) RETURN d.`set` AS s;",
        "WITH 1 AS x RETURN x",
    ],
)
def test_cypher_guard_reads_past_literals_and_comments(cypher: str) -> None:
    check_read_only_cypher(cypher)  # does not raise


def test_cypher_guard_names_what_it_refuses() -> None:
    with pytest.raises(CypherRefused, match="CALL"):
        check_read_only_cypher("MATCH (n) CALL { MATCH (m) RETURN m } RETURN n")
    with pytest.raises(CypherRefused, match="one statement"):
        check_read_only_cypher("MATCH (n) RETURN n; MATCH (m) RETURN m")
    with pytest.raises(CypherRefused, match="empty"):
        check_read_only_cypher("  // nothing ")


def test_croissant_import_through_the_api(server) -> None:
    """The same import as ``kgraft import croissant``: the dataset, its RAI biases, all or nothing."""
    base, auth = server["base"], {"Authorization": f"Bearer {TOKEN}"}
    document = (ROOT / "tests" / "fixtures" / "croissant" / "leafscan-1.0.json").read_bytes()
    before = totals(base)
    broken = post(f"{base}/api/import/croissant", content=document[: len(document) // 2], headers=auth)
    assert broken.status_code == 400 and broken.json()["error"].endswith("."), broken.text
    assert totals(base) == before
    url = f"{base}/api/import/croissant?filename=leafscan-1.0.json"
    r = post(url, content=document, headers={**auth, "Content-Type": "application/ld+json"})
    assert r.status_code == 201 and r.json()["nodes_created"] > 0, r.text
    record = get(f"{base}/api/datasets/leafscan-mini").json()
    assert record["record"]["source"] == "croissant:leafscan-1.0.json"
    assert {b["source"] for b in record["biases"]} == {"croissant"}
    again = post(url, content=document, headers=auth)
    assert again.status_code == 201 and again.json()["nodes_created"] == 0  # idempotent


def test_openlineage_import_through_the_api(server, tmp_path) -> None:
    """RunEvents from other producers (Airflow, Spark) as ``kgraft openlineage import`` records them."""
    from tests.test_openlineage import airflow_and_spark_events

    base, auth = server["base"], {"Authorization": f"Bearer {TOKEN}"}
    events = tmp_path / "events.jsonl"
    airflow_and_spark_events(events)
    r = post(f"{base}/api/import/openlineage", content=events.read_bytes(), headers=auth)
    assert r.status_code == 201, r.text
    lineage = get(f"{base}/api/lineage/dataset/s3://lake/features/digits").json()
    assert [x["id"] for x in lineage["reaches"]] == ["s3://lake/clean/digits", "s3://lake/raw/digits"]
    broken = post(
        f"{base}/api/import/openlineage", content=b'{"eventType": "START"}\nnot json\n', headers=auth
    )
    assert broken.status_code == 400 and "line" in broken.json()["error"], broken.text


def test_finetune_job_records_the_outcome_with_progress(server) -> None:
    """``POST /api/jobs/finetune``: one epoch of a real source on the derived target, polled to the end;
    the run's TRANSFERRED_TO lands in the graph and the job reports its epochs. Bad input starts no job."""
    base, auth = server["base"], {"Authorization": f"Bearer {TOKEN}"}
    source = server["models"][0]
    outcomes = (
        "MATCH (:Model {id: $s})-[t:TRANSFERRED_TO]->(:Dataset {id: $d}) WHERE t.accuracy IS NOT NULL "
        "RETURN count(t) AS c"
    )
    params = {"s": source, "d": TARGET}

    def outcome_count() -> int:
        r = post(f"{base}/api/cypher", json={"cypher": outcomes, "params": params})
        assert r.status_code == 200, r.text
        return r.json()["rows"][0]["c"]

    jobs_before = len(get(f"{base}/api/jobs").json())
    body = {"target": TARGET, "source": source, "settings": "fastai", "epochs": 1}
    unknown = post(f"{base}/api/jobs/finetune", json={**body, "target": "no-such-target"}, headers=auth)
    assert unknown.status_code == 404 and "no-such-target" in unknown.json()["error"], unknown.text
    nosource = post(f"{base}/api/jobs/finetune", json={**body, "source": "no-such-model"}, headers=auth)
    assert nosource.status_code == 404 and "no-such-model" in nosource.json()["error"], nosource.text
    for bad in ({"settings": "turbo"}, {"epochs": 0}):
        r = post(f"{base}/api/jobs/finetune", json={**body, **bad}, headers=auth)
        assert r.status_code == 422, (bad, r.text)
    assert post(f"{base}/api/jobs/finetune", json=body).status_code == 401
    assert len(get(f"{base}/api/jobs").json()) == jobs_before
    had = outcome_count()

    started = post(f"{base}/api/jobs/finetune", json=body, headers=auth)
    assert started.status_code == 202, started.text
    job_id = started.json()["id"]
    deadline = time.monotonic() + 300
    while True:
        job = get(f"{base}/api/jobs/{job_id}").json()
        if job["status"] in ("finished", "failed") or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    assert job["status"] == "finished", job
    assert (job["done"], job["total"], job["fraction"]) == (1, 1, 1.0)
    summary = job["result"]
    assert summary["run_id"] and "epochs" not in summary
    assert 0.0 <= summary["accuracy"] <= 1.0
    assert outcome_count() == had + 1
    rows = post(
        f"{base}/api/cypher",
        json={
            "cypher": "MATCH (:Model {id: $s})-[t:TRANSFERRED_TO]->(:Dataset {id: $d}) "
            "WHERE t.activity = $run RETURN t.accuracy AS acc",
            "params": {**params, "run": summary["run_id"]},
        },
    ).json()["rows"]
    assert rows == [{"acc": pytest.approx(summary["accuracy"])}]


def test_finetune_form_on_the_dataset_page_in_chromium(server, page: Page) -> None:
    """The dataset page's form starts the job; the job page's bar finishes and links the new model."""
    base = server["base"]
    page.goto(f"{base}/datasets/{TARGET}")
    page.fill("#finetune-source", server["models"][0])
    page.select_option("#finetune-settings", "linear-probe")
    page.fill("#finetune-form input[name=epochs]", "1")
    page.fill("#finetune-token", "wrong-token")
    page.click("#finetune-button")
    expect(page.locator("#finetune-error")).to_contain_text("KGRAFT_TOKEN")
    page.fill("#finetune-token", TOKEN)
    page.click("#finetune-button")
    page.wait_for_url("**/jobs/*")
    expect(page.locator("#job-status")).to_have_text("finished", timeout=180_000)
    assert page.evaluate("document.getElementById('job-progress').value") == 1
    page.click("#job-model-link")
    expect(page.locator("body")).to_contain_text("fine-tuned from")
    expect(page.locator(f'li a[href="/models/{server["models"][0]}"]')).to_have_count(1)


def test_a_ladybug_reader_reads_beside_the_writer_and_never_writes(tmp_path) -> None:
    """The server's second connection on the embedded store: it sees what the owner commits, while the
    owner's write transaction is open it still answers, and it writes nothing."""
    with open_store(f"embedded:{tmp_path / 'g.lbug'}") as store:
        reader = store.reader()
        try:
            store.apply(lineage_batch())
            assert reader.count(Label.DATASET) == store.count(Label.DATASET) == 9
            with store.transaction() as tx:  # a write in flight: the reader sees the last commit
                tx.run("MATCH (d:Dataset {id: 'fmnist'}) SET d.description = $text", {"text": "pending"})
                assert reader.node(Label.DATASET, "fmnist").get("description") is None
            assert reader.node(Label.DATASET, "fmnist")["description"] == "pending"
            for write in (
                lambda: reader.query("CREATE (d:Dataset {id: 'evil'}) RETURN d.id AS id"),
                lambda: reader.execute("CREATE (d:Dataset {id: 'evil'})"),
                lambda: reader.apply(lineage_batch()),
            ):
                with pytest.raises(ReadOnlyViolation):
                    write()
            assert store.count(Label.DATASET) == 9
        finally:
            reader.close()

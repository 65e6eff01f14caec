"""``kgraft report`` on a small real graph: sklearn digits with derived variants and a known bias, a
two-model zoo pretrained on real images, a trained GNN scorer and a real probe. The JSON validates
against its published schema, the Markdown names the ranking and the settings, and the HTML, opened
in headless Chromium, shows the ranking rows, the generality curve and the bias path. Bad input ends
in one sentence and leaves no report folder behind."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import jsonschema
import lxml.html
import pytest

from gnn.train import TrainConfig, latest_scorer, train_scorer
from kg import GraphStore, open_store
from tests.cli import assert_clean_failure, kgraft
from transfer.data.derive import derive, describe_bias
from transfer.data.sources import load_dataset
from transfer.register import register_dataset
from transfer.report import (
    SCHEMA_PATH,
    ReportError,
    build_report,
    chosen_source,
    validate_report,
    write_report,
)
from transfer.zoo.registration import build_and_register_demo_zoo

TARGET = "digits-rot90"
QUICK = TrainConfig(epochs=30, ensemble=2)
BIAS = {
    "kind": "sampling",
    "description": "43 writers; writers overlap between splits.",
    "severity": "medium",
}


def build_graph(store: GraphStore, zoo_dir: Path, scorer_dir: Path) -> list[str]:
    """digits (with a bias), three derived variants, two small CNNs, a scorer; returns the model ids."""
    digits = load_dataset("digits")
    register_dataset(store, digits, domain="handwriting", biases=[BIAS])
    inverted = derive(digits, "invert", {}, name="digits-inverted")
    register_dataset(store, inverted, derived_from="digits")
    register_dataset(store, derive(digits, "rotate", {"degrees": 90}, name=TARGET), derived_from="digits")
    imbalanced = derive(digits, "imbalance", {"ratio": 10}, name="digits-imbalanced")
    bias = describe_bias(digits, imbalanced)
    bias.pop("ratio")
    register_dataset(store, imbalanced, derived_from="digits", biases=[bias])
    records = build_and_register_demo_zoo(
        store, {"digits": digits, "digits-inverted": inverted}, zoo_dir, epochs=1
    )
    train_scorer(store, scorer_dir, train=QUICK)
    return [r.id for r in records]


@pytest.fixture(scope="module")
def graph(tmp_path_factory) -> dict:
    """The graph (closed LadybugDB file), its models, and one report written with a probe."""
    folder = tmp_path_factory.mktemp("report-graph")
    uri = f"embedded:{folder / 'g.lbug'}"
    with open_store(uri) as store:
        models = build_graph(store, folder / "zoo", folder / "scorers")
        paths = write_report(store, TARGET, out_dir=folder / "out" / "report")
    return {"folder": folder, "uri": uri, "models": models, "paths": paths}


def copy_graph(graph: dict, dest: Path) -> str:
    """A private copy of the module's graph file (the checkpoints stay shared); returns its URI."""
    dest.mkdir(parents=True, exist_ok=True)
    for f in graph["folder"].glob("g.lbug*"):
        shutil.copy(f, dest / f.name)
    return f"embedded:{dest / 'g.lbug'}"


# ----------------------------------------------------------------------------- the document


def test_report_json_validates_against_its_schema(graph) -> None:
    paths = graph["paths"]
    assert {p.name for p in paths.dir.iterdir()} == {"report.json", "report.md", "report.html"}
    schema = json.loads(SCHEMA_PATH.read_text())
    jsonschema.Draft202012Validator.check_schema(schema)
    on_disk = json.loads(paths.json.read_text())
    jsonschema.Draft202012Validator(schema).validate(on_disk)  # independent of validate_report
    validate_report(on_disk)
    assert on_disk == paths.document

    # what it says: a ranking of both models, the chosen one probed now with shift tests and a curve
    ranking = on_disk["ranking"]["candidates"]
    assert sorted(r["model_id"] for r in ranking) == sorted(graph["models"])
    assert [r["rank"] for r in ranking] == [1, 2]
    chosen = chosen_source(on_disk)
    assert chosen == ranking[0]["model_id"] and on_disk["chosen_source"]["how"] == "top-ranked"
    estimators = next(r for r in ranking if r["model_id"] == chosen)["estimators"]
    assert {"logme", "leep", "nce", "hscore", "sfda"} <= set(estimators)
    shift = on_disk["shift"]
    assert shift["measured"] and shift["probed_now"] and shift["shift_type"] == "input-level"
    assert len(shift["curve"]) >= 2 and shift["freeze_cut"] is not None
    assert any(t["p_value"] is not None and t["verdict"] == "shifted" for t in shift["tests"])
    assert {t["level"] for t in shift["tests"]} == {"input-level", "semantic", "label"}
    # the bias on digits reaches every model (trained on digits or on data derived from it)
    (bias,) = on_disk["bias"]["biases"]
    assert bias["kind"] == "sampling" and bias["path"][0]["id"] == chosen
    assert bias["path"][-1] == {
        "label": "Bias",
        "id": bias["id"],
        "name": bias["path"][-1]["name"],
        "rel": "HAS_BIAS",
    }
    assert bias["label_share"] == 1.0 and bias["sample_share"] == 1.0  # all ten digits
    assert on_disk["bias"]["target_imbalance"]["imbalanced"] is False
    decisions = {d["setting"]: d for d in on_disk["settings"]["decisions"]}
    assert decisions["freeze_cut"]["value"] == 0 and "input-level" in decisions["freeze_cut"]["reason"]
    assert all(d["reason"] for d in decisions.values())
    prov = on_disk["provenance"]
    with open_store(graph["uri"], read_only=True) as store:
        scorer = latest_scorer(store)
    assert prov["scorer"]["id"] == scorer.id and prov["scorer"]["trained_at"] == scorer.created
    assert prov["store"] == graph["uri"] and prov["kgraft_version"]
    assert {m["kind"] for m in prov["measurements"]} >= {"logme", "mmd", "shift_type"}
    assert all(m["time"] for m in prov["measurements"])


def test_a_broken_document_fails_validation(graph) -> None:
    doc = json.loads(graph["paths"].json.read_text())
    missing = {k: v for k, v in doc.items() if k != "ranking"}
    with pytest.raises(ReportError, match=r"schema at \(top level\).*ranking"):
        validate_report(missing)
    doc["ranking"]["candidates"][0]["compatibility"] = 1.5
    with pytest.raises(ReportError, match="ranking/candidates/0/compatibility"):
        validate_report(doc)
    doc = json.loads(graph["paths"].json.read_text())
    doc["shift"]["tests"][0]["level"] = "vibes"
    with pytest.raises(ReportError, match="level"):
        validate_report(doc)


def test_markdown_names_the_ranking_and_the_settings(graph) -> None:
    text = graph["paths"].markdown.read_text()
    doc = graph["paths"].document
    assert "## Ranking" in text and "## Settings" in text and "## Shift" in text and "## Bias" in text
    for row in doc["ranking"]["candidates"]:
        assert f"| {row['rank']} | `{row['model_id']}`" in text
    for d in doc["settings"]["decisions"]:
        assert f"`{d['setting']}`" in text and d["reason"] in text
    assert "Shift type: **input-level**" in text and "HAS_BIAS" in text


# ----------------------------------------------------------------------------- the page in Chromium


def _chromium() -> str:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        if found := shutil.which(name):
            return found
    if os.environ.get("CI") == "true":
        pytest.fail("headless Chromium is missing (Debian package chromium; scripts/install-system-deps.sh)")
    pytest.skip("headless Chromium is not installed (Debian package chromium)")


def dump_dom(page: Path) -> lxml.html.HtmlElement:
    """The page's DOM after Chromium has loaded and rendered it."""
    proc = subprocess.run(
        [
            _chromium(),
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--disable-background-networking",
            "--no-first-run",
            "--dump-dom",
            page.resolve().as_uri(),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0 and proc.stdout.strip(), proc.stderr[-2000:]
    return lxml.html.fromstring(proc.stdout)


def _has_class(cls: str) -> str:
    return f"contains(concat(' ', normalize-space(@class), ' '), ' {cls} ')"


def test_html_in_headless_chromium_shows_ranking_curve_and_bias_path(graph) -> None:
    page = graph["paths"].html
    source = page.read_text()
    assert "http://" not in source.replace("http://www.w3.org/2000/svg", "") and "https://" not in source
    assert "<script" not in source and " src=" not in source  # self-contained: nothing to fetch
    doc = graph["paths"].document
    dom = dump_dom(page)

    ranking = dom.get_element_by_id("ranking")
    rows = ranking.xpath(f".//tr[{_has_class('candidate')}]")
    assert [r.get("data-model") for r in rows] == [c["model_id"] for c in doc["ranking"]["candidates"]]
    assert rows[0].xpath(f"self::tr[{_has_class('chosen')}]")
    assert doc["ranking"]["candidates"][0]["model_id"] in rows[0].text_content()

    curve = dom.get_element_by_id("generality-curve")
    (svg,) = curve.xpath(f".//svg[{_has_class('curve')}]")
    points = svg.xpath(f".//g[{_has_class('generality')}]/circle")
    assert len(points) == len(doc["shift"]["curve"]) >= 2
    assert svg.xpath(f".//g[{_has_class('turning-point')}]/line")
    ys = [float(p.get("cy")) for p in points]
    expected = [c["generality"] for c in doc["shift"]["curve"]]
    # higher generality is drawn higher (smaller y)
    assert sorted(range(len(ys)), key=lambda i: -ys[i]) == sorted(
        range(len(expected)), key=lambda i: expected[i]
    )

    biases = dom.get_element_by_id("bias-paths")
    (path_svg,) = biases.xpath(f".//svg[{_has_class('bias-path')}]")
    nodes = path_svg.xpath(f".//g[{_has_class('node')}]")
    assert [n.get("data-id") for n in nodes] == [p["id"] for p in doc["bias"]["biases"][0]["path"]]
    assert nodes[0].get("data-label") == "Model" and nodes[-1].get("data-label") == "Bias"
    assert "HAS_BIAS" in path_svg.text_content()

    for section in ("settings", "provenance", "imbalance"):
        assert dom.get_element_by_id(section) is not None
    reasons = [r.text_content() for r in dom.get_element_by_id("settings").xpath(".//tr[@class='decision']")]
    assert len(reasons) == len(doc["settings"]["decisions"])


# ----------------------------------------------------------------------------- rewriting, no probe


def test_rewrite_without_probe_says_how_to_measure(graph, tmp_path) -> None:
    uri = copy_graph(graph, tmp_path / "g")
    out = tmp_path / "reports" / "r"
    with open_store(uri) as store:
        first = write_report(store, TARGET, out_dir=out, probe_missing=False)
        assert not first.document["shift"]["probed_now"]
        other = next(m for m in graph["models"] if m != chosen_source(first.document))
        again = write_report(store, TARGET, other, out_dir=out, probe_missing=False, top=1)
    doc = again.document
    assert chosen_source(doc) == other and doc["chosen_source"]["how"] == "given"
    assert doc["shift"]["measured"] is False and doc["shift"]["curve"] == []
    assert doc["shift"]["status"] == f"not measured; run `kgraft probe {other} {TARGET}`"
    assert [r["model_id"] for r in doc["ranking"]["candidates"]][-1] == other  # shown though outside --top
    assert json.loads((out / "report.json").read_text()) == doc  # replaced
    assert "not measured" in (out / "report.md").read_text()
    assert sorted(p.name for p in out.parent.iterdir()) == ["r"]  # no temporary or old folder left


def test_build_report_by_name_and_top(graph) -> None:
    with open_store(graph["uri"], read_only=True) as store:
        doc = build_report(store, TARGET, top=1, probe_missing=False)
    assert len(doc["ranking"]["candidates"]) == 1 and doc["ranking"]["candidates_in_graph"] == 2
    validate_report(doc)


# ----------------------------------------------------------------------------- the command and bad input


def test_cli_writes_the_report(graph, tmp_path) -> None:
    uri = copy_graph(graph, tmp_path / "g")
    out = tmp_path / "rep"
    proc = kgraft("report", "--target", TARGET, "--out", str(out), "--no-probe", store=uri)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "recommended source for digits-rot90" in proc.stdout and str(out / "report.html") in proc.stdout
    assert "freeze_cut:" in proc.stdout
    document = json.loads((out / "report.json").read_text())
    validate_report(document)
    as_json = kgraft("report", "--target", TARGET, "--out", str(out), "--json", "--no-probe", store=uri)
    assert as_json.returncode == 0, as_json.stderr[-2000:]
    printed = json.loads(as_json.stdout)
    assert printed["target"]["id"] == TARGET and printed["ranking"] == document["ranking"]


def _no_report_left(parent: Path) -> None:
    assert not parent.exists() or not any(p.name.startswith((".rep", "rep")) for p in parent.iterdir())


def test_cli_bad_input(graph, tmp_path) -> None:
    """Each user mistake: one sentence, exit code 1, no report folder (nor a temporary one) left."""
    uri = copy_graph(graph, tmp_path / "g")
    out = tmp_path / "rep"

    # a target unknown to the graph
    proc = kgraft("report", "--target", "no-such-data", "--out", str(out), store=uri)
    assert_clean_failure(proc, "no dataset named 'no-such-data'")
    _no_report_left(tmp_path)

    # an output folder that cannot be written (its parent is a regular file: fails for root too)
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    proc = kgraft("report", "--target", TARGET, "--out", str(blocker / "rep"), "--no-probe", store=uri)
    assert_clean_failure(proc, f"cannot write the report to {blocker / 'rep'}: {blocker} is a file")
    assert blocker.read_text() == "not a folder"

    # a source whose checkpoint is gone: the sentence names the missing file
    model = graph["models"][0]
    gone = tmp_path / "moved-away.safetensors"
    with open_store(uri) as store:
        store.execute("MATCH (m:Model {id: $id}) SET m.checkpoint = $path", {"id": model, "path": str(gone)})
    proc = kgraft("report", "--target", TARGET, "--source", model, "--out", str(out), store=uri)
    assert_clean_failure(proc, f"the checkpoint of model '{model}' is missing: {gone} does not exist")
    _no_report_left(tmp_path)

    # a graph with no candidate sources
    empty = f"embedded:{tmp_path / 'empty.lbug'}"
    with open_store(empty) as store:
        register_dataset(store, load_dataset("digits"))
    proc = kgraft("report", "--target", "digits", "--out", str(out), store=empty)
    assert_clean_failure(proc, "no candidate source models")
    _no_report_left(tmp_path)


def test_library_bad_input(graph, tmp_path) -> None:
    """The same rules in process (cheaper than a subprocess each): a folder of other files is never
    replaced, an unloadable top candidate is passed over with the reason, no scorer is one sentence."""
    uri = copy_graph(graph, tmp_path / "g")
    keep = tmp_path / "mine"
    keep.mkdir()
    (keep / "notes.txt").write_text("mine")
    model = graph["models"][0]
    with open_store(uri) as store:
        # a failed rewrite leaves the earlier report as it was
        kept = write_report(store, TARGET, out_dir=tmp_path / "old", probe_missing=False)
        before = kept.json.read_bytes()
        with pytest.raises(ReportError, match="unknown source model"):
            write_report(store, TARGET, "no-such-model", out_dir=kept.dir)
        assert kept.json.read_bytes() == before and sorted(p.name for p in kept.dir.iterdir()) == [
            "report.html",
            "report.json",
            "report.md",
        ]
        with pytest.raises(ReportError, match="holds other files, not a report"):
            write_report(store, TARGET, out_dir=keep, probe_missing=False)
        assert [p.name for p in keep.iterdir()] == ["notes.txt"]

        gone = tmp_path / "moved-away.safetensors"
        store.execute("MATCH (m:Model {id: $id}) SET m.checkpoint = $path", {"id": model, "path": str(gone)})
        with pytest.raises(ReportError, match=f"{gone} does not exist"):
            build_report(store, TARGET, model, probe_missing=False)
        doc = build_report(store, TARGET, probe_missing=False)
        assert chosen_source(doc) == graph["models"][1]
        top = doc["ranking"]["candidates"][0]
        if top["model_id"] == model:
            assert doc["chosen_source"]["how"] == "best fine-tunable" and not top["loadable"]
            assert any(
                f"passed over rank 1 {model}: its checkpoint {gone} is missing" in n for n in doc["notes"]
            )

        store.execute("MATCH (m:Model) WHERE m.kind = $k DETACH DELETE m", {"k": "gnn-scorer"})
        with pytest.raises(ReportError, match="run `kgraft gnn train` first"):
            build_report(store, TARGET, probe_missing=False)
        with pytest.raises(ReportError, match="unknown target dataset"):
            build_report(store, "no-such-data")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["g", "mine", "old"]


# ----------------------------------------------------------------------------- Neo4j


def test_report_on_neo4j(neo4j_uri, graph, tmp_path) -> None:
    """The same report from a Neo4j store (zoo checkpoints cached by the module's graph)."""
    with open_store(neo4j_uri) as store:
        store.clear()
        try:
            models = build_graph(store, graph["folder"] / "zoo", tmp_path / "scorers")
            paths = write_report(store, TARGET, out_dir=tmp_path / "rep")
            assert sorted(models) == sorted(graph["models"])
            doc = paths.document
            validate_report(json.loads(paths.json.read_text()))
            assert doc["provenance"]["store"] == store.uri and doc["shift"]["measured"]
            assert doc["bias"]["biases"][0]["path"][-1]["rel"] == "HAS_BIAS"
            assert {r["model_id"] for r in doc["ranking"]["candidates"]} == set(models)
        finally:
            store.clear()

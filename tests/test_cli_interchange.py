"""RDF and Croissant through the command line, on both stores."""

from __future__ import annotations

import json
from pathlib import Path

import rdflib
from rdflib.compare import isomorphic

from kg import GraphStore, open_store
from tests.cli import assert_clean_failure, kgraft
from tests.corpus import CROISSANT
from tests.lineage_fixture import lineage_batch


def test_fixtures_are_present() -> None:
    """The Croissant fixtures must be found, or the parametrized import tests would silently vanish."""
    assert CROISSANT.is_dir(), f"missing {CROISSANT}"
    assert len(list(CROISSANT.glob("*.json"))) >= 3


def test_cli_rdf_round_trip(store: GraphStore, tmp_path: Path) -> None:
    store.apply(lineage_batch())
    uri = store.uri
    store.close()
    first, second, as_jsonld = tmp_path / "first.ttl", tmp_path / "second.ttl", tmp_path / "graph.jsonld"
    out = kgraft("export", "rdf", str(first), store=uri)
    assert out.returncode == 0, out.stderr
    with open_store(uri) as s:
        s.clear()
    imported = kgraft("import", "rdf", str(first), store=uri)
    assert imported.returncode == 0, imported.stderr
    assert kgraft("export", "rdf", str(second), store=uri).returncode == 0
    g1 = rdflib.Graph().parse(first, format="turtle")
    g2 = rdflib.Graph().parse(second, format="turtle")
    assert len(g1) > 100 and isomorphic(g1, g2)
    assert kgraft("export", "rdf", str(as_jsonld), store=uri).returncode == 0
    assert len(rdflib.Graph().parse(as_jsonld, format="json-ld")) == len(g1)


def test_cli_rdf_bad_files(store: GraphStore, tmp_path: Path) -> None:
    uri = store.uri
    store.close()
    bad = tmp_path / "bad.ttl"
    bad.write_text('@prefix kg: <https://kgraft.dev/ontology#> .\n<a> kg:name "unterminated .\n')
    assert_clean_failure(kgraft("import", "rdf", str(bad), store=uri), "not valid turtle")
    assert_clean_failure(kgraft("export", "rdf", str(tmp_path / "out.xyz"), store=uri), "")
    assert_clean_failure(kgraft("export", "rdf", "/proc/forbidden/out.ttl", store=uri), "")
    with open_store(uri) as s:
        assert s.count("Dataset") == 0


def test_cli_croissant_biases_show_in_bias(store: GraphStore) -> None:
    uri = store.uri
    store.close()
    for path in sorted(CROISSANT.glob("*.json")):
        proc = kgraft("import", "croissant", str(path), store=uri)
        assert proc.returncode == 0, (path.name, proc.stderr)
    bias = kgraft("bias", "leafscan-mini", "--format", "json", store=uri)
    assert bias.returncode == 0, bias.stderr
    results = json.loads(bias.stdout)["results"]
    kinds = {r["properties"]["kind"] for r in results}
    assert {"data-bias", "annotator-demographics"} <= kinds
    assert all(r["properties"]["source"] == "croissant" for r in results)
    not_json = CROISSANT / "README.md"
    assert_clean_failure(kgraft("import", "croissant", str(not_json), store=uri), "")

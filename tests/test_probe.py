"""Probes on a real (small) zoo: shift types of controlled variants, SCORED_ON in the graph."""

from __future__ import annotations

from pathlib import Path

import pytest

from kg import GraphStore, open_store
from tests.cli import assert_clean_failure, kgraft
from transfer.data.derive import derive
from transfer.data.sources import load_dataset
from transfer.probe.run import probe
from transfer.register import register_dataset
from transfer.zoo.registration import build_and_register_demo_zoo

VARIANTS = {
    "fm-rot90": ("rotate", {"degrees": 90}),
    "fm-inverted": ("invert", {}),
    "fm-tops": ("class_subset", {"classes": ["T-shirt/top", "Pullover", "Dress", "Coat", "Shirt"]}),
}


@pytest.fixture(scope="module")
def small_fashion():
    full = load_dataset("fashion-mnist")
    return full, derive(full, "subset", {"n": 4000}, name="fm")


def _setup(store: GraphStore, datasets, out: Path, variants=VARIANTS) -> str:
    full, base = datasets
    register_dataset(store, full)
    register_dataset(store, base, derived_from="fashion-mnist")
    for name, (how, params) in variants.items():
        register_dataset(store, derive(base, how, params, name=name), derived_from="fm")
    (record,) = build_and_register_demo_zoo(store, {"fm": base}, out / "zoo", epochs=2)
    return record.id


def test_controlled_variants_get_the_right_shift_type(tmp_path: Path, small_fashion) -> None:
    with open_store(f"embedded:{tmp_path / 'g.lbug'}") as store:
        model_id = _setup(store, small_fashion, tmp_path)
        types = {}
        for name in VARIANTS:
            report = probe(
                store, model_id, name, n=400, out_dir=tmp_path / "probes", cache_dir=tmp_path / "cache"
            )
            types[name] = report.shift_type
            assert report.plot and Path(report.plot).is_file()
        assert types == {"fm-rot90": "input-level", "fm-inverted": "input-level", "fm-tops": "label"}
        rows = store.query(
            "MATCH (:Model {id: $m})-[r:SCORED_ON]->(:Dataset {id: $d}) "
            "RETURN r.kind AS kind, r.layer AS layer",
            {"m": model_id, "d": "fm-rot90"},
        )
        kinds = {r["kind"] for r in rows}
        assert {"logme", "leep", "nce", "hscore", "sfda", "knn_accuracy", "linear_probe_accuracy"} <= kinds
        assert {"mmd", "ks_softmax", "domain_auc", "layer_shift", "shift_type"} <= kinds
        # re-probing hits the feature cache and replaces measurements instead of adding duplicates
        again = probe(store, model_id, "fm-rot90", n=400, cache_dir=tmp_path / "cache")
        assert again.cached
        assert len(
            store.query(
                "MATCH (:Model {id: $m})-[r:SCORED_ON]->(:Dataset {id: $d}) RETURN r.kind AS kind",
                {"m": model_id, "d": "fm-rot90"},
            )
        ) == len(rows)


def test_scored_on_recorded_on_both_stores(store: GraphStore, tmp_path: Path, small_fashion) -> None:
    model_id = _setup(store, small_fashion, tmp_path, {"fm-rot90": VARIANTS["fm-rot90"]})
    report = probe(store, model_id, "fm-rot90", n=200, cache_dir=tmp_path / "cache")
    rows = store.query(
        "MATCH (:Model {id: $m})-[r:SCORED_ON {kind: $k}]->(:Dataset {id: $d}) RETURN r.value AS v, "
        "r.sample_size AS n, r.model_checksum AS mc",
        {"m": model_id, "d": "fm-rot90", "k": "logme"},
    )
    assert rows == [{"v": pytest.approx(report.estimators["logme"]), "n": 200, "mc": rows[0]["mc"]}]
    assert len(rows[0]["mc"]) == 64


def test_probe_bad_input(tmp_path: Path) -> None:
    uri = f"embedded:{tmp_path / 'g.lbug'}"
    digits = load_dataset("digits")
    with open_store(uri) as store:
        register_dataset(store, digits)
        register_dataset(
            store,
            derive(digits, "class_subset", {"classes": ["3"]}, name="only-threes"),
            derived_from="digits",
        )
        (record,) = build_and_register_demo_zoo(store, {"digits": digits}, tmp_path / "zoo", epochs=1)
    assert_clean_failure(kgraft("probe", record.id, "only-threes", store=uri), "single class")
    assert_clean_failure(kgraft("probe", "no-such-model", "digits", store=uri), "no model")
    with open_store(uri, read_only=True) as store:
        assert store.query("MATCH ()-[r:SCORED_ON]->() RETURN count(r) AS c") == [{"c": 0}]

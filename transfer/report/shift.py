"""Shift analysis of the chosen pair, read back from the SCORED_ON measurements of ``kgraft probe``.

Reading the graph (rather than a probe's return value) gives one code path for a probe run now (by
``transfer.loop.plan``) and one recorded earlier; this section never probes.
Each test is labelled with the level of the representation it looks at: the class-matched early-layer
shift is input-level, tests on penultimate features or softmax outputs are semantic, the class-prior
distance is label shift.
"""

from __future__ import annotations

from typing import Any

from kg.store import GraphStore
from transfer.report.values import decoded, number

ALPHA = 0.05
TESTS = {  # stored kind: (what it is, the level it looks at)
    "mmd": ("kernel MMD on penultimate features (permutation test)", "semantic"),
    "ks_softmax": ("per-class KS on softmax outputs (Bonferroni)", "semantic"),
    "domain_auc": ("domain-classifier AUC on penultimate features", "semantic"),
    "label_shift_tv": ("total variation between class priors", "label"),
    "class_matched_early_shift": ("first-group shift against class-matched source images", "input-level"),
    "class_matched_late_shift": ("last-group shift against class-matched source images", "semantic"),
}


def probe_command(source_id: str, target_id: str) -> str:
    """The command that measures the pair."""
    return f"kgraft probe {source_id} {target_id}"


def _rows(store: GraphStore, source_id: str, target_id: str) -> list[dict[str, Any]]:
    return store.query(
        "MATCH (:Model {id: $s})-[r:SCORED_ON]->(:Dataset {id: $t}) "
        "RETURN r.kind AS kind, r.layer AS layer, r.value AS value, r.p_value AS p_value, "
        "r.sample_size AS sample_size, r.time AS time, r.extra AS extra ORDER BY kind, layer",
        {"s": source_id, "t": target_id},
    )


def measurements(store: GraphStore, source_id: str, target_id: str) -> list[dict[str, Any]]:
    """Every SCORED_ON row of the pair (kind, layer, value, p-value, sample size, time)."""
    return [
        {
            "kind": r["kind"],
            "layer": r["layer"] or "",
            "value": number(r["value"]),
            "p_value": number(r["p_value"]),
            "sample_size": r["sample_size"],
            "time": r["time"],
        }
        for r in _rows(store, source_id, target_id)
    ]


def _group(layer: str) -> int | None:
    return int(layer[5:]) if layer.startswith("group") and layer[5:].isdigit() else None


def shift_section(
    store: GraphStore,
    source_id: str,
    target_id: str,
    *,
    probed_now: bool = False,
) -> dict[str, Any]:
    """The report's ``shift`` section: tests, type, generality curve and freeze cut (or why not);
    ``probed_now`` says the measurements were taken while planning this report."""
    rows = _rows(store, source_id, target_id)
    curve: dict[int, dict[str, Any]] = {}
    tests, shift_type, freeze_cut, times = [], None, None, []
    for r in rows:
        kind, layer, value, p = r["kind"], r["layer"] or "", number(r["value"]), number(r["p_value"])
        times.append(r["time"])
        group = _group(layer)
        if kind == "layer_shift" and group is not None and value is not None:
            point = curve.setdefault(group, {"group": group})
            point["layer_shift"], point["generality"] = value, 1.0 - value
        elif kind == "group_linear_probe" and group is not None:
            curve.setdefault(group, {"group": group})["target_linear_probe"] = value
        elif kind == "shift_type":
            extra = decoded(r["extra"]) or {}
            shift_type, freeze_cut = extra.get("type"), extra.get("freeze_cut")
        elif kind in TESTS:
            what, level = TESTS[kind]
            verdict = None if p is None else ("shifted" if p < ALPHA else "not shifted")
            tests.append(
                {
                    "name": kind,
                    "description": what,
                    "level": level,
                    "statistic": value,
                    "p_value": p,
                    "verdict": verdict,
                }
            )
    points = [
        {
            "group": g,
            "layer_shift": curve[g].get("layer_shift"),
            "generality": curve[g].get("generality"),
            "target_linear_probe": curve[g].get("target_linear_probe"),
        }
        for g in sorted(curve)
    ]
    measured = bool(tests or points or shift_type)
    if measured:
        status = "measured now by `kgraft probe`" if probed_now else "measured by an earlier `kgraft probe`"
    elif rows:
        status = (
            "estimators recorded but no shift tests: the source's pretraining data could not be rebuilt "
            "on this machine when it was probed"
        )
    else:
        status = f"not measured; run `{probe_command(source_id, target_id)}`"
    return {
        "measured": measured,
        "probed_now": probed_now,
        "status": status,
        "command": probe_command(source_id, target_id),
        "shift_type": shift_type,
        "alpha": ALPHA,
        "tests": tests,
        "curve": points,
        "freeze_cut": freeze_cut,
        "measured_at": max((t for t in times if t), default=None),
    }

"""The report as a concise Markdown summary, for terminals and pull requests."""

from __future__ import annotations

from typing import Any

from transfer.report.text import (
    ESTIMATOR_NAMES,
    compatibility_text,
    estimator_columns,
    fmt,
    p_value,
    pct,
    setting_value,
)


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    def line(cells: list[str]) -> str:
        return "| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |"

    return [line(header), "|" + "|".join("---" for _ in header) + "|", *(line(r) for r in rows)]


def _ranking(document: dict[str, Any]) -> list[str]:
    kinds = estimator_columns(document)
    rows = [
        [
            str(r["rank"]),
            f"`{r['model_id']}`" + ("" if r["loadable"] else " (not loadable)"),
            compatibility_text(r),
            fmt(r["shift_risk"], 2),
            fmt(r["bias_risk"], 2),
            *(fmt(r["estimators"].get(k)) for k in kinds),
        ]
        for r in document["ranking"]["candidates"]
    ]
    header = [
        "rank",
        "source",
        "compatibility",
        "shift risk",
        "bias risk",
        *(ESTIMATOR_NAMES.get(k, k) for k in kinds),
    ]
    return [
        "## Ranking",
        "",
        f"Compatibility basis: {document['ranking']['basis']}; "
        f"{document['ranking']['candidates_in_graph']} candidate sources in the graph.",
        "",
        *_table(header, rows),
    ]


def _shift(shift: dict[str, Any]) -> list[str]:
    if not shift["measured"]:
        return ["## Shift", "", f"Shift: {shift['status']}."]
    cut = "" if shift["freeze_cut"] is None else f"; generality curve turns after group {shift['freeze_cut']}"
    tests = [
        [t["name"], t["level"], fmt(t["statistic"]), p_value(t["p_value"]), t["verdict"] or "-"]
        for t in shift["tests"]
    ]
    return [
        "## Shift",
        "",
        f"Shift type: **{shift['shift_type'] or 'unknown'}**{cut} ({shift['status']}).",
        "",
        *_table(["test", "level", "statistic", "p-value", "verdict"], tests),
    ]


def _bias(bias: dict[str, Any]) -> list[str]:
    out = ["## Bias", ""]
    if not bias["biases"]:
        out.append("No known bias reaches the source through its lineage.")
    for b in bias["biases"]:
        out.append(
            f"- **{b['kind']}** ({b['severity'] or 'severity unknown'}), touches "
            f"{pct(b['label_share'])} of the target's classes: `{b['path_text']}`"
        )
    ratio = fmt(bias["target_imbalance"]["ratio"], 2)
    return [*out, "", f"Target class imbalance (largest / smallest class): {ratio}."]


def _settings(settings: dict[str, Any]) -> list[str]:
    return [
        "## Settings",
        "",
        *(f"- `{d['setting']}` = {setting_value(d['value'])}: {d['reason']}" for d in settings["decisions"]),
        "",
        f"Run: `{settings['command']}`",
    ]


def _provenance(document: dict[str, Any]) -> list[str]:
    prov = document["provenance"]
    scorer = prov["scorer"]
    return [
        "## Provenance",
        "",
        f"- scorer `{scorer['id']}` (version {scorer['version']}, basis {scorer['basis']}, trained "
        f"{scorer['trained_at'] or 'at an unknown time'})",
        f"- {len(prov['measurements'])} measurements of the chosen pair, "
        f"newest {document['shift'].get('measured_at') or '-'}",
        f"- kgraft {prov['kgraft_version']}, store `{prov['store']}`, generated {prov['generated_at']}",
    ]


def render_markdown(document: dict[str, Any]) -> str:
    """The Markdown summary of a report document: the recommendation, then one section each for the
    ranking, shift, bias, settings, provenance and (when there are any) notes."""
    target, chosen = document["target"], document["chosen_source"]
    out = [
        f"# Transfer report: {target['name']}",
        "",
        f"**Recommended source:** `{chosen['id']}` ({chosen['name']}), "
        f"rank {chosen['rank']} ({chosen['how']}).",
    ]
    sections = [
        _ranking(document),
        _shift(document["shift"]),
        _bias(document["bias"]),
        _settings(document["settings"]),
        _provenance(document),
    ]
    if document["notes"]:
        sections.append(["## Notes", "", *(f"- {n}" for n in document["notes"])])
    for section in sections:
        out += ["", *section]
    return "\n".join(out) + "\n"

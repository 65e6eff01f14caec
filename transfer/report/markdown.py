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


def render_markdown(document: dict[str, Any]) -> str:
    """The Markdown summary of a report document."""
    target, chosen, shift = document["target"], document["chosen_source"], document["shift"]
    out = [
        f"# Transfer report: {target['name']}",
        "",
        f"**Recommended source:** `{chosen['id']}` ({chosen['name']}), "
        f"rank {chosen['rank']} ({chosen['how']}).",
        "",
        "## Ranking",
        "",
        f"Compatibility basis: {document['ranking']['basis']}; "
        f"{document['ranking']['candidates_in_graph']} candidate sources in the graph.",
        "",
    ]
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
    out += [*_table(header, rows), "", "## Shift", ""]
    if shift["measured"]:
        cut = (
            ""
            if shift["freeze_cut"] is None
            else f"; generality curve turns after group {shift['freeze_cut']}"
        )
        out.append(f"Shift type: **{shift['shift_type'] or 'unknown'}**{cut} ({shift['status']}).")
        out += [
            "",
            *_table(
                ["test", "level", "statistic", "p-value", "verdict"],
                [
                    [t["name"], t["level"], fmt(t["statistic"]), p_value(t["p_value"]), t["verdict"] or "-"]
                    for t in shift["tests"]
                ],
            ),
        ]
    else:
        out.append(f"Shift: {shift['status']}.")
    out += ["", "## Bias", ""]
    biases = document["bias"]["biases"]
    if not biases:
        out.append("No known bias reaches the source through its lineage.")
    for b in biases:
        out.append(
            f"- **{b['kind']}** ({b['severity'] or 'severity unknown'}), touches "
            f"{pct(b['label_share'])} of the target's classes: `{b['path_text']}`"
        )
    imbalance = document["bias"]["target_imbalance"]
    out += ["", f"Target class imbalance (largest / smallest class): {fmt(imbalance['ratio'], 2)}.", ""]
    out += ["## Settings", ""]
    out += [
        f"- `{d['setting']}` = {setting_value(d['value'])}: {d['reason']}"
        for d in document["settings"]["decisions"]
    ]
    out += ["", f"Run: `{document['settings']['command']}`", "", "## Provenance", ""]
    prov = document["provenance"]
    scorer = prov["scorer"]
    out += [
        f"- scorer `{scorer['id']}` (version {scorer['version']}, basis {scorer['basis']}, trained "
        f"{scorer['trained_at'] or 'at an unknown time'})",
        f"- {len(prov['measurements'])} measurements of the chosen pair, "
        f"newest {shift.get('measured_at') or '-'}",
        f"- kgraft {prov['kgraft_version']}, store `{prov['store']}`, generated {prov['generated_at']}",
    ]
    if document["notes"]:
        out += ["", "## Notes", "", *(f"- {n}" for n in document["notes"])]
    return "\n".join(out) + "\n"

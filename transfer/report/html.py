"""The report as one self-contained HTML page for people: inline CSS and inline SVG, no scripts, no
network. Sections carry stable ids (``ranking``, ``shift``, ``generality-curve``, ``bias-paths``,
``imbalance``, ``settings``, ``provenance``) so tools and tests can find them."""

from __future__ import annotations

from html import escape
from typing import Any

from transfer.report.svg import bias_path_svg, class_bars_svg, curve_svg
from transfer.report.text import (
    ESTIMATOR_NAMES,
    compatibility_text,
    estimator_columns,
    fmt,
    p_value,
    pct,
    setting_value,
)

CSS = """
body{font-family:"DejaVu Sans",Helvetica,Arial,sans-serif;margin:24px auto;max-width:1120px;color:#111827;
line-height:1.45;padding:0 16px}
h1{font-size:24px;margin-bottom:4px}h2{font-size:18px;border-bottom:1px solid #e5e7eb;padding-bottom:4px;
margin-top:28px}
.lead{font-size:15px;background:#eff6ff;border-left:4px solid #2563eb;padding:8px 12px}
table{border-collapse:collapse;font-size:13px;margin:8px 0}th,td{border:1px solid #e5e7eb;padding:4px 8px;
text-align:left;vertical-align:top}th{background:#f9fafb}td.num{text-align:right;font-variant-numeric:tabular-nums}
tr.chosen td{background:#eff6ff;font-weight:600}.muted{color:#6b7280;font-size:12px}
code{background:#f3f4f6;padding:1px 4px;border-radius:3px;font-size:12px}
.row{display:flex;gap:28px;flex-wrap:wrap;align-items:flex-start}#generality-curve{max-width:580px}
.bias{margin:10px 0 18px}.bias svg{max-width:100%;height:auto}.pill{display:inline-block;padding:0 6px;
border-radius:8px;font-size:12px;background:#fee2e2}
"""


def _esc(value: Any) -> str:
    return escape("" if value is None else str(value))


def _code(text: str) -> str:
    """Escaped text with `backticked` spans as <code>."""
    parts = _esc(text).split("`")
    return "".join(f"<code>{p}</code>" if i % 2 else p for i, p in enumerate(parts))


def _ranking(document: dict[str, Any]) -> str:
    kinds = estimator_columns(document)
    chosen = document["chosen_source"]["id"]
    head = "".join(
        f"<th>{h}</th>"
        for h in ["rank", "source", "compatibility", "shift risk", "bias risk", "basis"]
        + [_esc(ESTIMATOR_NAMES.get(k, k)) for k in kinds]
    )
    rows = []
    for r in document["ranking"]["candidates"]:
        why = "<br>".join(_esc(f) for f in r["facts"].get("compatibility", [])[:2])
        cells = [
            f'<td class="num">{r["rank"]}</td>',
            f'<td><code>{_esc(r["model_id"])}</code><div class="muted">{_esc(r["name"])}</div>'
            + ("" if r["loadable"] else '<div class="muted">checkpoint not on this machine</div>')
            + "</td>",
            f'<td class="num" title="{why}">{_esc(compatibility_text(r))}</td>',
            f'<td class="num">{fmt(r["shift_risk"], 2)}</td>',
            f'<td class="num">{fmt(r["bias_risk"], 2)}</td>',
            f"<td>{_esc(r['basis'])}</td>",
            *(f'<td class="num">{fmt(r["estimators"].get(k))}</td>' for k in kinds),
        ]
        chosen_cls = " chosen" if r["model_id"] == chosen else ""
        rows.append(
            f'<tr class="candidate{chosen_cls}" data-model="{_esc(r["model_id"])}">{"".join(cells)}</tr>'
        )
    basis = document["ranking"]["basis"]
    return (
        f'<section id="ranking"><h2>Ranked candidate sources</h2>'
        '<p class="muted">Compatibility: the GNN scorer\'s predicted percentile among sources on '
        "this target "
        f"(basis: {_esc(basis)}), ± its ensemble spread. Estimators: transferability scores recorded by "
        f"<code>kgraft probe</code> (higher is better).</p>"
        f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(rows)}</tbody></table></section>"
    )


def _shift(document: dict[str, Any]) -> str:
    shift = document["shift"]
    if not shift["measured"]:
        return (
            f'<section id="shift"><h2>Shift analysis</h2><p>{_code(shift["status"])}.</p>'
            f'<div id="generality-curve"><p class="muted">No generality curve: the pair was not probed. '
            f"Run <code>{_esc(shift['command'])}</code>.</p></div></section>"
        )
    tests = "".join(
        f'<tr class="test"><td>{_esc(t["name"])}<div class="muted">{_esc(t.get("description"))}</div></td>'
        f'<td>{_esc(t["level"])}</td><td class="num">{fmt(t["statistic"])}</td>'
        f'<td class="num">{p_value(t["p_value"])}</td><td>{_esc(t["verdict"] or "-")}</td></tr>'
        for t in shift["tests"]
    )
    turn = shift["freeze_cut"]
    decision = next((d for d in document["settings"]["decisions"] if d["setting"] == "freeze_cut"), None)
    cut = decision["value"] if decision else None
    curve = (
        curve_svg(shift["curve"], turn, cut)
        + f'<p class="muted">The curve turns after group {_esc(turn)}. Freeze cut in the settings: '
        f"{_esc(cut)} ({_esc(decision['reason'] if decision else 'not decided')}).</p>"
        if shift["curve"]
        else '<p class="muted">No layer-wise curve recorded.</p>'
    )
    return (
        '<section id="shift"><h2>Shift analysis</h2>'
        f"<p>Shift type: <strong>{_esc(shift['shift_type'] or 'unknown')}"
        f'</strong> <span class="muted">({_code(shift["status"])}; α = {shift.get("alpha", 0.05)})</span></p>'
        '<div class="row"><div>'
        f"<table><thead><tr><th>test</th><th>level</th><th>statistic</th><th>p-value</th><th>verdict</th></tr>"
        f'</thead><tbody>{tests}</tbody></table></div><div id="generality-curve">'
        f"<h3>Layer-wise generality</h3>{curve}"
        f"</div></div></section>"
    )


def _bias(document: dict[str, Any]) -> str:
    bias = document["bias"]
    items = []
    for i, b in enumerate(bias["biases"]):
        touched = b.get("touched_classes")
        which = "" if not touched else f" ({', '.join(touched[:12])}{', …' if len(touched) > 12 else ''})"
        items.append(
            f'<div class="bias" data-bias="{_esc(b["id"])}">'
            f'<p><span class="pill">{_esc(b["severity"] or "?")}</span> '
            f'<strong>{_esc(b["kind"])}</strong>: {_esc(b["description"])}<br><span class="muted">touches '
            f"{pct(b['label_share'])} of the target's classes{_esc(which)}"
            + ("" if b.get("sample_share") is None else f", {pct(b['sample_share'])} of its samples")
            + f"; {b['distance']} hops upstream</span></p>{bias_path_svg(b['path'], i)}</div>"
        )
    body = "".join(items) or "<p>No known bias reaches the source through its lineage.</p>"
    imbalance = bias["target_imbalance"]
    verdict = "imbalanced" if imbalance["imbalanced"] else "balanced enough"
    return (
        f'<section id="bias-paths"><h2>Known biases reaching the source</h2>{body}</section>'
        f'<section id="imbalance"><h2>Target class balance</h2><p>Largest / smallest class: '
        f"<strong>{fmt(imbalance['ratio'], 2)}</strong> ({verdict}).</p>"
        f"{class_bars_svg(imbalance['class_counts'])}</section>"
    )


def _settings(document: dict[str, Any]) -> str:
    settings = document["settings"]
    rows = "".join(
        f'<tr class="decision"><td><code>{_esc(d["setting"])}</code></td>'
        f"<td>{_esc(setting_value(d['value']))}</td>"
        f"<td>{_esc(d['reason'])}</td></tr>"
        for d in settings["decisions"]
    )
    return (
        f'<section id="settings"><h2>Recommended fine-tuning settings</h2>'
        f"<table><thead><tr><th>setting</th><th>value</th><th>why</th></tr></thead><tbody>{rows}</tbody></table>"
        f"<p>Run: <code>{_esc(settings['command'])}</code></p></section>"
    )


def _provenance(document: dict[str, Any]) -> str:
    prov, scorer = document["provenance"], document["provenance"]["scorer"]
    measured = "".join(
        f'<tr><td>{_esc(m["kind"])}</td><td>{_esc(m["layer"])}</td><td class="num">{fmt(m["value"])}</td>'
        f'<td class="num">{_esc(m.get("sample_size"))}</td><td>{_esc(m["time"])}</td></tr>'
        for m in prov["measurements"]
    )
    notes = "".join(f"<li>{_esc(n)}</li>" for n in document["notes"])
    return (
        f'<section id="provenance"><h2>Provenance</h2><ul>'
        f"<li>scorer <code>{_esc(scorer['id'])}</code>, version {_esc(scorer['version'])}, basis "
        f"{_esc(scorer['basis'])}, trained {_esc(scorer['trained_at'])} on "
        f"{_esc(scorer.get('n_outcomes'))} outcomes</li>"
        f"<li>kgraft {_esc(prov['kgraft_version'])}; store <code>{_esc(prov['store'])}</code>; generated "
        f"{_esc(prov['generated_at'])}</li></ul>"
        + (f'<ul class="notes">{notes}</ul>' if notes else "")
        + "<details><summary>Measurements of the chosen pair</summary>"
        "<table><thead><tr><th>kind</th><th>layer</th>"
        f"<th>value</th><th>n</th><th>time</th></tr></thead><tbody>{measured}</tbody></table></details></section>"
    )


def render_html(document: dict[str, Any]) -> str:
    """The HTML page of a report document."""
    target, chosen = document["target"], document["chosen_source"]
    title = f"Transfer report: {target['name']}"
    return (
        f'<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><title>{_esc(title)}</title>'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<style>{CSS}</style></head><body>"
        f"<h1>{_esc(title)}</h1>"
        f'<p class="lead" id="summary">Recommended source: <code>{_esc(chosen["id"])}</code> '
        f"({_esc(chosen['name'])}), "
        f"rank {chosen['rank']} of {document['ranking']['candidates_in_graph']} candidates; target "
        f"<code>{_esc(target['id'])}</code> ({_esc(target.get('n_classes'))} classes, "
        f"{_esc(target.get('n_samples'))} images).</p>"
        f"{_ranking(document)}{_shift(document)}{_bias(document)}{_settings(document)}{_provenance(document)}"
        "</body></html>\n"
    )

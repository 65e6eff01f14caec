"""Small inline SVG pictures for the HTML report: the generality curve, a bias's lineage path and the
target's class counts. Plain SVG text (no plotting library, no external fonts or files), so the page
stays self-contained and each picture's parts can be found in the DOM by class name."""

from __future__ import annotations

from html import escape
from typing import Any

FONT = 'font-family="DejaVu Sans, Helvetica, Arial, sans-serif"'
LABEL_COLOURS = {"Model": "#dbeafe", "Dataset": "#dcfce7", "Bias": "#fee2e2", "Activity": "#f3e8ff"}


def _polyline(points: list[tuple[float, float]], cls: str, colour: str, dash: str = "") -> str:
    pts = " ".join(f"{x:.1f},{y:.1f}" for x, y in points)
    dashes = f' stroke-dasharray="{dash}"' if dash else ""
    dots = "".join(f'<circle cx="{x:.1f}" cy="{y:.1f}" r="3.5" fill="{colour}"/>' for x, y in points)
    line = f'<polyline points="{pts}" fill="none" stroke="{colour}" stroke-width="2"{dashes}/>'
    return f'<g class="{cls}">{line}{dots}</g>'


def curve_svg(
    curve: list[dict[str, Any]],
    turning_point: int | None,
    freeze_cut: int | None = None,
    width: int = 560,
    height: int = 300,
) -> str:
    """The layer-wise generality curve (1 - layer shift) and the target linear-probe accuracy per layer
    group, with the curve's turning point as a dotted line after group ``turning_point`` and the
    settings' freeze cut (the first trained group, when above 0) as a red line before it."""
    left, right, top, bottom = 48, 16, 16, 64
    plot_w, plot_h = width - left - right, height - top - bottom
    groups = [int(p["group"]) for p in curve]
    span = max(max(groups, default=0), 1)

    def x(g: float) -> float:
        return left + plot_w * (g / span if len(groups) > 1 else 0.5)

    def y(v: float) -> float:
        return top + plot_h * (1.0 - max(0.0, min(1.0, v)))

    parts = [
        f'<svg class="curve" xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" role="img" aria-label="layer-wise generality curve" '
        f'{FONT} font-size="11">'
    ]
    for tick in (0.0, 0.25, 0.5, 0.75, 1.0):
        parts.append(
            f'<line x1="{left}" x2="{width - right}" y1="{y(tick):.1f}" y2="{y(tick):.1f}" stroke="#e5e7eb"/>'
            f'<text x="{left - 6}" y="{y(tick) + 4:.1f}" text-anchor="end">{tick:.2f}</text>'
        )
    for g in groups:
        parts.append(f'<text x="{x(g):.1f}" y="{top + plot_h + 16}" text-anchor="middle">{g}</text>')
    parts.append(
        f'<text x="{left + plot_w / 2:.1f}" y="{top + plot_h + 32}" text-anchor="middle">layer group</text>'
    )
    general = [(x(p["group"]), y(p["generality"])) for p in curve if p.get("generality") is not None]
    probe = [
        (x(p["group"]), y(p["target_linear_probe"]))
        for p in curve
        if p.get("target_linear_probe") is not None
    ]
    if general:
        parts.append(_polyline(general, "generality", "#2563eb"))
    if probe:
        parts.append(_polyline(probe, "linear-probe", "#16a34a", "5,4"))
    if turning_point is not None and len(groups) > 1 and turning_point < max(groups):
        cx = x(turning_point + 0.5)
        parts.append(
            f'<g class="turning-point"><line x1="{cx:.1f}" x2="{cx:.1f}" y1="{top}" y2="{top + plot_h}" '
            f'stroke="#6b7280" stroke-width="2" stroke-dasharray="2,3"/>'
            f'<text x="{cx + 4:.1f}" y="{top + 12}">turning point</text></g>'
        )
    if freeze_cut and len(groups) > 1:
        cx = x(freeze_cut - 0.5)
        parts.append(
            f'<g class="freeze-cut"><line x1="{cx:.1f}" x2="{cx:.1f}" y1="{top}" y2="{top + plot_h}" '
            f'stroke="#dc2626" stroke-width="2"/>'
            f'<text x="{cx + 4:.1f}" y="{top + 26}" fill="#dc2626">freeze cut</text></g>'
        )
    legend_y = height - 12
    parts.append(
        f'<g class="legend"><line x1="{left}" x2="{left + 24}" y1="{legend_y - 4}" y2="{legend_y - 4}" '
        'stroke="#2563eb" '
        f'stroke-width="2"/><text x="{left + 30}" y="{legend_y}">generality (1 - layer shift)</text>'
        f'<line x1="{left + 220}" x2="{left + 244}" y1="{legend_y - 4}" y2="{legend_y - 4}" stroke="#16a34a" '
        f'stroke-width="2" stroke-dasharray="5,4"/><text x="{left + 250}" y="{legend_y}">'
        "target linear-probe accuracy</text></g>"
    )
    parts.append("</svg>")
    return "".join(parts)


def _box_width(text: str) -> int:
    return max(90, min(260, 7 * len(text) + 20))


def bias_path_svg(path: list[dict[str, Any]], key: int = 0) -> str:
    """A bias's lineage path as boxes (model, datasets, bias) joined by labelled arrows, left to right."""
    names = [str(n["name"]) if len(str(n["name"])) <= 34 else str(n["name"])[:33] + "…" for n in path]
    widths = [_box_width(n) for n in names]
    gaps = [max(110, 7 * len(str(n["rel"] or "")) + 24) for n in path[1:]]
    width = sum(widths) + sum(gaps) + 20
    height = 78
    parts = [
        f'<svg class="bias-path" xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" role="img" aria-label="bias path" {FONT} font-size="11">',
        f'<defs><marker id="arrow-{key}" viewBox="0 0 10 10" refX="9" refY="5" markerWidth="7" '
        'markerHeight="7" '
        'orient="auto-start-reverse"><path d="M0,0 L10,5 L0,10 z" fill="#374151"/></marker></defs>',
    ]
    x = 10.0
    for i, (node, name, w) in enumerate(zip(path, names, widths, strict=True)):
        if i:
            gap = gaps[i - 1]
            rel = escape(str(node["rel"] or ""))
            parts.append(
                f'<g class="edge"><line x1="{x:.1f}" x2="{x + gap - 4:.1f}" y1="48" y2="48" stroke="#374151" '
                f'stroke-width="1.5" marker-end="url(#arrow-{key})"/>'
                f'<text x="{x + gap / 2:.1f}" y="40" text-anchor="middle" font-size="10">{rel}</text></g>'
            )
            x += gap
        colour = LABEL_COLOURS.get(str(node["label"]), "#f3f4f6")
        parts.append(
            f'<g class="node" data-label="{escape(str(node["label"]))}" data-id="{escape(str(node["id"]))}">'
            f"<title>{escape(str(node['label']))} {escape(str(node['id']))}</title>"
            f'<rect x="{x:.1f}" y="30" width="{w}" height="36" rx="6" fill="{colour}" stroke="#6b7280"/>'
            f'<text x="{x + w / 2:.1f}" y="22" text-anchor="middle" font-size="9" fill="#6b7280">'
            f"{escape(str(node['label']))}</text>"
            f'<text x="{x + w / 2:.1f}" y="52" text-anchor="middle">{escape(name)}</text></g>'
        )
        x += w
    parts.append("</svg>")
    return "".join(parts)


def class_bars_svg(counts: dict[str, int], width: int = 560) -> str:
    """The target's class counts as horizontal bars, largest first."""
    items = sorted(counts.items(), key=lambda kv: -kv[1])
    if not items:
        return ""
    row, label_w = 18, 120
    height = row * len(items) + 8
    top = max(v for _, v in items) or 1
    parts = [
        f'<svg class="class-counts" xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" role="img" aria-label="target class counts" {FONT} font-size="11">'
    ]
    for i, (name, value) in enumerate(items):
        y = 4 + i * row
        bar = (width - label_w - 70) * value / top
        shown = name if len(name) <= 18 else name[:17] + "…"
        parts.append(
            f'<text x="{label_w - 6}" y="{y + 12}" text-anchor="end">{escape(shown)}</text>'
            f'<rect x="{label_w}" y="{y + 2}" width="{bar:.1f}" height="{row - 6}" fill="#93c5fd"/>'
            f'<text x="{label_w + bar + 6:.1f}" y="{y + 12}">{value:,}</text>'
        )
    parts.append("</svg>")
    return "".join(parts)

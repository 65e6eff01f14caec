"""Rendering answers for the terminal and for tools: Rich tables, JSON and Graphviz dot."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterable
from dataclasses import asdict
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from kg.lineage import Reach


def reaches_json(start: dict[str, Any], reaches: Iterable[Reach]) -> str:
    """A lineage or bias answer as JSON: the start node and each node reached with its path."""
    return json.dumps({"start": start, "results": [asdict(r) for r in reaches]}, indent=2, default=str)


def reaches_table(title: str, start_name: str, reaches: list[Reach], bias: bool = False) -> Table:
    """A Rich table, one row per node reached."""
    table = Table(title=title, title_justify="left")
    if bias:
        for col in ("bias", "kind", "severity", "source", "description", "path"):
            table.add_column(col, overflow="fold")
        for r in reaches:
            p = r.properties
            table.add_row(
                r.name or r.id,
                p.get("kind", ""),
                p.get("severity", ""),
                p.get("source", ""),
                p.get("description", ""),
                r.path_text(start_name),
            )
    else:
        for col in ("hops", "label", "name", "id", "path"):
            table.add_column(col, overflow="fold")
        for r in reaches:
            table.add_row(str(r.distance), r.label, r.name or "", r.id, r.path_text(start_name))
    return table


def _dot_id(label: str, id: str) -> str:
    return json.dumps(f"{label}:{id}")  # JSON string quoting is valid dot quoting


def reaches_dot(start_label: str, start_id: str, start_name: str, reaches: Iterable[Reach]) -> str:
    """The union of the answer's paths as a Graphviz digraph (render with ``dot -Tpng``)."""
    shapes = {"Dataset": "cylinder", "Model": "box", "Bias": "octagon"}
    nodes = {(start_label, start_id): start_name}
    edges: set[tuple[str, str, str]] = set()
    for r in reaches:
        prev = (start_label, start_id)
        for step in r.path:
            here = (step.label, step.id)
            nodes[here] = step.name or step.id
            rel = f"{step.rel}\n{step.how}" if step.how else step.rel
            edges.add((_dot_id(*prev), _dot_id(*here), rel))
            prev = here
    lines = ["digraph lineage {", "  rankdir=LR;", '  node [fontname="Helvetica"];']
    for (label, id), name in sorted(nodes.items()):
        lines.append(
            f"  {_dot_id(label, id)} [label={json.dumps(name)}, shape={shapes.get(label, 'ellipse')}];"
        )
    for a, b, rel in sorted(edges):
        lines.append(f"  {a} -> {b} [label={json.dumps(rel)}];")
    lines.append("}")
    return "\n".join(lines) + "\n"


def rows_table(rows: list[dict[str, Any]]) -> Table:
    """Query rows as a table (columns from the first row)."""
    table = Table()
    columns = list(rows[0]) if rows else []
    for col in columns:
        table.add_column(col, overflow="fold")
    for row in rows:
        table.add_row(*(json.dumps(v, default=str) if not isinstance(v, str) else v for v in row.values()))
    return table


UNBOUNDED_WIDTH = 100_000
"""Console width when output is piped or redirected: wide enough that no line is ever wrapped."""


def make_console(*, stderr: bool = False) -> Console:
    """A console for stdout (or stderr): at a terminal, Rich's usual one, fitted to the window; piped
    or redirected, one that never wraps, so ids, paths and table rows reach the file or the next tool
    whole (Rich would otherwise wrap at 80 columns)."""
    stream = sys.stderr if stderr else sys.stdout
    if stream.isatty():  # the stream itself: FORCE_COLOR may make Rich treat a pipe as a terminal
        return Console(stderr=stderr)
    return Console(stderr=stderr, soft_wrap=True, width=UNBOUNDED_WIDTH)


def one_line(text: object) -> str:
    """``text`` with its whitespace runs (line breaks from drivers and libraries included) as one space."""
    return " ".join(str(text).split())


def print_error(exc: BaseException | str) -> None:
    """A user-facing error as one line on stderr: ``error: <sentence>``."""
    err_console.print(f"[bold red]error:[/] {escape(one_line(exc))}", highlight=False, markup=True)


console = make_console()
err_console = make_console(stderr=True)

"""The lineage graph as SVG: the same Graphviz text ``kgraft lineage --format dot`` prints, laid out by
the ``dot`` program (Graphviz escapes every label in its SVG output)."""

from __future__ import annotations

import shutil
import subprocess

from kg.errors import KgError
from kg.lineage import Reach
from transfer.render import reaches_dot

DOT_SECONDS = 20


class GraphvizMissing(KgError):
    """The ``dot`` program is not installed."""


def lineage_svg(start_label: str, start_id: str, start_name: str, reaches: list[Reach]) -> str:
    """The union of the answer's paths, rendered to an SVG document."""
    exe = shutil.which("dot")
    if exe is None:
        raise GraphvizMissing("the lineage graph needs Graphviz's dot (apt-get install graphviz).")
    # Top-down: a lineage chain then runs down the page instead of shrinking to fit its width.
    text = reaches_dot(start_label, start_id, start_name, reaches).replace("rankdir=LR;", "rankdir=TB;", 1)
    out = subprocess.run(
        [exe, "-Tsvg"], input=text.encode(), capture_output=True, timeout=DOT_SECONDS, check=False
    )
    if out.returncode != 0:
        raise KgError(f"Graphviz could not lay out the graph: {out.stderr.decode(errors='replace')[:200]}")
    return out.stdout.decode()

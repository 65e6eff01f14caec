"""Reports the server serves and makes: folders ``REPORTS_DIR/NAME`` holding what ``kgraft report``
writes (report.json, report.md, report.html). Names are checked so a request cannot leave the folder."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from kg import GraphStore
from kg.errors import NotFound
from transfer.serve.jobs import Progress

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._@+-]{0,200}$")
FILES = {"report.json", "report.md", "report.html"}


def file(reports_dir: Path, name: str, filename: str) -> Path:
    """``reports_dir/name/filename`` when it exists; ``NotFound`` for anything else."""
    if not _NAME.match(name) or filename not in FILES:
        raise NotFound(f"no report named {name!r}.")
    path = reports_dir / name / filename
    if not path.is_file():
        raise NotFound(f"no report named {name!r} in {reports_dir}.")
    return path


def listing(reports_dir: Path) -> list[dict[str, Any]]:
    """Every report in ``reports_dir``: its folder name, target, chosen source and time, newest first."""
    out = []
    if not reports_dir.is_dir():
        return out
    for doc_path in reports_dir.glob("*/report.json"):
        name = doc_path.parent.name
        if not _NAME.match(name):
            continue  # staging folders (".name.xxx.tmp") and oddly named ones
        try:
            doc = json.loads(doc_path.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError):
            continue
        out.append(
            {
                "name": name,
                "target": (doc.get("target") or {}).get("id"),
                "chosen_source": (doc.get("chosen_source") or {}).get("id"),
                "generated_at": doc.get("generated_at"),
            }
        )
    return sorted(out, key=lambda r: r["generated_at"] or "", reverse=True)


REPORT_STEPS = 4
"""About how many progress messages ``build_report`` sends (ranking, probing, bias and settings)."""


def make_report(
    store: GraphStore,
    reports_dir: Path,
    target: str,
    source: str | None,
    *,
    top: int,
    probe_missing: bool,
    probes_dir: Path,
    progress: Progress,
) -> dict[str, Any]:
    """``kgraft report`` as a job: write the report into ``reports_dir/<target slug>``."""
    from kg.ids import slug
    from ontology.vocab import Label
    from transfer.report import write_report

    target_id = store.resolve(target, (Label.DATASET,))[1]
    name = slug(target_id)
    total = REPORT_STEPS + 1
    seen = [0]

    def step(text: str) -> None:
        seen[0] += 1
        progress.advance(min(seen[0], total - 1), total, text)

    progress.advance(0, total, f"report for {target_id}")
    paths = write_report(
        store,
        target_id,
        source,
        out_dir=reports_dir / name,
        top=top,
        probe_missing=probe_missing,
        work_dir=probes_dir,
        step=step,
    )
    progress.advance(total, total, "written")
    return {"name": name, "target": target_id, "chosen_source": paths.document["chosen_source"]["id"]}

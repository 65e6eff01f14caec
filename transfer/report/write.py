"""``write_report``: report.json, report.md and report.html in one folder, written atomically.

Everything is written into a temporary folder beside ``out_dir`` and moved into place at the end; an
existing report folder is replaced only when the new one is complete, so a failure leaves either the
old report or nothing, never half of one. A folder that holds anything but a report is never replaced.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kg.ids import slug
from kg.store import GraphStore
from transfer.loop import TransferPlan
from transfer.report.build import build_report, render_document
from transfer.report.errors import ReportError
from transfer.report.html import render_html
from transfer.report.markdown import render_markdown
from transfer.report.schema import validate_report


@dataclass(frozen=True)
class ReportPaths:
    """Where a written report lies, and its document."""

    dir: Path
    json: Path
    markdown: Path
    html: Path
    document: dict[str, Any]


def _unwritable(out_dir: Path, exc: OSError) -> ReportError:
    reason = (exc.strerror or type(exc).__name__).lower()
    blocker = next((p for p in out_dir.parents if p.exists()), None)
    if blocker is not None and not blocker.is_dir():
        reason = f"{blocker} is a file, not a folder"
    return ReportError(f"cannot write the report to {out_dir}: {reason}.")


@contextmanager
def _staging(out_dir: Path) -> Iterator[Path]:
    """A fresh temporary folder beside ``out_dir``, removed unless it was moved into place."""
    if out_dir.exists() and not out_dir.is_dir():
        raise ReportError(f"cannot write the report to {out_dir}: it is a file, not a folder.")
    if out_dir.is_dir() and any(out_dir.iterdir()) and not (out_dir / "report.json").is_file():
        raise ReportError(
            f"cannot write the report to {out_dir}: it holds other files, not a report; choose another --out."
        )
    try:
        out_dir.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.", suffix=".tmp", dir=out_dir.parent))
    except OSError as exc:
        raise _unwritable(out_dir, exc) from None
    try:
        yield staging
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _move_into_place(staging: Path, out_dir: Path) -> None:
    old = None
    try:
        if out_dir.exists():
            old = out_dir.with_name(f".{out_dir.name}.{os.getpid()}.old")
            os.replace(out_dir, old)
        os.replace(staging, out_dir)
    except OSError as exc:
        if old is not None and old.exists() and not out_dir.exists():
            os.replace(old, out_dir)
        raise _unwritable(out_dir, exc) from None
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def default_report_dir(target_id: str) -> Path:
    """``.kgraft/reports/TARGET``: where a target's report goes unless told otherwise."""
    return Path(".kgraft/reports") / slug(target_id)


def write_report(
    store: GraphStore,
    target: str,
    source: str | None = None,
    *,
    out_dir: Path,
    plan: TransferPlan | None = None,
    **options: Any,
) -> ReportPaths:
    """Build the report for ``target`` (see ``build_report`` for ``source`` and ``options``), or render
    a given ``plan`` (``options`` may then hold only ``top``), validate it against its schema, and
    write report.json, report.md and report.html into ``out_dir``."""
    out_dir = Path(out_dir).expanduser().absolute()
    with _staging(out_dir) as staging:
        if plan is not None:
            document = render_document(plan, top=options.get("top", 10))
        else:
            document = build_report(store, target, source, **options)
        validate_report(document)
        files = {
            "report.json": json.dumps(document, indent=2, allow_nan=False) + "\n",
            "report.md": render_markdown(document),
            "report.html": render_html(document),
        }
        try:
            for name, text in files.items():
                (staging / name).write_text(text, encoding="utf-8")
            staging.chmod(0o755)
        except OSError as exc:
            raise _unwritable(out_dir, exc) from None
        _move_into_place(staging, out_dir)
    return ReportPaths(
        out_dir, out_dir / "report.json", out_dir / "report.md", out_dir / "report.html", document
    )

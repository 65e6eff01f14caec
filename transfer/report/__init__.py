"""Transfer-suitability reports: which source to start from for a target, how risky the transfer is,
and how to fine-tune it, as JSON (``report.schema.json``), Markdown and one self-contained HTML page.

``build_report`` plans and returns the document, ``render_document`` renders a
``transfer.loop.TransferPlan``, ``write_report`` writes the three files atomically (by default into
``default_report_dir``), ``chosen_source`` reads the recommended model id, and ``validate_report``
checks a document.
"""

from transfer.report.build import build_report, chosen_source, render_document
from transfer.report.errors import ReportError
from transfer.report.schema import SCHEMA_PATH, report_schema, validate_report
from transfer.report.write import ReportPaths, default_report_dir, write_report

__all__ = [
    "SCHEMA_PATH",
    "ReportError",
    "ReportPaths",
    "build_report",
    "chosen_source",
    "default_report_dir",
    "render_document",
    "report_schema",
    "validate_report",
    "write_report",
]

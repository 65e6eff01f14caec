"""The web UI: server-rendered pages (Jinja2, autoescaped) over the same reads as the API."""

from __future__ import annotations

import base64
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query, Request
from fastapi.responses import FileResponse, HTMLResponse, RedirectResponse, Response

from kg.errors import NotFound
from kg.lineage import MAX_DEPTH
from ontology.vocab import Label
from transfer.serve import graph, reports
from transfer.serve.dot import lineage_svg
from transfer.serve.routes.common import config, handle, jobs
from transfer.serve.routes.read import lineage_answer, recommendations

router = APIRouter(include_in_schema=False)


def page(request: Request, template: str, **context: Any) -> HTMLResponse:
    """Render ``template`` (every value is escaped by Jinja2's autoescape)."""
    html = request.app.state.templates.get_template(template).render(request=request, **context)
    return HTMLResponse(html)


@router.get("/")
def home(request: Request, q: Annotated[str, Query(max_length=200)] = "") -> Response:
    """Search datasets and models by part of an id or name."""
    with handle(request).read() as store:
        hits = graph.search(store, q, 100) if q.strip() else []
        counts = {"datasets": store.count(Label.DATASET), "models": store.count(Label.MODEL)}
    return page(request, "search.html", q=q, hits=hits, counts=counts, searched=bool(q.strip()))


@router.get("/datasets/{dataset_id:path}")
def dataset_page(request: Request, dataset_id: str) -> HTMLResponse:
    """A dataset: profile, classes, domains, biases, neighbours, links to lineage and recommendations."""
    with handle(request).read() as store:
        detail = graph.dataset_detail(store, dataset_id)
    report_names = {
        r["name"] for r in reports.listing(config(request).reports_dir) if r["target"] == dataset_id
    }
    return page(request, "dataset.html", d=detail, r=detail["record"], reports=sorted(report_names))


@router.get("/models/{model_id:path}")
def model_page(request: Request, model_id: str) -> HTMLResponse:
    """A model: its record, training data, parent, biases and recorded outcomes."""
    with handle(request).read() as store:
        detail = graph.model_detail(store, model_id)
    return page(request, "model.html", m=detail, r=detail["record"])


@router.get("/lineage/{kind}/{node_id:path}")
def lineage_page(
    request: Request,
    kind: Literal["dataset", "model"],
    node_id: str,
    direction: Literal["up", "down"] = "up",
    depth: Annotated[int, Query(ge=1, le=MAX_DEPTH)] = 10,
    bias: bool = False,
) -> HTMLResponse:
    """The lineage graph (Graphviz SVG) and every path as a table."""
    answer, reaches = lineage_answer(request, kind, node_id, direction, depth, bias=bias)
    start = answer["start"]
    svg = lineage_svg(start["label"], start["id"], start["name"], reaches)
    # As an <img>, the SVG is a picture: nothing in it can run, whatever a name holds.
    svg_src = "data:image/svg+xml;base64," + base64.b64encode(svg.encode()).decode()
    return page(request, "lineage.html", a=answer, kind=kind, svg_src=svg_src, bias=bias)


@router.get("/recommend")
def recommend_form(request: Request, target: str = "") -> Response:
    """The recommendation form; with ``target``, its ranking."""
    if target.strip():
        return RedirectResponse(request.url_for("recommend_page", target=target.strip()), status_code=303)
    return page(request, "recommend.html", target="", rows=[], notes=[])


@router.get("/recommend/{target:path}")
def recommend_page(
    request: Request, target: str, top: Annotated[int, Query(ge=1, le=200)] = 10
) -> HTMLResponse:
    """The ranking with uncertainty bars (inline SVG)."""
    rows = recommendations(request, target, top)
    return page(request, "recommend.html", target=target, rows=rows, notes=rows[0]["notes"] if rows else [])


@router.get("/reports")
def reports_page(request: Request) -> HTMLResponse:
    """The reports this server holds and a form to write a new one (as a job)."""
    return page(request, "reports.html", reports=reports.listing(config(request).reports_dir))


@router.get("/reports/{name}")
def report_page(request: Request, name: str) -> FileResponse:
    """A report's HTML page, as ``kgraft report`` wrote it."""
    return FileResponse(
        reports.file(config(request).reports_dir, name, "report.html"), media_type="text/html"
    )


@router.get("/jobs/{job_id}")
def job_page(request: Request, job_id: str) -> HTMLResponse:
    """A job's progress bar, refreshed by polling ``/api/jobs/{id}``."""
    job = jobs(request).get(job_id)
    if job is None:
        raise NotFound(f"no job {job_id!r}.")
    return page(request, "job.html", job=job.as_dict())

"""The read API: search, dataset and model records, lineage, biases, recommendations, reports, Cypher."""

from __future__ import annotations

import json
from dataclasses import asdict
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Body, Query, Request
from fastapi.responses import FileResponse
from pydantic import BaseModel, Field

from kg import lineage as lin
from kg.errors import NotFound, QueryFailed
from ontology.vocab import Label
from transfer.serve import graph, reports
from transfer.serve.routes.common import config, handle
from transfer.serve.security import check_read_only_cypher
from transfer.serve.state import MAX_CYPHER_ROWS, MAX_CYPHER_SECONDS

router = APIRouter(prefix="/api", tags=["read"])
Depth = Annotated[int, Query(ge=1, le=lin.MAX_DEPTH, description="Lineage hops to follow.")]


@router.get("/health")
def health(request: Request) -> dict[str, Any]:
    """Liveness and the store it serves (answers only when the store does)."""
    with handle(request).read() as store:
        store.query("RETURN 1 AS ok")
        return {"status": "ok", "store": store.uri, "dialect": store.dialect}


@router.get("/search")
def search(
    request: Request,
    q: Annotated[str, Query(min_length=1, max_length=200, description="Part of an id or name.")],
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
) -> list[dict[str, Any]]:
    """Datasets and models whose id or name contains ``q`` (case-insensitive)."""
    with handle(request).read() as store:
        return graph.search(store, q, limit)


@router.get("/datasets/{dataset_id:path}")
def dataset(request: Request, dataset_id: str) -> dict[str, Any]:
    """A dataset's record and profile, classes, domains, biases and direct lineage."""
    with handle(request).read() as store:
        return graph.json_safe(graph.dataset_detail(store, dataset_id))


@router.get("/models/{model_id:path}")
def model(request: Request, model_id: str) -> dict[str, Any]:
    """A model's record, training data, parent model, biases and recorded outcomes."""
    with handle(request).read() as store:
        return graph.json_safe(graph.model_detail(store, model_id))


def lineage_answer(
    request: Request, kind: str, node_id: str, direction: str, depth: int, bias: bool
) -> tuple[dict[str, Any], list[lin.Reach]]:
    """The lineage (or bias) answer for a node as the API returns it, and the ``Reach`` rows behind it."""
    label = graph.label_of(kind)
    with handle(request).read() as store:
        start = store.node(label, node_id)
        if start is None:
            raise NotFound(f"no {str(label).lower()} with id {node_id!r} in the graph.")
        if bias:
            reaches = lin.biases_reaching(store, label, node_id, depth)
        else:
            reaches = lin.lineage(store, label, node_id, depth, direction)  # type: ignore[arg-type]
    name = start.get("name") or node_id
    answer = {
        "start": {"label": str(label), "id": node_id, "name": name},
        "direction": direction,
        "depth": depth,
        "reaches": [graph.reach_dict(r, name) for r in reaches],
    }
    return answer, reaches


@router.get("/lineage/{kind}/{node_id:path}")
def lineage(
    request: Request,
    kind: Literal["dataset", "model"],
    node_id: str,
    direction: Literal["up", "down"] = "up",
    depth: Depth = 10,
) -> dict[str, Any]:
    """Ancestors (``up``) or descendants (``down``) of a dataset or model, each with its shortest path."""
    return lineage_answer(request, kind, node_id, direction, depth, bias=False)[0]


@router.get("/bias/{kind}/{node_id:path}")
def biases(
    request: Request, kind: Literal["dataset", "model"], node_id: str, depth: Depth = 10
) -> dict[str, Any]:
    """Known biases on a node or anywhere upstream of it, each through its nearest holder."""
    return lineage_answer(request, kind, node_id, "up", depth, bias=True)[0]


def recommendations(request: Request, target: str, top: int) -> list[dict[str, Any]]:
    """``gnn.scores.recommend`` for a target (id or name), as JSON-safe dicts, with the server's shared
    scoring context (see ``transfer.serve.scoring``)."""
    from gnn.scores import recommend as rank

    graph_handle = handle(request)
    with graph_handle.read() as store:
        target_id = store.resolve(target, (Label.DATASET,))[1]
        context = request.app.state.scoring.context(store, graph_handle.generation)
        recs = rank(store, target_id, top=top, context=context)
    return [graph.json_safe(asdict(r)) for r in recs]


@router.get("/recommend/{target:path}")
def recommend(request: Request, target: str, top: Annotated[int, Query(ge=1, le=200)] = 10) -> dict[str, Any]:
    """Source models ranked for a target: compatibility with the scorer's uncertainty, shift and bias
    risk, the facts behind each, and notes (a stale scorer, a fallback basis)."""
    rows = recommendations(request, target, top)
    return {"target": target, "recommendations": rows, "notes": rows[0]["notes"] if rows else []}


@router.get("/reports")
def report_list(request: Request) -> list[dict[str, Any]]:
    """The reports in the server's report folder."""
    return reports.listing(config(request).reports_dir)


@router.get("/reports/{name}")
def report_json(request: Request, name: str) -> FileResponse:
    """A report's document (report.json)."""
    return FileResponse(reports.file(config(request).reports_dir, name, "report.json"))


class CypherRequest(BaseModel):
    """A read-only Cypher query with its parameters."""

    cypher: str = Field(max_length=20_000, examples=["MATCH (d:Dataset) WHERE d.id = $id RETURN d.name"])
    params: dict[str, Any] = Field(default_factory=dict, examples=[{"id": "digits"}])
    max_rows: int | None = Field(default=None, ge=1, le=MAX_CYPHER_ROWS)
    timeout_s: float | None = Field(default=None, gt=0, le=MAX_CYPHER_SECONDS)


@router.post("/cypher")
def cypher(request: Request, body: Annotated[CypherRequest, Body()]) -> dict[str, Any]:
    """Run one read-only Cypher statement (values as parameters) with a row and a time limit.

    Statements that write, call procedures or read files are refused (403) before they run, and the
    statement runs in a read-only transaction."""
    check_read_only_cypher(body.cypher)
    cfg = config(request)
    max_rows = body.max_rows or cfg.cypher_rows
    seconds = body.timeout_s or cfg.cypher_seconds
    with handle(request).read() as store:
        try:
            rows = store.query(body.cypher, body.params, timeout_s=seconds)
        except QueryFailed as exc:
            text = str(exc).lower()
            if "interrupt" in text or "timeout" in text or "terminated" in text:
                raise QueryFailed(f"the query ran past its {seconds:g} s limit and was stopped.") from None
            raise
    truncated = len(rows) > max_rows
    rows = rows[:max_rows]
    return {
        "rows": json.loads(json.dumps(graph.json_safe(rows), default=str)),
        "count": len(rows),
        "truncated": truncated,
    }

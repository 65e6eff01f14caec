"""The write API: every route needs ``Authorization: Bearer $KGRAFT_TOKEN`` and writes one validated
batch through the library path the command line uses (see ``transfer.serve.writes``)."""

from __future__ import annotations

from dataclasses import asdict
from typing import Annotated, Any

from fastapi import APIRouter, Body, Depends, Header, Query, Request
from pydantic import BaseModel, Field

from kg.errors import NotFound
from transfer.serve import writes
from transfer.serve.routes.common import config, handle
from transfer.serve.security import check_token


def require_token(request: Request, authorization: Annotated[str | None, Header()] = None) -> None:
    """The dependency every write route has: 401 (and nothing written) without the right token."""
    check_token(authorization, config(request).token)


router = APIRouter(prefix="/api", tags=["write"], dependencies=[Depends(require_token)])


class DatasetSpec(BaseModel):
    """What ``kgraft dataset add`` takes."""

    spec: str = Field(
        description="A builtin name (fashion-mnist, digits, animal-mnist), a folder on the server, "
        "idx:DIR, imagefolder:DIR or torchvision:NAME[:ROOT].",
        examples=["digits"],
    )
    name: str | None = None
    derived_from: str | None = None
    domain: str | None = None
    biases: list[str] = Field(default_factory=list, description="'kind: description' each.")
    agent: str | None = None
    new_version: bool = False
    concepts: bool = Field(default=True, description="Map class names to WordNet synsets.")
    hint: str | None = None


@router.post("/datasets", status_code=201)
def add_dataset(request: Request, body: Annotated[DatasetSpec, Body()]) -> dict[str, Any]:
    """Register a dataset by spec: its profile, classes, domain, biases and lineage."""
    with handle(request).write() as store:
        return writes.register_dataset_spec(store, **body.model_dump())


class Outcome(BaseModel):
    """A fine-tuning outcome run elsewhere."""

    source: str = Field(description="Source model (id or name).")
    target: str = Field(description="Target dataset (id or name).")
    accuracy: float = Field(ge=0, le=1)
    baseline_accuracy: float | None = Field(default=None, ge=0, le=1)
    preset: str | None = None
    train_size: int | None = Field(default=None, ge=1)
    epochs: int | None = Field(default=None, ge=1)
    batch_size: int | None = Field(default=None, ge=1)
    learning_rate: float | None = Field(default=None, gt=0)


@router.post("/outcomes", status_code=201)
def record_outcome(request: Request, body: Annotated[Outcome, Body()]) -> dict[str, Any]:
    """Record a fine-tuning run made elsewhere: its Activity, the fine-tuned Model and the TRANSFERRED_TO
    outcome with its regime (as ``transfer.track`` records it)."""
    with handle(request).write() as store:
        return writes.record_outcome(store, **body.model_dump())


@router.post("/import/{kind}", status_code=201)
async def import_document(
    request: Request,
    kind: str,
    filename: Annotated[str | None, Query(max_length=200, description="The document's file name.")] = None,
) -> dict[str, Any]:
    """Import a document sent as the request body: ``croissant`` (JSON-LD), ``rdf`` (Turtle, or JSON-LD
    with ``Content-Type: application/ld+json``) or ``openlineage`` (JSON lines of RunEvents); all or
    nothing. ``filename`` is recorded as the source, as ``kgraft import`` records the file's name."""
    importer = writes.IMPORTERS.get(kind)
    if importer is None:
        raise NotFound(f"no importer {kind!r}; this server imports: {', '.join(sorted(writes.IMPORTERS))}.")
    body = await request.body()
    content_type = request.headers.get("content-type", "")

    def run() -> Any:
        with handle(request).write() as store:
            return importer(store, body, content_type, filename)

    from starlette.concurrency import run_in_threadpool

    stats = await run_in_threadpool(run)
    return {"kind": kind, **asdict(stats)}

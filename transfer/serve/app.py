"""The app factory: one store handle, the job runner, the routes, and errors as one sentence."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, JSONResponse, Response
from jinja2 import Environment, FileSystemLoader

from kg.errors import NotFound, ReadOnlyViolation, StoreUnavailable
from transfer.serve.jobs import JobRunner
from transfer.serve.scoring import ScoringCache
from transfer.serve.security import CypherRefused, Unauthorized
from transfer.serve.state import GraphHandle, ServeConfig

TEMPLATES = Path(__file__).with_name("templates")


def _is_user_error(exc: BaseException) -> bool:
    from kg.errors import is_user_error  # the one definition of "a user can fix this"

    return is_user_error(exc)


def status_for(exc: BaseException) -> int:
    """The HTTP status of a user error."""
    if isinstance(exc, Unauthorized):
        return 401
    if isinstance(exc, NotFound):
        return 404
    if isinstance(exc, CypherRefused | ReadOnlyViolation):
        return 403
    if isinstance(exc, StoreUnavailable):
        return 503
    return 400


def error_response(request: Request, exc: BaseException) -> Response:
    """The response for a user error."""
    status = status_for(exc)
    headers = {"WWW-Authenticate": "Bearer"} if status == 401 else None
    if request.url.path.startswith("/api/"):
        return JSONResponse({"error": str(exc)}, status_code=status, headers=headers)
    page = request.app.state.templates.get_template("error.html").render(
        request=request, message=str(exc), status=status
    )
    return HTMLResponse(page, status_code=status, headers=headers)


def create_app(config: ServeConfig, handle: GraphHandle | None = None) -> FastAPI:
    """The FastAPI app over ``config.store_uri`` (or over ``handle``, which the caller then owns)."""
    owned = handle is None

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if app.state.handle is None:
            app.state.handle = GraphHandle.open(config.store_uri)
        try:
            yield
        finally:
            app.state.jobs.shutdown()
            if owned:
                app.state.handle.close()

    app = FastAPI(
        title="kgraft",
        summary="The kgraft knowledge graph over HTTP: lineage, biases, recommendations, reports.",
        description=(
            "Reads are open; writes (`POST` to register, record, import, or start a job) need "
            '`Authorization: Bearer $KGRAFT_TOKEN`. Errors are `{"error": sentence}`.'
        ),
        version="0.1.0",
        lifespan=lifespan,
    )
    app.state.config = config
    app.state.handle = handle
    app.state.jobs = JobRunner(_is_user_error)
    app.state.scoring = ScoringCache(config.scoring_refresh_s)
    # Autoescape everything: every name in the graph is user input.
    app.state.templates = Environment(loader=FileSystemLoader(TEMPLATES), autoescape=True)

    @app.middleware("http")
    async def user_errors(request: Request, call_next: Callable) -> Response:
        """A user error becomes its one sentence with a 4xx status: JSON under /api, a page elsewhere."""
        try:
            return await call_next(request)
        except Exception as exc:
            if not _is_user_error(exc):
                raise
            return error_response(request, exc)

    from transfer.serve.routes import jobs, pages, read, write

    app.include_router(read.router)
    app.include_router(write.router)
    app.include_router(jobs.router)
    app.include_router(pages.router)
    return app

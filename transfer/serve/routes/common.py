"""What every route needs: the handle, the config, the job runner, and name resolution."""

from __future__ import annotations

from fastapi import Request

from kg import GraphStore
from ontology.vocab import Label
from transfer.serve.jobs import JobRunner
from transfer.serve.state import GraphHandle, ServeConfig


def handle(request: Request) -> GraphHandle:
    """The server's store handle."""
    return request.app.state.handle


def config(request: Request) -> ServeConfig:
    """The server's configuration."""
    return request.app.state.config


def jobs(request: Request) -> JobRunner:
    """The server's job runner."""
    return request.app.state.jobs


def resolve(store: GraphStore, name: str, labels: tuple[Label, ...]) -> tuple[Label, str]:
    """A node by id or name among ``labels`` (``NotFound`` with the closest names otherwise)."""
    return store.resolve(name, labels)

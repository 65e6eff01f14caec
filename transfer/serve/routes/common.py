"""What every route needs: the store handle, the config and the job runner."""

from __future__ import annotations

from fastapi import Request

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

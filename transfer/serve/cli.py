"""``kgraft serve``: the HTTP API and web UI over the configured store (registered in ``transfer.cli``)."""

from __future__ import annotations

import ipaddress
import os
from pathlib import Path
from typing import Annotated

import typer

LOOPBACK = "127.0.0.1"


def is_loopback(host: str) -> bool:
    """True for an address only this machine can reach (``localhost`` included)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def serve(
    ctx: typer.Context,
    host: Annotated[
        str, typer.Option(help="Address to bind; anything but loopback exposes the graph to the network.")
    ] = LOOPBACK,
    port: Annotated[int, typer.Option(min=0, max=65535, help="TCP port (0: any free one).")] = 8700,
    reports_dir: Annotated[Path, typer.Option(help="Where reports are kept and written.")] = Path(
        ".kgraft/reports"
    ),
    probes_dir: Annotated[Path, typer.Option(help="Where probe jobs write generality curves.")] = Path(
        ".kgraft/probes"
    ),
) -> None:
    """Serve the graph: a JSON API (OpenAPI page at /docs) and a web UI. Reads are open; writes need
    Authorization: Bearer $KGRAFT_TOKEN. The server holds the store open: on the embedded store other
    kgraft commands can read the file while it runs but not write it."""
    from transfer.cli.common import user_errors
    from transfer.render import err_console

    try:
        import uvicorn

        from transfer.serve import ServeConfig, create_app
        from transfer.serve.state import GraphHandle
    except ImportError as exc:
        err_console.print(
            f"[bold red]error:[/] kgraft serve needs the serve extra ({exc.name} is missing): "
            "pip install 'kgraft[serve]'."
        )
        raise typer.Exit(1) from None
    token = os.environ.get("KGRAFT_TOKEN", "")
    config = ServeConfig(ctx.obj["store"], token, reports_dir, probes_dir)
    with user_errors():
        handle = GraphHandle.open(config.store_uri)
    if not is_loopback(host):
        err_console.print(f"note: binding {host}: the graph is reachable from the network.", style="yellow")
    if not token:
        err_console.print("note: KGRAFT_TOKEN is not set, so every write is refused.", style="yellow")
    err_console.print(f"serving {handle.store.uri} on http://{host}:{port} (API docs: /docs)")
    try:
        uvicorn.run(create_app(config, handle), host=host, port=port, log_level="warning")
    finally:
        handle.close()

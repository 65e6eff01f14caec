"""``kgraft openlineage export|import``: the graph's runs as OpenLineage RunEvents, and RunEvents from any
producer into the graph. The mapping is ``kg.openlineage``; these commands parse, call it and print."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

openlineage_app = typer.Typer(
    help="OpenLineage RunEvents out of and into the graph (needs kgraft[openlineage]).", no_args_is_help=True
)


def _needs_client() -> None:
    """One sentence, not a traceback, when the optional OpenLineage client is missing."""
    try:
        import openlineage.client  # noqa: F401
    except ImportError:
        from transfer.render import err_console

        err_console.print("error: kgraft openlineage needs the client: pip install 'kgraft[openlineage]'.")
        raise typer.Exit(1) from None


@openlineage_app.command("export")
def export_events(
    ctx: typer.Context,
    to: Annotated[
        str,
        typer.Option(
            "--to", help="file:PATH (JSON lines, appended), console, or http:URL (an OpenLineage API)."
        ),
    ] = "console",
    since: Annotated[
        str | None, typer.Option("--since", help="Only Activities started at or after this ISO time.")
    ] = None,
) -> None:
    """Emit every recorded Activity as START and COMPLETE/FAIL RunEvents with kgraft facets."""
    _needs_client()
    from kg.openlineage import activity_events, emit, transport_for
    from transfer.cli.common import store_from, user_errors
    from transfer.render import err_console

    with user_errors():
        transport = transport_for(to)
    with store_from(ctx, read_only=True) as store:
        events = activity_events(store, since=since)
    with user_errors():
        n = emit(events, transport)
    runs = len({e.run.runId for e in events})
    err_console.print(f"emitted {n} OpenLineage events for {runs} runs to {to}")


@openlineage_app.command("import")
def import_events(
    ctx: typer.Context,
    path: Annotated[Path, typer.Argument(help="JSON lines of OpenLineage RunEvents (any producer).")],
) -> None:
    """Record RunEvents as Activities with their inputs (USED), outputs (GENERATED_BY, DERIVED_FROM) and
    kgraft outcomes; the run id is the key, so importing a file twice changes nothing."""
    _needs_client()
    from kg.openlineage import import_batch, read_events
    from transfer.cli.common import store_from
    from transfer.render import console

    with store_from(ctx) as store:
        summary = import_batch(store, read_events(path))
        stats = store.apply(summary.batch)
    console.print(
        f"imported {summary.events} events of {summary.runs} runs from {path}: "
        f"{stats.nodes_created} nodes and {stats.edges_created} relationships created, "
        f"{stats.nodes_updated + stats.edges_updated} updated"
    )

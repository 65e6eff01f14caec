"""What every ``kgraft`` command shares: the app and its sub-apps, the store option, user errors
as one sentence, parameters, progress bars and the printing of plans and registrations."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from enum import StrEnum
from typing import Annotated, Any

import typer

from kg import GraphStore, KgError, open_store
from kg.errors import is_user_error
from kg.store import resolve_store_uri
from transfer.loop import describe_epoch
from transfer.render import console, err_console, print_error

app = typer.Typer(
    name="kgraft",
    help="Knowledge-graph-augmented transfer learning: lineage, bias, transferability, fine-tuning.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)

import_app = typer.Typer(help="Import metadata into the graph.", no_args_is_help=True)
export_app = typer.Typer(help="Export the graph.", no_args_is_help=True)
app.add_typer(import_app, name="import")
app.add_typer(export_app, name="export")
zoo_app = typer.Typer(help="The model zoo.", no_args_is_help=True)
app.add_typer(zoo_app, name="zoo")
model_app = typer.Typer(help="Register models.", no_args_is_help=True)
app.add_typer(model_app, name="model")
dataset_app = typer.Typer(help="Register datasets.", no_args_is_help=True)
app.add_typer(dataset_app, name="dataset")
gnn_app = typer.Typer(help="The graph scorer.", no_args_is_help=True)
app.add_typer(gnn_app, name="gnn")


class Format(StrEnum):
    """Output formats of lineage and bias answers."""

    table = "table"
    json = "json"
    dot = "dot"


@contextmanager
def user_errors() -> Iterator[None]:
    """Turn a user-facing error into one line on stderr and exit code 1."""
    try:
        yield
    except Exception as exc:
        if not is_user_error(exc):
            raise
        print_error(exc)
        raise typer.Exit(1) from None


@contextmanager
def store_from(ctx: typer.Context, *, read_only: bool = False) -> Iterator[GraphStore]:
    """Open the store chosen by ``--store`` / ``KGRAFT_STORE`` / kgraft.toml, with errors as sentences."""
    with user_errors():
        store = open_store(ctx.obj["store"], read_only=read_only)
    try:
        with user_errors():
            yield store
    finally:
        store.close()


@app.callback()
def main_options(
    ctx: typer.Context,
    store: Annotated[
        str | None,
        typer.Option(
            "--store",
            envvar="KGRAFT_STORE",
            help="embedded:PATH (LadybugDB file) or neo4j://HOST:PORT; default embedded:.kgraft/graph.lbug.",
        ),
    ] = None,
) -> None:
    """Knowledge-graph-augmented transfer learning."""
    ctx.obj = {"store": resolve_store_uri(store)}


def parse_params(params: list[str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for item in params:
        if "=" not in item:
            raise KgError(f"--param takes KEY=VALUE, got {item!r}.")
        key, raw = item.split("=", 1)
        try:
            out[key] = json.loads(raw)
        except json.JSONDecodeError:
            out[key] = raw
    return out


def show_reaches(ctx: typer.Context, name: str, depth: int, fmt: Format, direction: str, bias: bool) -> None:
    from kg import lineage as lin
    from transfer.render import reaches_dot, reaches_json, reaches_table

    with store_from(ctx, read_only=True) as store:
        label, node_id = store.resolve(name)
        start = store.node(label, node_id) or {"id": node_id}
        start_name = start.get("name") or node_id
        if bias:
            reaches = lin.biases_reaching(store, label, node_id, depth)
        else:
            reaches = lin.lineage(store, label, node_id, depth, direction)  # type: ignore[arg-type]
    if fmt is Format.json:
        print(reaches_json({"label": str(label), **start}, reaches))
    elif fmt is Format.dot:
        sys.stdout.write(reaches_dot(str(label), node_id, start_name, reaches))
    else:
        what = (
            "known biases reaching" if bias else ("ancestors of" if direction == "up" else "descendants of")
        )
        console.print(reaches_table(f"{what} {label} {start_name!r}", start_name, reaches, bias=bias))
        if not reaches:
            console.print("none found", style="dim")


def progress_bar() -> Any:
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        SpinnerColumn,
        TextColumn,
        TimeElapsedColumn,
    )

    return Progress(
        SpinnerColumn(),
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=err_console,
        disable=not err_console.is_terminal,  # piped or redirected: no bar, no stray line in the log
    )


DEFAULT_PROBE = 3
"""``--probe`` default: three candidates cover the top of the list the choice is made from while
keeping the work bounded on a CPU (each probe runs one model over a sample of at most 1,000 target
images, features cached); ``--probe 0`` turns it off."""


def progress_counter(progress: Any, task: Any) -> Any:
    """A ``(message, done, total)`` callback that drives a progress task (probes of candidates)."""

    def update(message: str, done: int, total: int) -> None:
        progress.update(task, description=message, completed=done, total=total)

    return update


def step_updater(progress: Any, task: Any) -> Any:
    """A ``step(text)`` callback that shows each step of long work on a progress task."""

    def update(text: str) -> None:
        progress.update(task, description=text, total=None)

    return update


def epoch_progress(progress: Any, task: Any) -> Any:
    """A fine-tuning ``progress(report)`` callback that moves a task one epoch on, with its line."""

    def update(report: Any) -> None:
        progress.update(task, completed=report.epoch, description=describe_epoch(report))

    return update


def print_plan(p: Any) -> None:
    """What a plan decided: the source (when chosen) with its reasons, probes, and auto settings."""
    for r in p.probed:
        scores = ", ".join(f"{k} {v:.3f}" for k, v in list(r.estimators.items())[:3])
        console.print(f"probed {r.model_id} on {r.dataset_id} (n={r.sample_size}): {scores}", style="dim")
    if p.how != "given":
        console.print(f"source: {p.source_id}: {p.choice.reason()}", style="cyan")
        for fact in p.choice.facts[:2]:
            console.print(f"  {fact}", style="dim")
        for _, model_id, why in p.choice.skipped:
            console.print(f"  skipped {model_id}: {why}", style="dim")
        for note in p.notes:
            console.print(f"note: {note}", style="yellow")
    for d in p.decisions:
        console.print(f"auto: {d.setting} = {d.value}: {d.reason}", style="cyan")


def epoch_updater(progress: Any, task: Any) -> Any:
    def update(message: str, done: int, total: int) -> None:
        progress.update(task, description=f"zoo: {message}", completed=done, total=total)

    return update


def print_registration(reg: Any) -> None:
    p = reg.profile
    console.print(
        f"{'registered' if reg.created else 'updated'} dataset [bold]{reg.id}[/]: {p['n_samples']:,} images "
        f"{p['split_counts']}, {p['n_classes']} classes (imbalance {p['imbalance']:.1f}), "
        f"{p['channels']}x{p['image_size'][0]}x{p['image_size'][1]}, checksum {p['checksum'][:12]}"
    )
    for note in reg.notes:
        console.print(f"note: {note}", style="yellow")

"""Commands on the graph itself: ``init``, ``query``, ``lineage``, ``bias``, ``export`` and ``import``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer

from kg.checked_write import execute_checked
from transfer.cli.common import (
    Format,
    app,
    export_app,
    import_app,
    parse_params,
    progress_bar,
    show_reaches,
    store_from,
    user_errors,
)
from transfer.render import console, err_console


@app.command()
def init(ctx: typer.Context) -> None:
    """Create the store (if embedded) and its schema from the ontology."""
    with store_from(ctx) as store:
        console.print(f"graph ready at {store.uri}")


@app.command()
def query(
    ctx: typer.Context,
    cypher: Annotated[str, typer.Argument(help="A Cypher query; pass values with --param, never inline.")],
    param: Annotated[list[str], typer.Option("--param", "-p", help="KEY=VALUE (VALUE parsed as JSON).")] = [],  # noqa: B006
    write: Annotated[bool, typer.Option("--write", help="Allow the query to change the graph.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print rows as JSON.")] = False,
) -> None:
    """Run a Cypher query (read-only unless --write)."""
    with user_errors():
        params = parse_params(param)
    with store_from(ctx, read_only=not write) as store:
        rows = execute_checked(store, cypher, params) if write else store.query(cypher, params)
    if as_json:
        print(json.dumps(rows, indent=2, default=str))
    else:
        from transfer.render import rows_table

        console.print(rows_table(rows))
        console.print(f"{len(rows)} row(s)", style="dim")


@app.command()
def lineage(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="Dataset or model id or name.")],
    depth: Annotated[int, typer.Option(help="How many hops to follow (1-30).")] = 10,
    down: Annotated[bool, typer.Option("--down", help="Show descendants instead of ancestors.")] = False,
    fmt: Annotated[Format, typer.Option("--format", "-f")] = Format.table,
) -> None:
    """Where a dataset or model came from (or, with --down, what was made from it)."""
    show_reaches(ctx, name, depth, fmt, "down" if down else "up", bias=False)


@app.command()
def bias(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="Dataset or model id or name.")],
    depth: Annotated[int, typer.Option(help="How many lineage hops to follow (1-30).")] = 10,
    fmt: Annotated[Format, typer.Option("--format", "-f")] = Format.table,
) -> None:
    """Known biases that reach a dataset or model through its lineage, with their paths."""
    show_reaches(ctx, name, depth, fmt, "up", bias=True)


@export_app.command("rdf")
def export_rdf(
    ctx: typer.Context,
    out: Annotated[Path, typer.Argument(help="Output file: .ttl (Turtle) or .jsonld (JSON-LD).")],
) -> None:
    """Write the whole graph as RDF (PROV-O, DCAT and the kgraft ontology)."""
    from kg.rdf import write_rdf

    with store_from(ctx, read_only=True) as store:
        n = write_rdf(store, out)
    console.print(f"wrote {n} triples to {out}")


BULK_HELP = (
    "Neo4j: commit in chunks of 10,000 elements (faster for big first imports, not all or nothing; "
    "rerun the same command after an interruption to finish it). LadybugDB: the usual atomic load."
)


def _write(store: Any, batch: Any, bulk: bool) -> Any:
    """``store.apply(batch)``, or with ``bulk`` ``kg.bulk.bulk_apply`` behind a progress bar."""
    if not bulk:
        return store.apply(batch)
    from kg.bulk import bulk_apply

    with progress_bar() as progress:
        task = progress.add_task("writing in chunks", total=batch.node_count() + batch.edge_count())
        return bulk_apply(store, batch, progress=lambda done, total: progress.update(task, completed=done))


@import_app.command("rdf")
def import_rdf(
    ctx: typer.Context,
    path: Annotated[Path, typer.Argument(help="Turtle or JSON-LD file.")],
    bulk: Annotated[bool, typer.Option("--bulk", help=BULK_HELP)] = False,
) -> None:
    """Read an RDF export back into the graph (validated against the SHACL shapes; all or nothing unless
    --bulk)."""
    from kg.rdf import read_rdf

    with user_errors():
        batch = read_rdf(path)
    with store_from(ctx) as store:
        stats = _write(store, batch, bulk)
    console.print(
        f"imported {path}: {stats.nodes_created} nodes and {stats.edges_created} relationships created"
    )


@import_app.command("croissant")
def import_croissant(
    ctx: typer.Context, path: Annotated[Path, typer.Argument(help="Croissant 1.0/1.1 JSON-LD file.")]
) -> None:
    """Read Croissant metadata: the dataset, its creators, its lineage, RAI biases and class labels."""
    from kg.croissant import import_croissant as read

    with store_from(ctx) as store:
        stats = store.apply(read(path, store=store))
    console.print(
        f"imported {path.name}: {stats.nodes_created} nodes and {stats.edges_created} relationships created, "
        f"{stats.nodes_updated + stats.edges_updated} updated"
    )


@import_app.command("wordnet")
def import_wordnet(
    ctx: typer.Context,
    dict_dir: Annotated[Path, typer.Option("--dict", help="WordNet 3.0 dict folder.")] = Path(
        "/usr/share/wordnet"
    ),
    bulk: Annotated[bool, typer.Option("--bulk", help=BULK_HELP)] = False,
) -> None:
    """Load the WordNet noun hierarchy (about 82k synsets) as Concepts with IS_A, in bulk."""
    from kg.wordnet import WordNet, to_batch

    with store_from(ctx) as store:
        with err_console.status("reading WordNet"):
            batch = to_batch(WordNet.load(dict_dir))
        if bulk:
            stats = _write(store, batch, bulk)
        else:
            with err_console.status(
                f"writing {batch.node_count():,} concepts and {batch.edge_count():,} IS_A"
            ):
                stats = store.apply(batch)
    console.print(f"WordNet: {stats.nodes_created:,} concepts created, {stats.nodes_updated:,} updated")


@import_app.command("transfergraph")
def import_transfergraph(
    ctx: typer.Context,
    folder: Annotated[
        Path,
        typer.Argument(
            help="Folder with TransferGraph's records.csv, model_config_dataset.csv "
            "and target_dataset_features.csv."
        ),
    ],
) -> None:
    """Load the published TransferGraph fine-tuning records (models, targets, outcomes) into the graph."""
    from kg.transfergraph import transfergraph_batch

    with store_from(ctx) as store:
        stats = store.apply(transfergraph_batch(folder, store))
    console.print(
        f"TransferGraph: {stats.nodes_created:,} nodes and {stats.edges_created:,} relationships created"
    )

"""``kgraft dataset similar``: the registered datasets most like a given one, measured and recorded.

The work is ``transfer.dataset_similarity.find_similar``; this command parses, calls it and prints
(registered on the ``dataset`` sub-app in ``transfer.cli``)."""

from __future__ import annotations

import json
from typing import Annotated, Any

import typer

from kg.similarity import ALL_METHODS, CONCEPT_OVERLAP


def similar(
    ctx: typer.Context,
    dataset: Annotated[str, typer.Argument(help="A registered dataset (id or name).")],
    methods: Annotated[
        str,
        typer.Option(help=f"Comma-separated similarity methods: {', '.join(ALL_METHODS)}."),
    ] = ",".join(ALL_METHODS),
    against: Annotated[
        list[str] | None,
        typer.Option(help="Compare with this dataset only (repeatable); default: every other dataset."),
    ] = None,
    top: Annotated[int, typer.Option(min=1, help="How many datasets to list.")] = 10,
    sample: Annotated[
        int, typer.Option(min=2, help="Images per dataset for the embedding method (seeded sample).")
    ] = 500,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Measure how alike DATASET is to the other datasets (class-concept overlap through WordNet,
    profile statistics, an embedding from a fixed reference encoder), record the results as
    SIMILAR_TO edges, and list the most similar datasets."""
    from transfer.cli.common import store_from
    from transfer.dataset_similarity import find_similar
    from transfer.render import err_console

    with store_from(ctx) as store, err_console.status("measuring similarity") as status:
        report = find_similar(
            store,
            dataset,
            methods.split(","),
            against or None,
            sample=sample,
            progress=lambda message, done, total: status.update(f"{message} ({done}/{total})"),
        )
    _print_similar(report, top, as_json=as_json)


def _print_similar(report: Any, top: int, *, as_json: bool) -> None:
    """The notes (stderr), then the ``top`` most similar datasets as a table or JSON."""
    from transfer.render import console, err_console, rows_table

    for note in report.notes:
        err_console.print(f"note: {note}", style="yellow", highlight=False, markup=False)
    ranked = report.ranked(top)
    if as_json:
        print(json.dumps(_as_json(report, ranked), indent=2))
        return
    if not ranked:
        console.print(f"no similarity measured for {report.dataset_id} by {', '.join(report.methods)}.")
        return
    rows = []
    for rank, r in enumerate(ranked, 1):
        row: dict[str, Any] = {"rank": str(rank), "dataset": r.dataset_id, "score": f"{r.score:.3f}"}
        for method in report.methods:
            s = r.by_method.get(method)
            row[method] = f"{s.value:.3f}" if s else "-"
        overlap = r.by_method.get(CONCEPT_OVERLAP)
        if overlap is not None:
            row["shared concepts"] = ", ".join(overlap.facts.get("shared", [])[:4]) or "-"
        elif CONCEPT_OVERLAP in report.methods:
            row["shared concepts"] = "-"
        rows.append(row)
    console.print(f"datasets most like [bold]{report.dataset_id}[/] ({report.recorded} pairs recorded):")
    console.print(rows_table(rows))


def _as_json(report: Any, ranked: list[Any]) -> dict[str, Any]:
    return {
        "dataset": report.dataset_id,
        "methods": report.methods,
        "recorded": report.recorded,
        "notes": report.notes,
        "results": [
            {
                "dataset": r.dataset_id,
                "name": r.name,
                "score": r.score,
                "methods": {
                    m: {"value": s.value, "explanation": s.explanation(), "facts": s.facts}
                    for m, s in r.by_method.items()
                },
            }
            for r in ranked
        ],
    }

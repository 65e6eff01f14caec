"""Printing the answers of the loop's commands (``probe``, ``finetune``, ``gnn eval``, ``recommend``,
``report``, ``demo``): each command calls the library and hands what it returned to one function here.

Results go to stdout, notes and what was probed on the way to stderr; nothing here touches the graph.
"""

from __future__ import annotations

import json
from dataclasses import asdict
from typing import TYPE_CHECKING, Any

from transfer.render import console, err_console, reaches_table, rows_table

if TYPE_CHECKING:  # torch-heavy types; the command imports them when it runs
    from gnn.evaluate import LotoResult
    from transfer.demo import DemoRun
    from transfer.finetune.engine import FinetuneResult
    from transfer.loop import Ranking, TransferPlan
    from transfer.probe.run import ProbeReport
    from transfer.report import ReportPaths


def print_note(text: str) -> None:
    """A note on stderr: something that could not be measured or done."""
    err_console.print(f"note: {text}", style="yellow", markup=False)


def print_probes(reports: list[ProbeReport]) -> None:
    """Every estimator of each probe, its shift type and freeze cut, and where its curve lies."""
    for r in reports:
        scores = ", ".join(f"{k} {v:.3f}" for k, v in r.estimators.items())
        shift = (
            f"shift {r.shift_type}, freeze through group {r.freeze_cut}"
            if r.shift_type
            else "; ".join(r.notes)
        )
        console.print(f"[bold]{r.model_id}[/] on {r.dataset_id} (n={r.sample_size}): {scores}; {shift}")
        if r.plot:
            console.print(f"  generality curve: {r.plot}", style="dim")


def print_finetune(p: TransferPlan, result: FinetuneResult) -> None:
    """The run's summary as JSON and one sentence on what was recorded in the graph."""
    source_id, target_id = p.source_id, p.target_id
    summary = result.summary()
    console.print_json(data={k: v for k, v in summary.items() if k != "epochs"})
    console.print(
        f"recorded run {summary['run_id']}: Activity USED {source_id} and {target_id}, GENERATED "
        f"{summary['model_id']} (FINETUNED_FROM {source_id}, TRAINED_ON {target_id}); "
        f"TRANSFERRED_TO {source_id} -> {target_id} with accuracy {summary['accuracy']:.4f}"
    )


def print_loto(result: LotoResult, *, per_target: bool) -> None:
    """Mean Pearson r and weighted tau per method, then (``per_target``) one row per held-out target."""
    table = []
    for method in result.methods:
        r, tau, n = result.mean(method)
        table.append(
            {
                "method": method,
                "mean Pearson r": f"{r:.3f}",
                "mean weighted tau": f"{tau:.3f}",
                "targets": str(n),
            }
        )
    console.print(rows_table(table))
    if per_target:
        rows = []
        scored = [m for m in result.methods if result.mean(m)[2] > 0]
        for t in result.targets:
            cells = {"target": t.name, "models": str(t.n_models)}
            for method in scored:
                r, tau = t.scores.get(method, (float("nan"), float("nan")))
                cells[f"{method} r / tau"] = f"{r:.3f} / {tau:.3f}"
            rows.append(cells)
        console.print(rows_table(rows))
    for note in result.notes:
        console.print(f"note: {note}", style="yellow")


def print_ranking(ranking: Ranking, *, as_json: bool) -> None:
    """The probes run first and the notes (stderr), then the ranked candidates as a table or JSON."""
    for r in ranking.probes:
        scores = ", ".join(f"{k} {v:.3f}" for k, v in list(r.estimators.items())[:3])
        err_console.print(f"probed {r.model_id} (n={r.sample_size}): {scores}", style="dim", markup=False)
    for note in ranking.notes:
        err_console.print(f"note: {note}", style="yellow", highlight=False, markup=False)
    if as_json:
        print(json.dumps([asdict(r) for r in ranking.candidates], indent=2, default=str))
        return
    rows: list[dict[str, Any]] = [
        {
            "rank": r.rank,
            "model": r.model_id,
            "compatibility": f"{r.compatibility:.3f} ± {r.uncertainty:.3f}",
            "shift risk": f"{r.shift_risk:.2f}",
            "bias risk": f"{r.bias_risk:.2f}",
            "basis": r.basis,
        }
        for r in ranking.candidates
    ]
    console.print(rows_table(rows))


def print_report(paths: ReportPaths, *, as_json: bool) -> None:
    """The report document as JSON, or its recommendation, settings, notes and files."""
    doc = paths.document
    if as_json:
        print(json.dumps(doc, indent=2))
        return
    chosen, shift = doc["chosen_source"], doc["shift"]
    console.print(
        f"recommended source for {doc['target']['id']}: [bold]{chosen['id']}[/] "
        f"(rank {chosen['rank']}, compatibility {chosen['compatibility']:.3f}); shift: "
        f"{shift['shift_type'] or shift['status']}; {len(doc['bias']['biases'])} known bias(es) reach it"
    )
    for d in doc["settings"]["decisions"]:
        console.print(f"  {d['setting']}: {d['reason']}", style="cyan", highlight=False)
    for note in doc["notes"]:
        err_console.print(f"note: {note}", style="yellow", highlight=False, markup=False)
    console.print(f"report: {paths.html}\n        {paths.markdown}\n        {paths.json}")


def _print_demo_loop(run: DemoRun) -> None:
    loop = run.loop
    for r in loop.probes:
        leep = r.estimators.get("leep", float("nan"))
        console.print(
            f"probe {r.model_id} -> {r.dataset_id}: LogME {r.estimators['logme']:.3f}, LEEP {leep:.3f}, "
            f"shift {r.shift_type}, freeze through group {r.freeze_cut}"
        )
        if r.plot:
            console.print(f"  generality curve: {r.plot}", style="dim")
    trained = f"trained ({loop.scorer_trained})" if loop.scorer_trained else "up to date, reused"
    console.print(f"GNN scorer {loop.scorer}: {trained}")
    console.print(f"source for {run.target}: {loop.choice.model_id}: {loop.choice.reason()}")
    for decision in loop.decisions:
        console.print(f"  auto: {decision.setting} = {decision.value}: {decision.reason}", style="cyan")
    outcome = loop.run or {}
    earlier = " (recorded by an earlier run)" if loop.reused_run else ""
    forgetting = outcome.get("forgetting")
    console.print(
        f"fine-tuned {loop.source} -> {run.target} with auto settings{earlier}: accuracy "
        f"{outcome.get('accuracy') or 0:.3f}, forgetting of the source task "
        f"{'not measured' if forgetting is None else f'{forgetting:.3f}'}, run {outcome.get('run_id')}"
    )
    if loop.learned:
        console.print(
            f"GNN scorer {loop.learned} trained on the new outcome (the next ranking learns from it)"
        )


def print_demo(run: DemoRun) -> None:
    """What the demo registered, probed, chose, fine-tuned and learned, then its lineage and bias answers."""
    data, loop = run.data, run.loop
    console.print(
        f"registered {len(data.datasets)} datasets and {len(data.models)} models in {run.store_uri}"
    )
    _print_demo_loop(run)
    if loop.report_dir is not None:
        console.print(f"report: {loop.report_dir / 'report.html'} (also report.md, report.json)")
    if loop.tuned_model:
        console.print(reaches_table(f"$ kgraft lineage {loop.tuned_model}", loop.tuned_model, loop.lineage))
    start = data.lineage_of
    console.print(reaches_table(f"$ kgraft lineage {start}", start, data.lineage))
    console.print(reaches_table(f"$ kgraft bias {start}", start, data.biases, bias=True))

"""Commands of the loop: ``probe``, ``gnn train|eval``, ``recommend``, ``report``, ``finetune``, ``demo``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer

from transfer.cli.common import (
    DEFAULT_PROBE,
    app,
    epoch_updater,
    gnn_app,
    parse_params,
    print_plan,
    progress_bar,
    progress_counter,
    store_from,
)
from transfer.render import console, err_console


@app.command()
def demo(
    ctx: typer.Context,
    zoo_dir: Annotated[Path, typer.Option(help="Where the zoo's checkpoints are cached.")] = Path(
        ".kgraft/zoo"
    ),
    small: Annotated[
        bool, typer.Option("--small", help="A smaller loop: two zoo models, one probe, one epoch.")
    ] = False,
) -> None:
    """Run the main job on bundled real data: register and derive data, build the zoo, probe, train the
    GNN scorer, write a suitability report, fine-tune the report's source with auto settings, record the
    outcome, and answer a lineage and a bias query."""
    from transfer.demo import DEMO_TARGET, LoopOptions, build_zoo, register_demo_data, run_loop
    from transfer.render import reaches_table

    options = LoopOptions(small=small)
    with store_from(ctx) as store, progress_bar() as progress:
        task = progress.add_task("starting", total=None)

        def step(text: str) -> None:
            progress.update(task, description=text, total=None)

        result = register_demo_data(store, step=step)
        build_zoo(store, result, zoo_dir, progress=epoch_updater(progress, task), sources=options.zoo_sources)
        loop = run_loop(store, zoo_dir.parent, options, step=step)
        progress.update(task, description="done")
    console.print(
        f"registered {len(result.datasets)} datasets and {len(result.models)} models in {store.uri}"
    )
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
    choice = loop.choice
    console.print(f"source for {DEMO_TARGET}: {choice.model_id}: {choice.reason()}")
    for decision in loop.decisions:
        console.print(f"  auto: {decision.setting} = {decision.value}: {decision.reason}", style="cyan")
    run = loop.run or {}
    earlier = " (recorded by an earlier run)" if loop.reused_run else ""
    forgetting = run.get("forgetting")
    console.print(
        f"fine-tuned {loop.source} -> {DEMO_TARGET} with auto settings{earlier}: accuracy "
        f"{run.get('accuracy') or 0:.3f}, forgetting of the source task "
        f"{'not measured' if forgetting is None else f'{forgetting:.3f}'}, run {run.get('run_id')}"
    )
    if loop.learned:
        console.print(
            f"GNN scorer {loop.learned} trained on the new outcome (the next ranking learns from it)"
        )
    if loop.report_dir is not None:
        console.print(f"report: {loop.report_dir / 'report.html'} (also report.md, report.json)")
    if loop.tuned_model:
        console.print(reaches_table(f"$ kgraft lineage {loop.tuned_model}", loop.tuned_model, loop.lineage))
    start = result.lineage_of
    console.print(reaches_table(f"$ kgraft lineage {start}", start, result.lineage))
    console.print(reaches_table(f"$ kgraft bias {start}", start, result.biases, bias=True))


@app.command()
def probe(
    ctx: typer.Context,
    model: Annotated[
        str | None, typer.Argument(help="Source model (id or name); omit with --all-models.")
    ] = None,
    dataset: Annotated[str | None, typer.Argument(help="Target dataset (id or name).")] = None,
    all_models: Annotated[
        bool, typer.Option("--all-models", help="Probe every classifier in the graph.")
    ] = False,
    samples: Annotated[int, typer.Option(help="Target (and source) sample size.")] = 1000,
    seed: Annotated[int, typer.Option(help="Sampling seed.")] = 0,
    out: Annotated[Path, typer.Option(help="Where generality curves (JSON, PNG) go.")] = Path(
        ".kgraft/probes"
    ),
) -> None:
    """Measure transferability (LogME, LEEP, NCE, H-score, SFDA, k-NN, linear probe), shift tests and the
    layer-wise generality curve of source models on a target; record them as SCORED_ON."""
    from ontology.vocab import Label
    from transfer.probe.run import probe as run_probe

    if all_models and model and not dataset:
        model, dataset = None, model
    with store_from(ctx) as store:
        if dataset is None:
            raise typer.BadParameter("give MODEL DATASET, or --all-models DATASET.")
        dataset_id = store.resolve(dataset, (Label.DATASET,))[1]
        if all_models:
            models = [
                r["id"]
                for r in store.query(
                    "MATCH (m:Model) WHERE m.kind = $kind AND m.checkpoint IS NOT NULL "
                    "RETURN m.id AS id ORDER BY id",
                    {"kind": "classifier"},
                )
            ]
        elif model is None:
            raise typer.BadParameter("give MODEL DATASET, or --all-models DATASET.")
        else:
            models = [store.resolve(model, (Label.MODEL,))[1]]
        with progress_bar() as progress:
            task = progress.add_task("probing", total=len(models))
            reports = []
            for model_id in models:
                progress.update(task, description=f"probing {model_id}")
                reports.append(run_probe(store, model_id, dataset_id, n=samples, seed=seed, out_dir=out))
                progress.advance(task)
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


@app.command()
def finetune(
    ctx: typer.Context,
    source: Annotated[
        str,
        typer.Option(help="Source model (id or name), or auto: the best fine-tunable one the scorer ranks."),
    ],
    target: Annotated[str, typer.Option(help="Target dataset (id or name).")],
    settings: Annotated[str, typer.Option(help="full, linear-probe, fastai or auto.")] = "fastai",
    epochs: Annotated[int | None, typer.Option(help="Total epochs (overrides the preset).")] = None,
    set_: Annotated[
        list[str], typer.Option("--set", help="Any setting, KEY=VALUE (JSON), e.g. batch_size=64.")
    ] = [],  # noqa: B006
    out: Annotated[
        Path | None, typer.Option(help="Run folder (checkpoints); default .kgraft/runs/...")
    ] = None,
    resume: Annotated[bool, typer.Option(help="Continue the interrupted run in --out.")] = False,
    baseline: Annotated[
        bool, typer.Option(help="Also train from scratch with the same budget (the gain).")
    ] = False,
    probe: Annotated[
        int,
        typer.Option(
            min=0,
            help="With --source auto: probe the K most promising candidates without estimator scores on "
            "the target before ranking (0: none).",
        ),
    ] = DEFAULT_PROBE,
) -> None:
    """Fine-tune a source model on a target dataset and record the run and its outcome in the graph."""
    from transfer.loop import plan as make_plan
    from transfer.loop import run

    with store_from(ctx) as store:
        overrides = parse_params(set_)
        with progress_bar() as progress:
            task = progress.add_task("planning", total=None)
            the_plan = make_plan(
                store,
                target,
                source,
                settings,
                probe=probe if source == "auto" else 0,
                probe_missing=source == "auto",
                rank=source == "auto",
                epochs=epochs,
                overrides=overrides,
                step=lambda text: progress.update(task, description=text, total=None),
                probe_progress=progress_counter(progress, task),
            )
        print_plan(the_plan)
        with progress_bar() as progress:
            task = progress.add_task("fine-tuning", total=the_plan.settings.epochs)

            def on_epoch(report: Any) -> None:
                progress.update(
                    task,
                    completed=report.epoch,
                    description=(
                        f"epoch {report.epoch}/{report.epochs} stage {report.stage}: "
                        f"loss {report.train_loss:.3f}, "
                        f"{report.eval_split} acc {report.eval_accuracy:.3f}"
                    ),
                )

            result = run(
                the_plan,
                out_dir=out,
                resume=resume,
                progress=on_epoch,
                measure_baseline=baseline,
                note=lambda text: err_console.print(f"note: {text}", style="yellow", markup=False),
            )
    source_id, target_id = the_plan.source_id, the_plan.target_id
    summary = result.summary()
    console.print_json(data={k: v for k, v in summary.items() if k != "epochs"})
    console.print(
        f"recorded run {summary['run_id']}: Activity USED {source_id} and {target_id}, GENERATED "
        f"{summary['model_id']} (FINETUNED_FROM {source_id}, TRAINED_ON {target_id}); "
        f"TRANSFERRED_TO {source_id} -> {target_id} with accuracy {summary['accuracy']:.4f}"
    )


@gnn_app.command("train")
def gnn_train(
    ctx: typer.Context,
    out: Annotated[
        Path | None,
        typer.Option(
            help="Where the scorer's weights go; default: beside the store (FILE.scorers for "
            "embedded:FILE, under .kgraft/ for Neo4j)."
        ),
    ] = None,
    seed: Annotated[int, typer.Option(help="Seed.")] = 0,
    epochs: Annotated[int, typer.Option(min=1, help="Training epochs.")] = 300,
    ensemble: Annotated[int, typer.Option(min=1, help="Ensemble members.")] = 4,
) -> None:
    """Train the GNN scorer on every recorded outcome and record it as a Model (kind gnn-scorer)."""
    from gnn.train import TrainConfig, train_scorer
    from kg.locations import beside_store

    folder = out or beside_store(ctx.obj["store"], "scorers")
    with store_from(ctx) as store, err_console.status("training the scorer"):
        info = train_scorer(store, folder, seed=seed, train=TrainConfig(epochs=epochs, ensemble=ensemble))
    console.print(f"scorer {info.id} (version {info.version}): {info.message}")
    console.print(f"weights: {info.checkpoint}", highlight=False)


@gnn_app.command("eval")
def gnn_eval(
    ctx: typer.Context,
    targets: Annotated[
        str, typer.Option(help="Comma-separated target datasets (ids or names); default: every target.")
    ] = "",
    epochs: Annotated[int, typer.Option(min=1, help="Training epochs per fold.")] = 300,
    ensemble: Annotated[int, typer.Option(min=1, help="Ensemble members per fold.")] = 4,
    seed: Annotated[int, typer.Option(help="Seed.")] = 0,
) -> None:
    """Leave-one-target-out evaluation: per held-out target, Pearson r and weighted Kendall tau between
    predicted and recorded accuracy, for the GNN and the baselines (full study: benchmarks/gnn_eval.py)."""
    from gnn.builder import OUTCOME, build_hetero
    from gnn.evaluate import MIN_OUTCOMES, loto
    from gnn.train import ScorerError, TrainConfig
    from ontology.vocab import Label
    from transfer.render import rows_table

    with store_from(ctx, read_only=True) as store:
        data, maps = build_hetero(store)
        outcomes = data[OUTCOME].edge_index
        if outcomes.shape[1] == 0:
            raise ScorerError(
                "the graph holds no TRANSFERRED_TO outcomes, so there is nothing to evaluate; record "
                "fine-tuning runs (kgraft finetune) or import some (kgraft import transfergraph DIR)."
            )
        rows = None
        if targets.strip():
            counts = outcomes[1].bincount(minlength=data["dataset"].num_nodes)
            rows = []
            for name in (t.strip() for t in targets.split(",") if t.strip()):
                _, dataset_id = store.resolve(name, (Label.DATASET,))
                row = maps.index["dataset"].get(dataset_id)
                if row is None or int(counts[row]) < MIN_OUTCOMES:
                    have = 0 if row is None else int(counts[row])
                    raise ScorerError(
                        f"{name!r} has {have} recorded outcomes; leave-one-target-out needs at least "
                        f"{MIN_OUTCOMES} for a target."
                    )
                rows.append(row)
        train = TrainConfig(epochs=epochs, ensemble=ensemble)
        with err_console.status("leave-one-target-out evaluation"):
            result = loto(data, names=maps.ids["dataset"], targets=rows, train=train, seed=seed)
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
    if rows is not None:
        per_target = []
        scored = [m for m in result.methods if result.mean(m)[2] > 0]
        for t in result.targets:
            cells = {"target": t.name, "models": str(t.n_models)}
            for method in scored:
                r, tau = t.scores.get(method, (float("nan"), float("nan")))
                cells[f"{method} r / tau"] = f"{r:.3f} / {tau:.3f}"
            per_target.append(cells)
        console.print(rows_table(per_target))
    for note in result.notes:
        console.print(f"note: {note}", style="yellow")


@app.command()
def recommend(
    ctx: typer.Context,
    dataset: Annotated[str, typer.Argument(help="Target dataset (id or name).")],
    top: Annotated[int, typer.Option(help="How many sources to list.")] = 10,
    probe: Annotated[
        int,
        typer.Option(
            min=0,
            help="Probe the K most promising candidates without estimator scores on the target first "
            "(recorded as SCORED_ON), then rank; 0: rank only (read-only).",
        ),
    ] = DEFAULT_PROBE,
    train_size: Annotated[
        int | None,
        typer.Option(min=1, help="Training images you will fine-tune on (default: the target's size)."),
    ] = None,
    batch_size: Annotated[int | None, typer.Option(min=1, help="Batch size you will fine-tune with.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Rank source models for a target: compatibility with its uncertainty, shift risk and bias risk.
    Candidates whose recorded runs collapsed to chance under a similar regime are warned about and
    ranked by their expected outcome."""
    from dataclasses import asdict

    from transfer.loop import rank_target
    from transfer.render import rows_table

    with store_from(ctx, read_only=probe == 0) as store, progress_bar() as progress:
        task = progress.add_task("ranking", total=None)
        ranking = rank_target(
            store,
            dataset,
            top=top,
            probe=probe,
            step=lambda text: progress.update(task, description=text, total=None),
            probe_progress=progress_counter(progress, task),
            train_size=train_size,
            batch_size=batch_size,
        )
    recs = list(ranking.candidates)
    for r in ranking.probes:
        scores = ", ".join(f"{k} {v:.3f}" for k, v in list(r.estimators.items())[:3])
        err_console.print(f"probed {r.model_id} (n={r.sample_size}): {scores}", style="dim", markup=False)
    for note in ranking.notes:
        err_console.print(f"note: {note}", style="yellow", highlight=False, markup=False)
    if as_json:
        print(json.dumps([asdict(r) for r in recs], indent=2, default=str))
        return
    console.print(
        rows_table(
            [
                {
                    "rank": r.rank,
                    "model": r.model_id,
                    "compatibility": f"{r.compatibility:.3f} ± {r.uncertainty:.3f}",
                    "shift risk": f"{r.shift_risk:.2f}",
                    "bias risk": f"{r.bias_risk:.2f}",
                    "basis": r.basis,
                }
                for r in recs
            ]
        )
    )


@app.command()
def report(
    ctx: typer.Context,
    target: Annotated[str, typer.Option(help="Target dataset (id or name).")],
    source: Annotated[
        str | None, typer.Option(help="Source model (id or name); default: the best-ranked one.")
    ] = None,
    out: Annotated[Path | None, typer.Option(help="Report folder; default .kgraft/reports/TARGET.")] = None,
    top: Annotated[int, typer.Option(help="How many ranked sources to show.")] = 10,
    no_probe: Annotated[
        bool, typer.Option("--no-probe", help="Do not probe at all; say how to measure the pair instead.")
    ] = False,
    probe: Annotated[
        int,
        typer.Option(
            min=0,
            help="Probe the K most promising candidates without estimator scores on the target before "
            "ranking (0: none).",
        ),
    ] = DEFAULT_PROBE,
    as_json: Annotated[bool, typer.Option("--json", help="Print the report document as JSON.")] = False,
) -> None:
    """Write a transfer-suitability report (report.json, report.md, report.html): ranked sources, shift
    and bias analysis of the chosen one, recommended fine-tuning settings, provenance."""
    from ontology.vocab import Label
    from transfer.register import slug

    with store_from(ctx) as store, progress_bar() as progress:
        task = progress.add_task("report", total=None)
        target_id = store.resolve(target, (Label.DATASET,))[1]
        folder = out or Path(".kgraft/reports") / slug(target_id)
        from transfer.report import write_report  # after the cheap checks: it imports torch

        paths = write_report(
            store,
            target_id,
            source,
            out_dir=folder,
            top=top,
            probe_missing=not no_probe,
            probe=0 if no_probe else probe,
            step=lambda text: progress.update(task, description=text, total=None),
            probe_progress=progress_counter(progress, task),
        )
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

"""Commands of the loop: ``probe``, ``gnn train|eval``, ``recommend``, ``report``, ``finetune``, ``demo``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from transfer.cli.common import (
    DEFAULT_PROBE,
    app,
    epoch_progress,
    epoch_updater,
    gnn_app,
    parse_params,
    print_plan,
    progress_bar,
    progress_counter,
    step_updater,
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
    from transfer.cli.show import print_demo
    from transfer.demo import DemoOptions, run_demo

    with store_from(ctx) as store, progress_bar() as progress:
        task = progress.add_task("starting", total=None)
        demo_run = run_demo(
            store,
            zoo_dir,
            DemoOptions(small=small),
            step=step_updater(progress, task),
            zoo_progress=epoch_updater(progress, task),
        )
        progress.update(task, description="done")
    print_demo(demo_run)


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
    from transfer.cli.show import print_probes
    from transfer.loop import probe_models

    if all_models and model and not dataset:
        model, dataset = None, model
    with store_from(ctx) as store:
        if dataset is None:
            raise typer.BadParameter("give MODEL DATASET, or --all-models DATASET.")
        dataset_id = store.resolve(dataset, (Label.DATASET,))[1]
        if model is None and not all_models:
            raise typer.BadParameter("give MODEL DATASET, or --all-models DATASET.")
        with progress_bar() as progress:
            task = progress.add_task("probing", total=None)
            reports = probe_models(
                store,
                dataset_id,
                None if all_models else [model],
                samples=samples,
                seed=seed,
                work_dir=out,
                progress=progress_counter(progress, task),
            )
    print_probes(reports)


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
    from transfer.cli.show import print_finetune, print_note
    from transfer.loop import plan_finetune, run

    with store_from(ctx) as store:
        overrides = parse_params(set_)
        with progress_bar() as progress:
            task = progress.add_task("planning", total=None)
            the_plan = plan_finetune(
                store,
                target,
                source,
                settings,
                probe=probe,
                epochs=epochs,
                overrides=overrides,
                step=step_updater(progress, task),
                probe_progress=progress_counter(progress, task),
            )
        print_plan(the_plan)
        with progress_bar() as progress:
            task = progress.add_task("fine-tuning", total=the_plan.settings.epochs)
            result = run(
                the_plan,
                out_dir=out,
                resume=resume,
                progress=epoch_progress(progress, task),
                measure_baseline=baseline,
                note=print_note,
            )
    print_finetune(the_plan, result)


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
    from gnn.evaluate import evaluate_graph
    from gnn.train import TrainConfig
    from transfer.cli.show import print_loto

    names = [t.strip() for t in targets.split(",") if t.strip()]
    with store_from(ctx, read_only=True) as store, err_console.status("leave-one-target-out evaluation"):
        result = evaluate_graph(store, names, train=TrainConfig(epochs=epochs, ensemble=ensemble), seed=seed)
    print_loto(result, per_target=bool(names))


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
    from transfer.cli.show import print_ranking
    from transfer.loop import rank_target

    with store_from(ctx, read_only=probe == 0) as store, progress_bar() as progress:
        task = progress.add_task("ranking", total=None)
        ranking = rank_target(
            store,
            dataset,
            top=top,
            probe=probe,
            step=step_updater(progress, task),
            probe_progress=progress_counter(progress, task),
            train_size=train_size,
            batch_size=batch_size,
        )
    print_ranking(ranking, as_json=as_json)


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
    from transfer.cli.show import print_report

    with store_from(ctx) as store, progress_bar() as progress:
        task = progress.add_task("report", total=None)
        target_id = store.resolve(target, (Label.DATASET,))[1]
        from transfer.report import default_report_dir, write_report  # after the cheap check: torch

        paths = write_report(
            store,
            target_id,
            source,
            out_dir=out or default_report_dir(target_id),
            top=top,
            probe_missing=not no_probe,
            probe=0 if no_probe else probe,
            step=step_updater(progress, task),
            probe_progress=progress_counter(progress, task),
        )
    print_report(paths, as_json=as_json)

"""The ``kgraft`` command line: thin commands that parse, call one library function and print.

User mistakes (unknown names, bad files, unreachable servers) end with one sentence on stderr and
exit code 1, never a traceback.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

import typer

from kg import GraphStore, KgError, open_store
from kg.checked_write import execute_checked
from kg.errors import is_user_error
from kg.store import resolve_store_uri
from transfer.openlineage_cli import openlineage_app
from transfer.quiet import quiet_third_party
from transfer.render import console, err_console, print_error
from transfer.serve.cli import serve as _serve
from transfer.similar_cli import similar as _dataset_similar

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
app.add_typer(openlineage_app, name="openlineage")


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


@app.command()
def init(ctx: typer.Context) -> None:
    """Create the store (if embedded) and its schema from the ontology."""
    with store_from(ctx) as store:
        console.print(f"graph ready at {store.uri}")


def _parse_params(params: list[str]) -> dict[str, Any]:
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
        params = _parse_params(param)
    with store_from(ctx, read_only=not write) as store:
        rows = execute_checked(store, cypher, params) if write else store.query(cypher, params)
    if as_json:
        print(json.dumps(rows, indent=2, default=str))
    else:
        from transfer.render import rows_table

        console.print(rows_table(rows))
        console.print(f"{len(rows)} row(s)", style="dim")


def _show_reaches(ctx: typer.Context, name: str, depth: int, fmt: Format, direction: str, bias: bool) -> None:
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


@app.command()
def lineage(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="Dataset or model id or name.")],
    depth: Annotated[int, typer.Option(help="How many hops to follow (1-30).")] = 10,
    down: Annotated[bool, typer.Option("--down", help="Show descendants instead of ancestors.")] = False,
    fmt: Annotated[Format, typer.Option("--format", "-f")] = Format.table,
) -> None:
    """Where a dataset or model came from (or, with --down, what was made from it)."""
    _show_reaches(ctx, name, depth, fmt, "down" if down else "up", bias=False)


@app.command()
def bias(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="Dataset or model id or name.")],
    depth: Annotated[int, typer.Option(help="How many lineage hops to follow (1-30).")] = 10,
    fmt: Annotated[Format, typer.Option("--format", "-f")] = Format.table,
) -> None:
    """Known biases that reach a dataset or model through its lineage, with their paths."""
    _show_reaches(ctx, name, depth, fmt, "up", bias=True)


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


@import_app.command("rdf")
def import_rdf(
    ctx: typer.Context, path: Annotated[Path, typer.Argument(help="Turtle or JSON-LD file.")]
) -> None:
    """Read an RDF export back into the graph (all or nothing; validated against the SHACL shapes)."""
    from kg.rdf import read_rdf

    with user_errors():
        batch = read_rdf(path)
    with store_from(ctx) as store:
        stats = store.apply(batch)
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
    with store_from(ctx) as store, _progress() as progress:
        task = progress.add_task("starting", total=None)

        def step(text: str) -> None:
            progress.update(task, description=text, total=None)

        result = register_demo_data(store, step=step)
        build_zoo(
            store, result, zoo_dir, progress=_epoch_updater(progress, task), sources=options.zoo_sources
        )
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


def _progress() -> Any:
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


def _counter(progress: Any, task: Any) -> Any:
    """A ``(message, done, total)`` callback that drives a progress task (probes of candidates)."""

    def update(message: str, done: int, total: int) -> None:
        progress.update(task, description=message, completed=done, total=total)

    return update


def _print_plan(p: Any) -> None:
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


def _epoch_updater(progress: Any, task: Any) -> Any:
    def update(message: str, done: int, total: int) -> None:
        progress.update(task, description=f"zoo: {message}", completed=done, total=total)

    return update


zoo_app = typer.Typer(help="The model zoo.", no_args_is_help=True)
app.add_typer(zoo_app, name="zoo")
model_app = typer.Typer(help="Register models.", no_args_is_help=True)
app.add_typer(model_app, name="model")


@zoo_app.command("build")
def zoo_build(
    ctx: typer.Context,
    out: Annotated[Path, typer.Option(help="Where checkpoints are cached.")] = Path(".kgraft/zoo"),
) -> None:
    """Pretrain the demo zoo on the bundled data (cached) and record it with ccexam's models."""
    from transfer.demo import build_zoo, register_demo_data

    with store_from(ctx) as store, _progress() as progress:
        task = progress.add_task("registering data", total=None)
        result = register_demo_data(store, step=lambda text: progress.update(task, description=text))
        build_zoo(store, result, out, progress=_epoch_updater(progress, task))
    console.print(f"zoo: {', '.join(result.models)}")


@model_app.command("add")
def model_add(
    ctx: typer.Context,
    spec: Annotated[
        str,
        typer.Argument(
            help="torchvision:ARCH[:WEIGHTS], timm:NAME[:CHECKPOINT], ccexam:NAME, "
            "or a checkpoint file (safetensors or a tensors-only torch file)."
        ),
    ],
    name: Annotated[str | None, typer.Option(help="Name (and id) to record it under.")] = None,
    pretrained_on: Annotated[str | None, typer.Option(help="Registered dataset it was trained on.")] = None,
    architecture: Annotated[
        str | None, typer.Option(help="For a checkpoint file: e.g. resnet18, smallcnn.")
    ] = None,
    input_size: Annotated[str | None, typer.Option(help="For a checkpoint file: C,H,W.")] = None,
    mean: Annotated[
        str | None, typer.Option(help="For a checkpoint file: per-channel mean, comma-separated.")
    ] = None,
    std: Annotated[
        str | None, typer.Option(help="For a checkpoint file: per-channel std, comma-separated.")
    ] = None,
    license: Annotated[str | None, typer.Option(help="Licence of the weights.")] = None,
    agent: Annotated[str | None, typer.Option(help="Who made or registers it.")] = None,
) -> None:
    """Record a pretrained model with its preprocessing and layer groups."""
    from transfer.register import register_model
    from transfer.zoo_graph import record_from_spec

    with store_from(ctx) as store:
        record = record_from_spec(
            spec,
            name=name,
            architecture=architecture,
            input_size=input_size,
            mean=mean,
            std=std,
            license=license,
        )
        model_id = register_model(store, record, pretrained_on=pretrained_on, agent=agent)
    console.print(
        f"registered model [bold]{model_id}[/]: {record.architecture}, {record.num_params or 0:,} params, "
        f"input {record.input_size}, {len(record.layer_groups)} layer groups, head {record.head!r}"
    )


@import_app.command("wordnet")
def import_wordnet(
    ctx: typer.Context,
    dict_dir: Annotated[Path, typer.Option("--dict", help="WordNet 3.0 dict folder.")] = Path(
        "/usr/share/wordnet"
    ),
) -> None:
    """Load the WordNet noun hierarchy (about 82k synsets) as Concepts with IS_A, in bulk."""
    from kg.wordnet import WordNet, to_batch

    with store_from(ctx) as store:
        with err_console.status("reading WordNet"):
            batch = to_batch(WordNet.load(dict_dir))
        with err_console.status(f"writing {batch.node_count():,} concepts and {batch.edge_count():,} IS_A"):
            stats = store.apply(batch)
    console.print(f"WordNet: {stats.nodes_created:,} concepts created, {stats.nodes_updated:,} updated")


dataset_app = typer.Typer(help="Register datasets.", no_args_is_help=True)
app.add_typer(dataset_app, name="dataset")


@dataset_app.command("add")
def dataset_add(
    ctx: typer.Context,
    spec: Annotated[
        str,
        typer.Argument(
            help="A builtin name (fashion-mnist, digits, animal-mnist), a folder, "
            "idx:DIR, imagefolder:DIR or torchvision:NAME[:ROOT]."
        ),
    ],
    name: Annotated[str | None, typer.Option(help="Name to register it under.")] = None,
    derived_from: Annotated[str | None, typer.Option(help="The dataset it was made from.")] = None,
    domain: Annotated[str | None, typer.Option(help="e.g. 'handwriting', 'product photos'.")] = None,
    bias: Annotated[list[str], typer.Option(help="A known bias, 'kind: description' (repeatable).")] = [],  # noqa: B006
    agent: Annotated[str | None, typer.Option(help="Who registers it.")] = None,
    new_version: Annotated[bool, typer.Option(help="Record changed content as a new version.")] = False,
    concepts: Annotated[bool, typer.Option(help="Map class names to WordNet synsets.")] = True,
    hint: Annotated[
        str | None, typer.Option(help="Prefer WordNet senses under this synset, e.g. animal.n.01.")
    ] = None,
) -> None:
    """Register a dataset with its profile, classes (WordNet concepts), domain, biases and lineage."""
    from kg.wordnet import WordNet
    from transfer.data.sources import load_dataset
    from transfer.register import parse_bias, register_dataset

    with store_from(ctx) as store:
        with err_console.status(f"loading {spec}"):
            ds = load_dataset(spec)
        if name:
            ds.name = name
        biases = [parse_bias(b) for b in bias]
        wordnet = WordNet.load() if concepts else None
        with err_console.status("profiling and recording"):
            reg = register_dataset(
                store,
                ds,
                derived_from=derived_from,
                domain=domain,
                biases=biases,
                agent=agent,
                new_version=new_version,
                wordnet=wordnet,
                concept_hint=hint,
            )
    _print_registration(reg)


@dataset_app.command("derive")
def dataset_derive(
    ctx: typer.Context,
    parent: Annotated[str, typer.Argument(help="A registered dataset (id or name).")],
    how: Annotated[
        str,
        typer.Argument(
            help="subset, class_subset, rotate, invert, blur, noise, downscale, "
            "contrast, brightness, color or imbalance."
        ),
    ],
    param: Annotated[list[str], typer.Option("--param", "-p", help="KEY=VALUE (VALUE parsed as JSON).")] = [],  # noqa: B006
    name: Annotated[str | None, typer.Option(help="Name of the new dataset.")] = None,
    seed: Annotated[int, typer.Option(help="Seed of random transformations.")] = 0,
    agent: Annotated[str | None, typer.Option(help="Who made it.")] = None,
) -> None:
    """Make a dataset from a registered one and record DERIVED_FROM with the transformation."""
    from kg.wordnet import WordNet
    from ontology.vocab import Label
    from transfer.data.derive import derive, describe_bias
    from transfer.register import materialise, register_dataset

    with store_from(ctx) as store:
        params = _parse_params(param)
        parent_id = store.resolve(parent, (Label.DATASET,))[1]
        with err_console.status(f"rebuilding {parent_id} from its recipe"):
            source = materialise(store, parent_id)
        ds = derive(source, how, params, seed=seed, name=name or f"{source.name}-{how}")
        biases = []
        if how == "imbalance":
            record = describe_bias(source, ds)
            record.pop("ratio", None)
            biases.append(record)
        with err_console.status("profiling and recording"):
            reg = register_dataset(
                store, ds, derived_from=parent_id, biases=biases, agent=agent, wordnet=WordNet.load()
            )
    _print_registration(reg)


dataset_app.command("similar")(_dataset_similar)


@dataset_app.command("alias")
def dataset_alias(
    ctx: typer.Context,
    first: Annotated[str, typer.Argument(help="A registered dataset (id or name).")],
    second: Annotated[str, typer.Argument(help="The same dataset under another name (id or name).")],
) -> None:
    """Record that two datasets are one dataset under two names (SAME_AS; owl:sameAs in RDF): the
    scorer then counts the history of either name for both, and hides both when one is held out."""
    from kg.aliases import add_alias, aliases_of
    from kg.clock import now

    with store_from(ctx) as store:
        a, b = add_alias(store, first, second, time=now())
        group = [a, *aliases_of(store, a)]
    console.print(f"{a} SAME_AS {b}; known names of this dataset: {', '.join(group)}", highlight=False)


def _print_registration(reg: Any) -> None:
    p = reg.profile
    console.print(
        f"{'registered' if reg.created else 'updated'} dataset [bold]{reg.id}[/]: {p['n_samples']:,} images "
        f"{p['split_counts']}, {p['n_classes']} classes (imbalance {p['imbalance']:.1f}), "
        f"{p['channels']}x{p['image_size'][0]}x{p['image_size'][1]}, checksum {p['checksum'][:12]}"
    )
    for note in reg.notes:
        console.print(f"note: {note}", style="yellow")


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
        with _progress() as progress:
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
        overrides = _parse_params(set_)
        with _progress() as progress:
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
                probe_progress=_counter(progress, task),
            )
        _print_plan(the_plan)
        with _progress() as progress:
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
        stats = store.apply(transfergraph_batch(folder))
    console.print(
        f"TransferGraph: {stats.nodes_created:,} nodes and {stats.edges_created:,} relationships created"
    )


gnn_app = typer.Typer(help="The graph scorer.", no_args_is_help=True)
app.add_typer(gnn_app, name="gnn")


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

    with store_from(ctx, read_only=probe == 0) as store, _progress() as progress:
        task = progress.add_task("ranking", total=None)
        ranking = rank_target(
            store,
            dataset,
            top=top,
            probe=probe,
            step=lambda text: progress.update(task, description=text, total=None),
            probe_progress=_counter(progress, task),
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

    with store_from(ctx) as store, _progress() as progress:
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
            probe_progress=_counter(progress, task),
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


app.command("serve")(_serve)


def main() -> None:
    """Entry point of the ``kgraft`` command."""
    quiet_third_party()
    app()


if __name__ == "__main__":
    main()

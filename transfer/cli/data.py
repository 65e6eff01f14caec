"""Commands that register data and models: ``dataset add|derive|similar|alias``, ``model add``,
``zoo build``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from transfer.cli.common import (
    dataset_app,
    epoch_updater,
    model_app,
    parse_params,
    print_registration,
    progress_bar,
    step_updater,
    store_from,
    zoo_app,
)
from transfer.cli.similar import similar as _dataset_similar
from transfer.render import console, err_console


@zoo_app.command("build")
def zoo_build(
    ctx: typer.Context,
    out: Annotated[Path, typer.Option(help="Where checkpoints are cached.")] = Path(".kgraft/zoo"),
) -> None:
    """Pretrain the demo zoo on the bundled data (cached) and record it with ccexam's models."""
    from transfer.demo import register_demo

    with store_from(ctx) as store, progress_bar() as progress:
        task = progress.add_task("registering data", total=None)
        data = register_demo(
            store, out, step=step_updater(progress, task), zoo_progress=epoch_updater(progress, task)
        )
    console.print(f"zoo: {', '.join(data.models)}")


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
    from transfer.zoo.registration import record_from_spec

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
    print_registration(reg)


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
        params = parse_params(param)
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
    print_registration(reg)


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

"""``python -m transfer.finetune.engine`` / ``torchrun ... -m transfer.finetune.engine``: one fine-tuning
run from the command line (the argparse entry point; the library call is ``engine.finetune``).

    torchrun --nproc_per_node=2 -m transfer.finetune.engine --source ccexam.mnist --target digits \\
        --out-dir runs/mnist-digits --preset fastai --set epochs=3 --store embedded:.kgraft/graph.lbug
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from transfer.data import ImageDataset
from transfer.finetune.settings import FinetuneError
from transfer.zoo import ModelRecord, ZooError


def _parse_value(text: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def _load_source(spec: str) -> ModelRecord:
    """A record from a JSON file (``ModelRecord.to_properties`` plus optional ``pretrained_on``) or a
    ccexam model id (``ccexam.mnist``)."""
    path = Path(spec)
    if path.is_file():
        props = json.loads(path.read_text())
        return ModelRecord.from_properties(props, pretrained_on=props.get("pretrained_on"))
    if spec.startswith("ccexam."):
        from transfer.zoo import ccexam_records

        for record in ccexam_records():
            if record.id == spec:
                return record
    raise FinetuneError(f"--source {spec!r} is neither a model record JSON file nor a ccexam model id.")


def _load_data(spec: str) -> ImageDataset:
    """A dataset file written by ``save_dataset_file`` (``*.pt``) or anything ``load_dataset`` reads."""
    from transfer.data import load_dataset
    from transfer.finetune.data import load_dataset_file

    if spec.endswith(".pt") and Path(spec).is_file():
        return load_dataset_file(spec)
    return load_dataset(spec)


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m transfer.finetune.engine`` / ``torchrun ... -m transfer.finetune.engine``: one run.

    Prints the result summary as JSON on rank 0. Only rank 0 opens ``--store``.
    """
    parser = argparse.ArgumentParser(
        prog="python -m transfer.finetune.engine", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--source", required=True, help="model record JSON file or ccexam model id")
    parser.add_argument(
        "--target", required=True, help="dataset spec (load_dataset) or kgraft dataset .pt file"
    )
    parser.add_argument("--out-dir", required=True)
    parser.add_argument("--preset", default="fastai")
    parser.add_argument("--settings", help="JSON object (or file) of settings overrides")
    parser.add_argument(
        "--set", action="append", default=[], metavar="KEY=VALUE", help="one settings override"
    )
    parser.add_argument("--store", help="graph store URI (rank 0 records the run)")
    parser.add_argument("--target-id")
    parser.add_argument("--source-dataset", help="source task data (with a test split) to measure forgetting")
    parser.add_argument("--resume", action="store_true")
    parser.add_argument("--measure-baseline", action="store_true")
    parser.add_argument("--target-close-to-source", action="store_true")
    parser.add_argument("--result-json", help="also write the summary here (rank 0)")
    args = parser.parse_args(argv)
    rank = int(os.environ.get("RANK", "0"))
    logging.basicConfig(  # one voice: the other ranks only warn
        level=logging.INFO if rank == 0 else logging.WARNING, format="%(levelname)s %(name)s: %(message)s"
    )

    from transfer.finetune.engine import finetune
    from transfer.finetune.settings import settings_for

    overrides: dict[str, Any] = {}
    if args.settings:
        text = Path(args.settings).read_text() if Path(args.settings).is_file() else args.settings
        overrides.update(json.loads(text))
    for item in args.set:
        key, sep, value = item.partition("=")
        if not sep:
            parser.error(f"--set takes KEY=VALUE, got {item!r}")
        overrides[key] = _parse_value(value)
    try:
        settings = settings_for(args.preset, **overrides)
        source = _load_source(args.source)
        target = _load_data(args.target)
        source_data = _load_data(args.source_dataset) if args.source_dataset else None
        is_main = rank == 0
        store = None
        if args.store and is_main:
            from kg import open_store

            store = open_store(args.store)
        try:
            result = finetune(
                source,
                target,
                settings,
                out_dir=args.out_dir,
                store=store,
                target_id=args.target_id,
                source_dataset=source_data,
                resume=args.resume,
                measure_baseline=args.measure_baseline,
                target_close_to_source=args.target_close_to_source,
            )
        finally:
            if store is not None:
                store.close()
    except (FinetuneError, ZooError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    if is_main:
        text = json.dumps(result.summary(), indent=1, default=str)
        print(text)
        if args.result_json:
            Path(args.result_json).write_text(text)
    return 0

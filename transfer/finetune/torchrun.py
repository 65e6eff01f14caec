"""``torchrun ... -m transfer.finetune.torchrun``: ``kgraft finetune`` on several processes (DDP).

The same path as ``kgraft finetune``: rank 0 opens the store, plans (``transfer.loop.plan_finetune``:
the source, auto or given, and the settings, preset or auto) and rebuilds the data the plan names
(``transfer.loop.prepare_run``); it broadcasts those inputs to the other ranks, and every rank fine-tunes
(``transfer.loop.execute``). Only rank 0 holds the store, so only rank 0 writes the graph; it prints the
result summary as JSON.

    torchrun --nproc_per_node=2 -m transfer.finetune.torchrun --store embedded:.kgraft/graph.lbug \\
        --source ccexam.mnist --target digits --settings fastai --set epochs=3 --out runs/mnist-digits

``python -m transfer.finetune.torchrun`` is the same run in one process (``python -m
transfer.finetune.engine``, the entry point before, is gone: one way in). The source and the target
must be in the graph (``kgraft model add``, ``kgraft dataset add``), as for ``kgraft finetune``.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kg import GraphStore, open_store
from kg.errors import is_user_error
from transfer.finetune.results import EpochReport
from transfer.finetune.runtime import broadcast, process_group
from transfer.finetune.settings import FinetuneError
from transfer.loop import RunInputs, describe_epoch, execute, plan_finetune, prepare_run

log = logging.getLogger(__name__)
PROBE = 3  # candidates probed before ranking with --source auto, as ``kgraft finetune --probe``


@dataclass(frozen=True)
class Refused:
    """Rank 0 could not plan the run: the one sentence every rank reports."""

    message: str


def parser() -> argparse.ArgumentParser:
    """The options of ``kgraft finetune``, plus ``--store`` and ``--result-json``."""
    p = argparse.ArgumentParser(
        prog="torchrun ... -m transfer.finetune.torchrun", description=__doc__.split("\n")[0]
    )
    p.add_argument("--store", help="embedded:PATH or neo4j://HOST:PORT (default: KGRAFT_STORE, kgraft.toml)")
    p.add_argument("--source", required=True, help="source model (id or name), or auto")
    p.add_argument("--target", required=True, help="target dataset (id or name)")
    p.add_argument("--settings", "--preset", default="fastai", help="full, linear-probe, fastai or auto")
    p.add_argument("--epochs", type=int, help="total epochs (overrides the preset)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="any setting (JSON value)")
    p.add_argument("--out", "--out-dir", type=Path, help="run folder; default .kgraft/runs/...")
    p.add_argument("--resume", action="store_true", help="continue the interrupted run in --out")
    p.add_argument("--baseline", "--measure-baseline", action="store_true", help="also train from scratch")
    p.add_argument("--probe", type=int, default=PROBE, help="with --source auto: candidates to probe first")
    p.add_argument("--result-json", type=Path, help="also write the summary here (rank 0)")
    return p


def overrides(items: Sequence[str]) -> dict[str, Any]:
    """``--set KEY=VALUE`` items as settings overrides (values read as JSON, else as text)."""
    out: dict[str, Any] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep:
            raise FinetuneError(f"--set takes KEY=VALUE, got {item!r}.")
        try:
            out[key] = json.loads(value)
        except json.JSONDecodeError:
            out[key] = value
    return out


def plan_inputs(store: GraphStore, args: argparse.Namespace) -> RunInputs:
    """Rank 0: plan as ``kgraft finetune`` does (``plan_finetune``) and rebuild what the plan names."""
    the_plan = plan_finetune(
        store,
        args.target,
        args.source,
        args.settings,
        probe=args.probe,
        epochs=args.epochs,
        overrides=overrides(args.set),
        step=log.info,
    )
    for decision in the_plan.decisions:
        log.info("auto: %s = %s: %s", decision.setting, decision.value, decision.reason)
    return prepare_run(the_plan, out_dir=args.out, step=log.info, note=log.warning)


def report_epoch(report: EpochReport) -> None:
    """One log line per epoch (rank 0), as ``kgraft finetune``'s progress bar says it."""
    log.info(describe_epoch(report))


def main(argv: Sequence[str] | None = None) -> int:
    """Plan on rank 0, share the inputs, fine-tune on every rank; 0 on success, 2 on a user error."""
    args = parser().parse_args(argv)
    rank = int(os.environ.get("RANK", "0"))
    logging.basicConfig(  # one voice: the other ranks only warn
        level=logging.INFO if rank == 0 else logging.WARNING, format="%(levelname)s %(name)s: %(message)s"
    )

    store: GraphStore | None = None
    try:
        with process_group() as rt:
            shared: RunInputs | Refused | None = None
            if rt.is_main:
                try:
                    store = open_store(args.store)
                    shared = plan_inputs(store, args)
                except Exception as err:
                    if not is_user_error(err):
                        raise
                    shared = Refused(str(err))
            shared = broadcast(shared, rt)
            if isinstance(shared, Refused):
                print(f"error: {shared.message}", file=sys.stderr)
                return 2
            progress = report_epoch if rt.is_main else None
            result = execute(
                shared, store, resume=args.resume, measure_baseline=args.baseline, progress=progress
            )
    except Exception as err:
        if not is_user_error(err):
            raise
        print(f"error: {err}", file=sys.stderr)
        return 2
    finally:
        if store is not None:
            store.close()
    if rank == 0:
        text = json.dumps(result.summary(), indent=1, default=str)
        print(text)
        if args.result_json:
            args.result_json.write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())

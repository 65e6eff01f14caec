"""The fine-tuning engine's CUDA paths, checked on a real GPU: each check asserts an outcome.

Run where ``torch.cuda.is_available()`` (it refuses to run elsewhere). Checks, each on Fashion-MNIST
images and a ResNet-18 from random weights (the same seed everywhere):

- ``precision``: fp32, bf16 autocast and fp16 autocast with a GradScaler, with and without
  channels-last memory: every run finishes with a finite loss, and the mixed-precision runs land within
  5 points of fp32's accuracy (they train the same network on the same batches).
- ``oom-retry``: a real out-of-memory. The process's share of the card is capped
  (``torch.cuda.set_per_process_memory_fraction``; the card's own settings are untouched), a batch that
  does not fit is asked for, and the engine must halve its micro-batch and finish, with the accuracy of
  an uncapped run at the same batch within 5% on the training loss (micro-batches accumulate into one
  optimiser step; a 2-step epoch from random weights makes accuracy too noisy to compare).
- ``compile``: ``torch.compile`` on CUDA finishes and matches the eager run's accuracy.
- ``torchrun``: the ``torchrun`` entry point on the GPU, planning and recording into a LadybugDB file
  (one process: a machine with one GPU builds no NCCL ring), and one process more than the machine has
  GPUs refused in one sentence.

Prints one markdown table; ``--out FILE`` also writes the rows as JSON. Exit status 1 when a check fails.

    python benchmarks/gpu_check.py [--out gpu_check.json] [--only precision,oom-retry,compile,torchrun]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from finetune_bench import make_record  # benchmarks/finetune_bench.py: run these scripts as files

from kg import open_store
from transfer.data import ImageDataset, derive, load_dataset
from transfer.finetune import FinetuneResult, finetune, settings_for
from transfer.register import register_dataset, register_model
from transfer.zoo import ModelRecord
from transfer.zoo.registration import record_from_spec

ROOT = Path(__file__).resolve().parents[1]
DEVICE = "cuda"  # "cpu" under --smoke
SIZES = {"images": 6000, "side": 64, "epochs": 3, "oom_images": 1400, "oom_batch": 1024, "oom_side": 224}
Row = dict[str, Any]


def run(record: ModelRecord, data: ImageDataset, out: Path, **overrides: Any) -> tuple[FinetuneResult, float]:
    """One full fine-tune with ``overrides``; (result, train images per second over its epochs)."""
    settings = settings_for(
        "full", **{"epochs": 3, "batch_size": 128, "base_lr": 2e-3, "seed": 0, **overrides}
    )
    result = finetune(record, data, settings, out_dir=out)
    n_train = len(data.split("train"))
    seconds = sum(n_train / e.images_per_second for e in result.epochs)
    return result, len(result.epochs) * n_train / seconds


def check_precision(data: ImageDataset, folder: Path) -> list[Row]:
    record = make_record("resnet18", SIZES["side"], folder)
    rows, base = [], None
    for precision, channels_last in (("fp32", False), ("bf16", False), ("bf16", True), ("fp16", True)):
        result, speed = run(record, data, folder / f"p-{precision}-{channels_last}", precision=precision,
                            channels_last=channels_last)  # fmt: skip
        loss = result.epochs[-1].train_loss
        base = result.accuracy if base is None else base
        ok = math.isfinite(loss) and result.accuracy >= base - 0.05 and result.device.startswith(DEVICE)
        rows.append(
            {
                "check": "precision",
                "case": f"{precision}{' channels-last' if channels_last else ''}",
                "ok": ok,
                "accuracy": round(result.accuracy, 4),
                "img_per_s": round(speed),
                "detail": f"final train loss {loss:.3f}; device {result.device}",
            }
        )
    return rows


def check_oom_retry(folder: Path) -> list[Row]:
    """Cap this process at a few GiB and ask for a 224-pixel batch that needs more."""
    n, batch = SIZES["oom_images"], SIZES["oom_batch"]
    record = make_record("resnet18", SIZES["oom_side"], folder)
    data = derive(load_dataset("fashion-mnist"), "subset", {"n": n}, name=f"fashion-{n}")
    plain, _ = run(record, data, folder / "oom-plain", epochs=1, batch_size=batch, precision="bf16")
    cap_gib = 6
    if DEVICE == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.set_per_process_memory_fraction(
            cap_gib * 2**30 / torch.cuda.get_device_properties(0).total_memory, 0
        )
    try:
        tight, _ = run(record, data, folder / "oom-tight", epochs=1, batch_size=batch, precision="bf16")
    finally:
        if DEVICE == "cuda":
            torch.cuda.set_per_process_memory_fraction(1.0, 0)
            torch.cuda.empty_cache()
    micro = tight.epochs[0].micro_batch
    loss, plain_loss = tight.epochs[0].train_loss, plain.epochs[0].train_loss
    ok = micro < batch and tight.finished and abs(loss - plain_loss) <= 0.05 * plain_loss
    return [
        {
            "check": "oom-retry",
            "case": f"batch {batch} at {SIZES['oom_side']} px under a {cap_gib} GiB cap",
            "ok": ok,
            "accuracy": round(tight.accuracy, 4),
            "img_per_s": None,
            "detail": f"micro-batch {micro}, train loss {loss:.4f} (uncapped: micro-batch "
            f"{plain.epochs[0].micro_batch}, loss {plain_loss:.4f}, accuracy {plain.accuracy:.4f})",
        }
    ]


def check_compile(data: ImageDataset, folder: Path) -> list[Row]:
    record = make_record("resnet18", SIZES["side"], folder)
    eager, eager_speed = run(record, data, folder / "c-eager", precision="bf16", channels_last=True)
    start = time.perf_counter()
    compiled, speed = run(
        record, data, folder / "c-compiled", precision="bf16", channels_last=True, compile=True
    )
    wall = time.perf_counter() - start
    ok = abs(compiled.accuracy - eager.accuracy) <= 0.05
    return [
        {
            "check": "compile",
            "case": "torch.compile, bf16 channels-last",
            "ok": ok,
            "accuracy": round(compiled.accuracy, 4),
            "img_per_s": round(speed),
            "detail": f"eager {eager.accuracy:.4f} at {eager_speed:,.0f} img/s; "
            f"compiled call {wall:.0f} s wall",
        }
    ]


def check_torchrun(folder: Path) -> list[Row]:
    """``torchrun --nproc_per_node=1 -m transfer.finetune.torchrun`` on a LadybugDB file holding digits and
    ccexam.usps: rank 0 plans and records, as ``kgraft finetune`` does (one GPU: no NCCL ring to build)."""
    uri = f"embedded:{folder / 'torchrun.lbug'}"
    with open_store(uri) as store:
        register_dataset(store, load_dataset("digits"))
        register_model(store, record_from_spec("ccexam:usps"))
    result_json = folder / "torchrun-result.json"
    command = [
        sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=1",
        "-m", "transfer.finetune.torchrun", "--store", uri, "--source", "ccexam.usps", "--target", "digits",
        "--settings", "fastai", "--epochs", str(SIZES["epochs"]), "--out", str(folder / "torchrun"),
        "--result-json", str(result_json),
    ]  # fmt: skip
    done = subprocess.run(command, capture_output=True, text=True, cwd=ROOT, timeout=300, check=False)
    summary = json.loads(result_json.read_text()) if result_json.is_file() else {}
    device = str(summary.get("device", ""))
    ok = done.returncode == 0 and summary.get("finished") and device.startswith(DEVICE)
    detail = f"exit {done.returncode}; device {summary.get('device')}"
    if not ok:
        detail += "; " + (done.stderr.strip().splitlines() or ["(no stderr)"])[-1][:200]
    rows = [
        {
            "check": "torchrun",
            "case": "1 process, ccexam.usps -> digits",
            "ok": bool(ok),
            "accuracy": summary.get("accuracy"),
            "img_per_s": None,
            "detail": detail,
        }
    ]
    gpus = torch.cuda.device_count() if DEVICE == "cuda" else 0
    if gpus:  # one process more than GPUs: one clear sentence, not a CUDA error from rank `gpus`
        command[command.index("--nproc_per_node=1")] = f"--nproc_per_node={gpus + 1}"
        done = subprocess.run(command, capture_output=True, text=True, cwd=ROOT, timeout=300, check=False)
        said = f"use --nproc_per_node={gpus} or fewer" in done.stderr
        rows.append(
            {
                "check": "torchrun",
                "case": f"{gpus + 1} processes on {gpus} GPU(s)",
                "ok": done.returncode != 0 and said,
                "accuracy": None,
                "img_per_s": None,
                "detail": f"exit {done.returncode}; refusal {'given' if said else 'MISSING'}",
            }
        )
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, help="also write the rows as JSON here")
    parser.add_argument("--only", default="precision,oom-retry,compile,torchrun")
    parser.add_argument(
        "--smoke", action="store_true", help="tiny sizes on the CPU: checks the script itself"
    )
    args = parser.parse_args()
    if args.smoke:
        global DEVICE
        DEVICE = "cpu"
        SIZES.update(images=240, side=32, epochs=1, oom_images=120, oom_batch=64, oom_side=32)
    elif not torch.cuda.is_available():
        print("gpu_check: no CUDA device here; run it on a machine with a GPU.", file=sys.stderr)
        return 2
    fashion = load_dataset("fashion-mnist")
    data = derive(fashion, "subset", {"n": SIZES["images"]}, name=f"fashion-{SIZES['images']}")
    rows: list[Row] = []
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        checks: dict[str, Callable[[], list[Row]]] = {
            "precision": lambda: check_precision(data, folder),
            "oom-retry": lambda: check_oom_retry(folder),
            "compile": lambda: check_compile(data, folder),
            "torchrun": lambda: check_torchrun(folder),
        }
        for name in args.only.split(","):
            start = time.perf_counter()
            try:
                rows += checks[name]()
            except Exception as err:  # a failing check is a row, and the others still run
                traceback.print_exc()
                rows.append({"check": name, "case": "-", "ok": False, "accuracy": None, "img_per_s": None,
                             "detail": f"{type(err).__name__}: {str(err)[:300]}"})  # fmt: skip
            print(f"  {name}: {time.perf_counter() - start:.0f} s", flush=True)
            if args.out:
                args.out.write_text(json.dumps(rows, indent=1))
    if DEVICE == "cuda":
        props = torch.cuda.get_device_properties(0)
        print(f"\nGPU: {props.name}, {props.total_memory / 2**30:.0f} GiB; torch {torch.__version__}; "
              f"CUDA {torch.version.cuda}; {os.cpu_count()} CPUs\n")  # fmt: skip
    print("| check | case | ok | accuracy | train img/s | detail |")
    print("|---|---|---|---|---|---|")
    for r in rows:
        speed = f"{r['img_per_s']:,}" if r["img_per_s"] else ""
        ok = "yes" if r["ok"] else "NO"
        print(f"| {r['check']} | {r['case']} | {ok} | {r['accuracy']} | {speed} | {r['detail']} |")
    return 0 if all(r["ok"] for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())

"""Resumable run state: one file per run folder, rewritten atomically after every epoch.

``checkpoint.pt`` holds what an uninterrupted run would still have in memory at an epoch boundary: the
model's state dict, the optimiser's and scheduler's state (for the stage they belong to), the GradScaler's,
every random generator (Python, NumPy, torch CPU and CUDA), the sampler position (epochs done; the data
order of an epoch depends only on the seed and the epoch number), the settings, a fingerprint of the
source model and target data, and the metrics so far. A run resumed from it finishes with the same
weights and metrics as an uninterrupted one with the same seed.

The file is written to a temporary name in the same folder, flushed to disk and renamed over the old one
(``os.replace`` is atomic), so a kill mid-write leaves the previous epoch's checkpoint intact. It is read
back with ``torch.load(weights_only=True)``: tensors and plain values only, never code.
"""

from __future__ import annotations

import os
import random
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import torch

from transfer.finetune.settings import FinetuneError, FinetuneSettings

CHECKPOINT_NAME = "checkpoint.pt"
FORMAT = "kgraft-finetune-checkpoint-v1"


def checkpoint_file(out_dir: str | Path) -> Path:
    """Where a run folder keeps its resumable state."""
    return Path(out_dir) / CHECKPOINT_NAME


def check_writable(out_dir: str | Path) -> Path:
    """Create ``out_dir`` if needed and prove a file can be written and renamed there; else ``FinetuneError``.

    Runs before any training, so a run never spends an hour and then fails to save.
    """
    folder = Path(out_dir).expanduser()
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=folder, prefix=".write-test-", delete=False) as f:
            f.write(b"ok")
            probe = Path(f.name)
        os.replace(probe, probe.with_name(probe.name + ".renamed"))
        probe.with_name(probe.name + ".renamed").unlink()
    except OSError as err:
        raise FinetuneError(
            f"cannot write checkpoints to {folder} ({err.strerror or err}); choose a writable out_dir."
        ) from err
    return folder


# ---------------------------------------------------------------- random generators


def rng_state() -> dict[str, Any]:
    """Every random generator's state, as tensors and plain values."""
    np_state = np.random.get_state(legacy=False)
    state: dict[str, Any] = {
        "python": random.getstate(),
        "numpy": {
            "bit_generator": np_state["bit_generator"],
            "key": torch.from_numpy(np_state["state"]["key"].astype(np.int64)),
            "pos": int(np_state["state"]["pos"]),
            "has_gauss": int(np_state["has_gauss"]),
            "gauss": float(np_state["gauss"]),
        },
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    """Restore what ``rng_state`` captured (CUDA generators only where CUDA is in use)."""
    random.setstate(_as_tuples(state["python"]))
    np_state = state["numpy"]
    np.random.set_state(
        {
            "bit_generator": np_state["bit_generator"],
            "state": {"key": np_state["key"].numpy().astype(np.uint32), "pos": np_state["pos"]},
            "has_gauss": np_state["has_gauss"],
            "gauss": np_state["gauss"],
        }
    )
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _as_tuples(value: Any) -> Any:
    """``random.setstate`` wants tuples all the way down."""
    if isinstance(value, list | tuple):
        return tuple(_as_tuples(v) for v in value)
    return value


# ---------------------------------------------------------------- the file


def save_state(path: str | Path, state: dict[str, Any]) -> Path:
    """Write ``state`` atomically (temporary file in the same folder, fsync, ``os.replace``)."""
    path = Path(path)
    fd, tmp_name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save({"format": FORMAT, **state}, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def load_state(path: str | Path) -> dict[str, Any]:
    """The state ``save_state`` wrote; ``FinetuneError`` when missing, unreadable or not ours."""
    path = Path(path)
    if not path.is_file():
        raise FinetuneError(f"there is no checkpoint to resume at {path}; run without resume first.")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # torch raises several types for truncated or foreign files
        raise FinetuneError(f"the checkpoint {path} cannot be read ({type(err).__name__}: {err}).") from err
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise FinetuneError(f"{path} is not a kgraft fine-tuning checkpoint.")
    return state


def check_resumable(state: dict[str, Any], settings: FinetuneSettings, fingerprint: dict[str, Any]) -> None:
    """``FinetuneError`` unless the checkpoint was made with the same settings, source and target."""
    saved = FinetuneSettings.from_dict(state["settings"])
    changed = saved.differences(settings)
    if changed:
        raise FinetuneError(
            f"cannot resume with different settings ({', '.join(changed)} changed); resume with the "
            "checkpoint's settings or start a new run in another folder."
        )
    mismatched = [k for k, v in fingerprint.items() if state["fingerprint"].get(k) != v]
    if mismatched:
        raise FinetuneError(
            f"cannot resume: the checkpoint belongs to another {' and '.join(mismatched)}; start a new run "
            "in another folder."
        )


__all__ = [
    "CHECKPOINT_NAME",
    "FORMAT",
    "check_resumable",
    "check_writable",
    "checkpoint_file",
    "load_state",
    "rng_state",
    "save_state",
    "set_rng_state",
]

"""Where and how a fine-tuning run computes: the device and the DDP process group (``torchrun``), the
numeric precision (AMP dtype, determinism), seeding, and the out-of-memory retry.

Under ``torchrun`` (``WORLD_SIZE`` > 1) ``start_runtime`` joins the process group (NCCL on CUDA, gloo on
CPU) and ``stop_runtime`` leaves it; ``process_group`` holds it for a whole command. ``all_sum``,
``barrier`` and ``broadcast`` are identities in one process. ``oom_retry`` halves the
micro-batch when a step runs out of device memory, keeping one optimiser step per loader batch.
"""

from __future__ import annotations

import contextlib
import logging
import os
import random
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import TypeVar

import numpy as np
import torch
import torch.distributed as dist

from transfer.finetune.settings import FinetuneError

log = logging.getLogger(__name__)
T = TypeVar("T")


@dataclass
class Runtime:
    """Where this process runs: device, DDP rank and world size, and the numeric precision."""

    device: torch.device
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    owns_process_group: bool = False
    amp_dtype: torch.dtype | None = None

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    def describe(self) -> str:
        where = str(self.device)
        if self.device.type == "cuda":
            where += f" ({torch.cuda.get_device_name(self.device)})"
        precision = {None: "fp32", torch.bfloat16: "bf16", torch.float16: "fp16"}[self.amp_dtype]
        ddp = f", DDP x{self.world_size}" if self.distributed else ""
        return f"{where}, {precision}{ddp}"


def start_runtime(precision: str) -> Runtime:
    """Pick the device and join the process group when launched by ``torchrun`` (``WORLD_SIZE`` > 1)."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if torch.cuda.is_available():
        gpus = torch.cuda.device_count()
        if local_rank >= gpus:  # NCCL cannot put two processes on one GPU
            raise FinetuneError(
                f"torchrun started process {local_rank + 1} on a machine with {gpus} GPU(s); "
                f"use --nproc_per_node={gpus} or fewer."
            )
        device = torch.device("cuda", local_rank)
        torch.cuda.set_device(device)
    else:
        device = torch.device("cpu")
    owns = False
    if world_size > 1 and not dist.is_initialized():
        dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
        owns = True
    if world_size > 1:
        rank, world_size = dist.get_rank(), dist.get_world_size()
    return Runtime(device, rank, world_size, local_rank, owns, amp_dtype(precision, device))


def stop_runtime(rt: Runtime) -> None:
    """Leave the process group when ``start_runtime`` joined it (a caller's own group stays)."""
    if rt.owns_process_group and dist.is_initialized():
        dist.destroy_process_group()


@contextlib.contextmanager
def process_group() -> Iterator[Runtime]:
    """The DDP process group for a whole command under ``torchrun`` (one process: nothing to join).

    The entry point holds it around planning and training, so rank 0 can ``broadcast`` what it planned
    before the run starts; ``finetune``'s own ``start_runtime`` then finds the group already joined and
    leaves it to this context. The runtime yielded says the rank; its precision is not the run's.
    """
    rt = start_runtime("fp32")
    try:
        yield rt
    finally:
        stop_runtime(rt)


def amp_dtype(precision: str, device: torch.device) -> torch.dtype | None:
    """The autocast dtype for ``precision`` on ``device`` (None = plain fp32).

    ``auto``: bf16 on GPUs that support it, else fp16 (with a GradScaler); fp32 on the CPU, where
    bf16 autocast is used only when asked for.
    """
    if precision == "fp32" or (precision == "auto" and device.type != "cuda"):
        return None
    if precision == "auto":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    if precision == "bf16" and device.type == "cuda" and not torch.cuda.is_bf16_supported():
        raise FinetuneError("this GPU does not support bf16; use precision 'fp16' or 'auto'.")
    return torch.bfloat16 if precision == "bf16" else torch.float16


@contextlib.contextmanager
def determinism(enabled: bool, device: torch.device) -> Iterator[None]:
    """Deterministic kernels when ``enabled`` (reproducible, slower on GPUs), else cuDNN autotuning;
    the previous global flags come back afterwards."""
    previous = (
        torch.are_deterministic_algorithms_enabled(),
        torch.is_deterministic_algorithms_warn_only_enabled(),
        torch.backends.cudnn.benchmark,
        torch.backends.cudnn.deterministic,
    )
    if enabled:
        if device.type == "cuda":
            os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.use_deterministic_algorithms(True, warn_only=True)
        torch.backends.cudnn.benchmark, torch.backends.cudnn.deterministic = False, True
    elif device.type == "cuda":
        torch.backends.cudnn.benchmark = True
    try:
        yield
    finally:
        if enabled:  # the call imports torch._inductor (seconds), so only when something changed
            torch.use_deterministic_algorithms(previous[0], warn_only=previous[1])
        torch.backends.cudnn.benchmark, torch.backends.cudnn.deterministic = previous[2], previous[3]


def autocast(rt: Runtime) -> contextlib.AbstractContextManager:
    """Autocast to the run's AMP dtype, or nothing in fp32."""
    if rt.amp_dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(rt.device.type, dtype=rt.amp_dtype)


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch (CPU and every GPU)."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def all_sum(values: Sequence[float], rt: Runtime) -> list[float]:
    """Sum ``values`` over the DDP processes (identity in one process)."""
    if not rt.distributed:
        return list(values)
    t = torch.tensor(values, dtype=torch.float64, device=rt.device)
    dist.all_reduce(t)
    return t.tolist()


def barrier(rt: Runtime) -> None:
    """Wait for every DDP process (nothing in one process)."""
    if rt.distributed:
        dist.barrier()


def broadcast(value: T, rt: Runtime) -> T:
    """Rank 0's ``value`` in every DDP process (``value`` itself in one process)."""
    if not rt.distributed:
        return value
    box = [value]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def is_oom(err: BaseException) -> bool:
    """Whether ``err`` is the device running out of memory."""
    return isinstance(err, torch.cuda.OutOfMemoryError) or (
        isinstance(err, RuntimeError) and "out of memory" in str(err).lower()
    )


def oom_retry(
    step: Callable[[int], T], micro_batch: int, allow: bool, on_halve: Callable[[int], None] | None = None
) -> tuple[T, int]:
    """Run ``step(micro_batch)``; on out-of-memory halve the micro-batch and run it again.

    The optimiser step stays one per loader batch (its micro-batches accumulate gradients), so halving
    changes neither the schedule nor the effective batch. Returns (result, micro-batch that fitted).
    Raises ``FinetuneError`` when retrying is not allowed or a single image does not fit.
    """
    while True:
        try:
            return step(micro_batch), micro_batch
        except (torch.cuda.OutOfMemoryError, RuntimeError) as err:
            if not is_oom(err):
                raise
            if not allow:
                raise FinetuneError(
                    f"the device ran out of memory at {micro_batch} images per step; lower batch_size or "
                    "set allow_oom_retry."
                ) from err
            if micro_batch == 1:
                raise FinetuneError("the device runs out of memory even with one image per step.") from err
            if torch.cuda.is_available():
                torch.cuda.empty_cache()
            micro_batch = max(1, micro_batch // 2)
            log.warning("out of memory: retrying with micro-batches of %d images", micro_batch)
            if on_halve is not None:
                on_halve(micro_batch)

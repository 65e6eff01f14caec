"""Features for probes: penultimate features, the source head's logits and the pooled output of every
layer group, for a seeded sample of a dataset, cached on disk.

Inputs are prepared exactly as for fine-tuning (``transfer.finetune.data.Preprocess``): the source
model's own mean/std, explicit channel adaptation, resizing to the model's input size.

Shapes: ``penultimate`` (n, d), ``logits`` (n, c_source), ``groups[g]`` (n, d_g) — convolutional maps
are global-average-pooled, token sequences averaged over tokens.
"""

from __future__ import annotations

import hashlib
import io
import json
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor, nn

from kg.files import atomic_write_bytes
from transfer.data.base import ImageDataset
from transfer.data.profile import checksum
from transfer.finetune.data import Preprocess
from transfer.zoo.record import ModelRecord

DEFAULT_CACHE = Path.home() / ".cache" / "kgraft" / "features"


@dataclass
class ProbeFeatures:
    """What a model makes of a dataset sample (see the module docstring for shapes)."""

    penultimate: Tensor
    logits: Tensor
    groups: list[Tensor]
    labels: Tensor
    indices: Tensor


def _pool(out: Tensor) -> Tensor:
    out = out.detach().float()
    if out.ndim == 4:
        return out.mean(dim=(2, 3))
    if out.ndim == 3:
        return out.mean(dim=1)
    return out.flatten(1)


def sample_indices(ds: ImageDataset, n: int, seed: int, split: str | None = "test") -> Tensor:
    """A seeded sample of ``n`` indices from ``split`` (the whole set when it has no such split)."""
    pool = torch.arange(len(ds))
    if split and split in ds.split_names:
        pool = pool[ds.splits == ds.split_names.index(split)]
    generator = torch.Generator().manual_seed(seed)
    order = torch.randperm(len(pool), generator=generator)
    return pool[order[: min(n, len(pool))]].sort().values


def cache_key(record: ModelRecord, ds: ImageDataset, indices: Tensor) -> str:
    """Model checksum, dataset checksum and the exact sample: a changed model or sample misses."""
    parts = {
        "model": record.checksum or record.id,
        "dataset": checksum(ds),
        "sample": hashlib.sha256(indices.numpy().tobytes()).hexdigest(),
        "input": list(record.input_size),
    }
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()[:32]


@torch.inference_mode()
def _forward(model: nn.Module, record: ModelRecord, images: Tensor, batch_size: int, device: torch.device):
    groups = record.layer_groups[:-1]  # the head's group is read as logits
    outputs: list[list[Tensor]] = [[] for _ in groups]
    current: dict[int, Tensor] = {}
    head_inputs: list[Tensor] = []
    hooks = []
    for g, prefixes in enumerate(groups):
        for prefix in prefixes:
            module = model.get_submodule(prefix)
            hooks.append(module.register_forward_hook(lambda _m, _i, out, g=g: current.__setitem__(g, out)))
    head = model.get_submodule(record.head)
    hooks.append(
        head.register_forward_pre_hook(lambda _m, args: head_inputs.append(args[0].flatten(1).float()))
    )
    prep = Preprocess(record, images.shape[1]).to(device)
    logits = []
    try:
        for start in range(0, len(images), batch_size):
            x = prep(images[start : start + batch_size].to(device), record.input_size[1:])
            current.clear()
            logits.append(model(x).float().cpu())
            for g in range(len(groups)):
                outputs[g].append(_pool(current[g]).cpu())  # the group's last module to run
    finally:
        for h in hooks:
            h.remove()
    return torch.cat(head_inputs).cpu(), torch.cat(logits), [torch.cat(o) for o in outputs]


def extract_features(
    model: nn.Module,
    record: ModelRecord,
    ds: ImageDataset,
    *,
    n: int = 1000,
    seed: int = 0,
    split: str | None = "test",
    batch_size: int = 256,
    device: torch.device | str | None = None,
    cache_dir: Path | None = DEFAULT_CACHE,
    indices: Tensor | None = None,
) -> tuple[ProbeFeatures, bool]:
    """Features of a seeded sample of ``ds`` (or of the given ``indices``) under ``model``; returns
    (features, came_from_cache)."""
    indices = sample_indices(ds, n, seed, split) if indices is None else indices
    path = None
    if cache_dir is not None:
        path = Path(cache_dir) / f"{cache_key(record, ds, indices)}.pt"
        if path.is_file():
            saved = torch.load(path, weights_only=True)
            return ProbeFeatures(
                saved["penultimate"],
                saved["logits"],
                list(saved["groups"]),
                saved["labels"],
                saved["indices"],
            ), True
    device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    model = model.to(device).eval()
    penultimate, logits, groups = _forward(model, record, ds.images[indices], batch_size, device)
    feats = ProbeFeatures(penultimate, logits, groups, ds.labels[indices].clone(), indices)
    if path is not None:
        buffer = io.BytesIO()
        torch.save(
            {
                "penultimate": penultimate,
                "logits": logits,
                "groups": groups,
                "labels": feats.labels,
                "indices": indices,
            },
            buffer,
        )
        atomic_write_bytes(path, buffer.getvalue())
    return feats, False

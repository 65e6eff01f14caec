"""Summary statistics and a content checksum of an ``ImageDataset``: the properties its graph node carries."""

from __future__ import annotations

import hashlib
import json
from typing import Any

import numpy as np
import torch

from transfer.data.base import ImageDataset

_CHUNK_IMAGES = 4096  # images per step when hashing: keeps memory flat for non-contiguous tensors


def profile_dataset(ds: ImageDataset) -> dict[str, Any]:
    """Sizes, class balance, per-channel pixel statistics and checksum of ``ds``.

    Keys: ``n_samples``, ``split_counts``, ``n_classes``, ``class_counts`` (all splits), ``imbalance``
    (largest class count / max(smallest, 1)), ``image_size`` [H, W], ``channels``, ``mean`` and ``std``
    (per channel, pixels scaled to [0, 1], population std), ``checksum`` (see ``checksum``), ``modality``.
    """
    class_counts = torch.bincount(ds.labels, minlength=ds.num_classes).tolist()
    split_counts = torch.bincount(ds.splits, minlength=len(ds.split_names)).tolist()
    mean, std = pixel_stats(ds.images)
    return {
        "n_samples": len(ds),
        "split_counts": dict(zip(ds.split_names, split_counts, strict=True)),
        "n_classes": ds.num_classes,
        "class_counts": dict(zip(ds.class_names, class_counts, strict=True)),
        "imbalance": float(max(class_counts, default=1)) / max(min(class_counts, default=1), 1),
        "image_size": list(ds.image_size),
        "channels": ds.channels,
        "mean": mean,
        "std": std,
        "checksum": checksum(ds),
        "modality": ds.modality,
    }


def pixel_stats(images: torch.Tensor) -> tuple[list[float], list[float]]:
    """Per-channel mean and population std of uint8 images (N, C, H, W), on the [0, 1] scale.

    Exact: a 256-bin histogram per channel gives integer sums, so no float error accumulates.
    """
    means, stds = [], []
    values = np.arange(256, dtype=np.int64)
    for c in range(images.shape[1]):
        hist = torch.bincount(images[:, c].reshape(-1), minlength=256).numpy().astype(np.int64)
        n = int(hist.sum())
        if n == 0:
            means.append(0.0)
            stds.append(0.0)
            continue
        s1, s2 = int(hist @ values), int(hist @ (values * values))
        means.append(s1 / n / 255.0)
        stds.append(float(np.sqrt((n * s2 - s1 * s1) / (n * n))) / 255.0)
    return means, stds


def checksum(ds: ImageDataset) -> str:
    """SHA-256 hex of a canonical byte stream of the content, independent of name, source and domain.

    Stream: a JSON header (format version, image shape, class names, split names), then the uint8
    pixels in (N, C, H, W) order, the labels and the split codes as little-endian int64.
    """
    digest = hashlib.sha256()
    header = {
        "format": "kgraft-imagedataset-v1",
        "shape": list(ds.images.shape),
        "class_names": ds.class_names,
        "split_names": list(ds.split_names),
    }
    digest.update(json.dumps(header, sort_keys=True, ensure_ascii=False).encode() + b"\n")
    for start in range(0, len(ds), _CHUNK_IMAGES):
        chunk = ds.images[start : start + _CHUNK_IMAGES].contiguous()
        digest.update(chunk.numpy().data)
    for codes in (ds.labels, ds.splits):
        digest.update(codes.numpy().astype("<i8", copy=False).tobytes())
    return digest.hexdigest()

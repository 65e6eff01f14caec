"""Target data for fine-tuning: splits, channel adaptation, resizing, normalisation, loaders, class weights.

Images stay uint8 (N, C, H, W) in memory and travel to the device as uint8; ``Preprocess`` turns a batch
into what the source model expects on the device itself: float in [0, 1] -> channels adapted (grayscale
repeated to 3 channels, RGB to 1 by ITU-R 601 luminance) -> resized to the training size with the
model's interpolation -> normalised with the SOURCE model's mean and std (never the target's: the
pretrained weights were fitted to those statistics). No augmentation, so a batch's pixels are a pure
function of its indices (which is what makes cached frozen features exact).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import BatchSampler, DataLoader, Dataset, DistributedSampler

from transfer.data import ImageDataset
from transfer.finetune.settings import FinetuneError
from transfer.zoo import ModelRecord, architecture_family

log = logging.getLogger(__name__)

LUMINANCE = (0.299, 0.587, 0.114)  # ITU-R 601-2, as PIL's convert("L")
_MODES = {
    "nearest": "nearest",
    "nearest-exact": "nearest-exact",
    "bilinear": "bilinear",
    "bicubic": "bicubic",
    "area": "area",
    "lanczos": "bicubic",
}
# Families whose classifier or position embeddings fix the input size; others pool globally.
_FIXED_SIZE_FAMILIES = ("ccexam", "vit")
_MIN_SIDE = {"smallcnn": 1, "resnet": 32, "mobilenet_v3": 32, "efficientnet": 32, "convnext": 32}
EVAL_SPLITS = ("val", "valid", "validation")
TEST_SPLITS = ("test",)


# ---------------------------------------------------------------- channels and sizes


def channel_adaptation(from_channels: int, to_channels: int) -> str | None:
    """How images with ``from_channels`` become ``to_channels``: a short description, None when equal.

    Raises ``FinetuneError`` for combinations without an obvious, lossless-enough rule.
    """
    if from_channels == to_channels:
        return None
    if from_channels == 1 and to_channels == 3:
        return "grayscale to RGB by repeating the channel 3 times"
    if from_channels == 3 and to_channels == 1:
        return "RGB to grayscale by ITU-R 601 luminance (0.299 R + 0.587 G + 0.114 B)"
    raise FinetuneError(
        f"the target has {from_channels}-channel images but the model takes {to_channels}; kgraft adapts "
        "only 1 <-> 3 channels."
    )


def adapt_channels(x: torch.Tensor, to_channels: int) -> torch.Tensor:
    """(N, C, H, W) float -> (N, to_channels, H, W) by ``channel_adaptation``'s rule."""
    c = x.shape[1]
    if c == to_channels:
        return x
    if c == 1 and to_channels == 3:
        return x.expand(-1, 3, -1, -1)
    if c == 3 and to_channels == 1:
        weights = torch.tensor(LUMINANCE, dtype=x.dtype, device=x.device).view(1, 3, 1, 1)
        return (x * weights).sum(dim=1, keepdim=True)
    channel_adaptation(c, to_channels)  # raises
    return x


Size = tuple[int, int]


@dataclass(frozen=True)
class SizeLimits:
    """The input sizes a model accepts: ``fixed`` (H, W) when its architecture pins one, else sides of at
    least ``minimum`` pixels."""

    minimum: int
    fixed: Size | None = None

    def check(self, size: Size, what: str, model: str) -> None:
        """``FinetuneError`` when ``size`` (H, W) is not allowed."""
        if self.fixed is not None and tuple(size) != tuple(self.fixed):
            raise FinetuneError(
                f"{what} {size[0]}x{size[1]} does not fit {model}, which takes only "
                f"{self.fixed[0]}x{self.fixed[1]} inputs."
            )
        if min(size) < self.minimum:
            raise FinetuneError(
                f"{what} {size[0]}x{size[1]} is below the {self.minimum}-pixel minimum side of {model}."
            )


def size_limits(record: ModelRecord) -> SizeLimits:
    """What input sizes ``record``'s architecture takes (an adapter over the zoo's family names)."""
    family = architecture_family(record.architecture)
    _, height, width = record.input_size
    if family in _FIXED_SIZE_FAMILIES:
        return SizeLimits(min(height, width), (height, width))
    return SizeLimits(_MIN_SIDE.get(family, 32))


class Preprocess(nn.Module):
    """uint8 (N, C_data, H, W) -> normalised float (N, C_model, S, S) on the batch's device.

    Normalisation statistics are the source model's (``record.mean``/``record.std``), as buffers so the
    module moves with ``.to(device)``.
    """

    def __init__(self, record: ModelRecord, data_channels: int, channels_last: bool = False) -> None:
        super().__init__()
        self.channels = record.in_channels
        self.data_channels = data_channels
        self.mode = _MODES[record.interpolation]
        self.channels_last = channels_last
        self.register_buffer("mean", torch.tensor(record.mean).view(1, -1, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(record.std).view(1, -1, 1, 1), persistent=False)
        channel_adaptation(data_channels, self.channels)  # refuse early

    def forward(self, images: torch.Tensor, size: Size) -> torch.Tensor:
        size = tuple(size)
        x = images.to(torch.float32) / 255.0
        x = adapt_channels(x, self.channels)
        if tuple(x.shape[-2:]) != size:
            smaller = size[0] < x.shape[-2] or size[1] < x.shape[-1]
            antialias = smaller and self.mode in ("bilinear", "bicubic")
            align = False if self.mode in ("bilinear", "bicubic") else None
            x = F.interpolate(x, size=size, mode=self.mode, align_corners=align, antialias=antialias)
        x = (x - self.mean) / self.std
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        return x


# ---------------------------------------------------------------- splits


@dataclass
class TargetSplits:
    """The target's train split, the split evaluated after each epoch, and the test split."""

    train: ImageDataset
    eval: ImageDataset
    test: ImageDataset
    eval_name: str
    test_name: str


def target_splits(target: ImageDataset) -> TargetSplits:
    """Train on ``train``; evaluate each epoch on a validation split if there is one, else on ``test``."""
    names = target.split_names
    if "train" not in names:
        raise FinetuneError(f"the target {target.name} needs a 'train' split; it has {list(names)}.")
    test_name = next((n for n in TEST_SPLITS if n in names), None)
    eval_name = next((n for n in EVAL_SPLITS if n in names), test_name)
    test_name = test_name or eval_name
    if test_name is None:
        raise FinetuneError(
            f"the target {target.name} needs a 'test' (or 'val') split to measure accuracy; it has "
            f"{list(names)}."
        )
    train = target.split("train")
    if len(train) == 0:
        raise FinetuneError(f"the train split of {target.name} is empty.")
    test = target.split(test_name)
    if len(test) == 0:
        raise FinetuneError(f"the {test_name} split of {target.name} is empty.")
    return TargetSplits(train, target.split(eval_name), test, eval_name, test_name)


# ---------------------------------------------------------------- loaders


class BatchTensors(Dataset):
    """Tensors indexed a whole batch at a time: ``ds[[i, j, ...]]`` -> (tensor[idx] for each tensor).

    One gather per batch instead of one Python call per image; the loader's sampler yields index lists.
    """

    def __init__(self, *tensors: torch.Tensor) -> None:
        self.tensors = tensors

    def __len__(self) -> int:
        return int(self.tensors[0].shape[0])

    def __getitem__(self, indices: list[int]) -> tuple[torch.Tensor, ...]:
        index = torch.as_tensor(indices, dtype=torch.int64)
        return tuple(t[index] for t in self.tensors)


def train_loader(
    tensors: Sequence[torch.Tensor],
    batch_size: int,
    seed: int,
    *,
    rank: int = 0,
    world_size: int = 1,
    num_workers: int = 0,
    pin_memory: bool = False,
) -> tuple[DataLoader, DistributedSampler]:
    """A loader over ``tensors`` whose order depends only on (seed, epoch): call ``sampler.set_epoch``.

    The same ``DistributedSampler`` serves one process (1 replica) and DDP, so a resumed run sees the
    same batches as an uninterrupted one and the process count changes only the sharding.
    """
    dataset = BatchTensors(*tensors)
    sampler = DistributedSampler(dataset, num_replicas=world_size, rank=rank, shuffle=True, seed=seed)
    loader = DataLoader(
        dataset,
        sampler=BatchSampler(sampler, batch_size, drop_last=False),
        batch_size=None,
        num_workers=num_workers,
        pin_memory=pin_memory,
        persistent_workers=num_workers > 0,
    )
    return loader, sampler


def eval_batches(n: int, batch_size: int, rank: int = 0, world_size: int = 1) -> Iterator[slice]:
    """Contiguous slices of this rank's share of ``n`` items (no padding, so counts add up exactly)."""
    per_rank = math.ceil(n / world_size)
    start, stop = rank * per_rank, min(n, (rank + 1) * per_rank)
    for i in range(start, stop, batch_size):
        yield slice(i, min(stop, i + batch_size))


# ---------------------------------------------------------------- class-balanced loss


def class_weights(labels: torch.Tensor, num_classes: int, beta: float = 0.0) -> torch.Tensor:
    """Per-class loss weights (num_classes,) from the train labels, averaging 1 over the samples.

    ``beta == 0``: inverse frequency, w_c ∝ 1 / n_c. ``0 < beta < 1``: effective number of samples
    (Cui et al., CVPR 2019), w_c ∝ (1 - beta) / (1 - beta ** n_c). Classes without samples get 0.
    """
    counts = torch.bincount(labels.to(torch.int64), minlength=num_classes).to(torch.float64)
    present = counts > 0
    raw = torch.zeros(num_classes, dtype=torch.float64)
    if beta == 0:
        raw[present] = 1.0 / counts[present]
    else:
        raw[present] = (1.0 - beta) / (
            1.0 - torch.pow(torch.tensor(beta, dtype=torch.float64), counts[present])
        )
    # Scale so the mean weight over the training samples is 1: the loss keeps its usual magnitude.
    raw *= counts.sum() / (raw * counts).sum()
    return raw.to(torch.float32)


# ---------------------------------------------------------------- datasets as files (for torchrun)


def save_dataset_file(ds: ImageDataset, path: str | Path) -> Path:
    """Write ``ds`` as one torch file of tensors and plain values (readable with ``weights_only=True``)."""
    path = Path(path)
    payload: dict[str, Any] = {
        "format": "kgraft-imagedataset-v1",
        "images": ds.images,
        "labels": ds.labels,
        "splits": ds.splits,
        "split_names": list(ds.split_names),
        "class_names": list(ds.class_names),
        "name": ds.name,
        "source": ds.source,
        "domain": ds.domain,
    }
    tmp = path.with_name(f".{path.name}.tmp")
    torch.save(payload, tmp)
    tmp.replace(path)
    return path


def load_dataset_file(path: str | Path) -> ImageDataset:
    """The dataset written by ``save_dataset_file``."""
    payload = torch.load(Path(path), map_location="cpu", weights_only=True)
    if not isinstance(payload, dict) or payload.get("format") != "kgraft-imagedataset-v1":
        raise FinetuneError(f"{path} is not a dataset file written by kgraft.")
    return ImageDataset(
        images=payload["images"],
        labels=payload["labels"],
        splits=payload["splits"],
        split_names=tuple(payload["split_names"]),
        class_names=payload["class_names"],
        name=payload["name"],
        source=payload["source"],
        domain=payload["domain"],
    )


__all__ = [
    "LUMINANCE",
    "BatchTensors",
    "Preprocess",
    "Size",
    "SizeLimits",
    "TargetSplits",
    "adapt_channels",
    "channel_adaptation",
    "class_weights",
    "eval_batches",
    "load_dataset_file",
    "save_dataset_file",
    "size_limits",
    "target_splits",
    "train_loader",
]

"""A real transfer small enough for a few CPU seconds, shared by the tracking and integration tests.

Source: the ccexam MNIST CNN (real pretrained weights, 28x28 grey). Target: sklearn digits (8x8,
bundled), 300 training images and the 359 test images, resized and normalised on the source's terms.
Only the head's last layer trains, so a run takes a second or two and clearly beats chance.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import TensorDataset

from transfer.data import ImageDataset, load_dataset
from transfer.zoo import ModelRecord, ccexam_records, load_model

TRAIN_SIZE = 300


def source_record() -> ModelRecord:
    """The ccexam MNIST CNN's record."""
    return next(r for r in ccexam_records() if r.id == "ccexam.mnist")


def target_dataset() -> ImageDataset:
    """sklearn digits with ``TRAIN_SIZE`` training images and the whole test split."""
    ds = load_dataset("digits")
    train = torch.nonzero(ds.split_mask("train")).flatten()[:TRAIN_SIZE]
    test = torch.nonzero(~ds.split_mask("train")).flatten()
    out = ds.subset(torch.cat([train, test]))
    out.name = f"digits-{TRAIN_SIZE}"
    return out


def tensors(ds: ImageDataset, record: ModelRecord, split: str) -> TensorDataset:
    """One split as (images, labels), resized to the source's input and normalised with its statistics."""
    mask = ds.split_mask(split)
    x = ds.images[mask].float() / 255.0
    x = F.interpolate(x, size=record.input_size[1:], mode="bilinear", align_corners=False)
    x = (x - record.mean[0]) / record.std[0]
    return TensorDataset(x, ds.labels[mask])


def source_model(record: ModelRecord) -> nn.Module:
    """The pretrained source with every layer but the head frozen (the head is kept: same 10 digits)."""
    model = load_model(record)
    for name, p in model.named_parameters():
        p.requires_grad = name.startswith(record.head)
    return model


def accuracy(model: nn.Module, data: TensorDataset) -> float:
    """Top-1 accuracy of ``model`` on ``data``."""
    model.eval()
    with torch.no_grad():
        x, y = data.tensors
        return float((model(x).argmax(1) == y).float().mean())

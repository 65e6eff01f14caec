"""The one in-memory container every loader returns and every probe reads.

Shapes: ``images`` uint8 (N, C, H, W); ``labels`` int64 (N,) indexing ``class_names``;
``splits`` int64 (N,) indexing ``split_names``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from kg.errors import UserError


class DataError(UserError, ValueError):
    """A dataset cannot be found, read or transformed as asked; the message is one sentence for the user."""


Indices = Sequence[int] | np.ndarray | torch.Tensor


@dataclass
class ImageDataset:
    """An image classification dataset held in memory, with its splits, class names and origin.

    ``skipped`` counts source files that could not be read (only image folders skip files);
    ``derivation`` is ``{"how", "params", "seed"}`` when the dataset came from ``derive``.
    """

    images: torch.Tensor
    labels: torch.Tensor
    splits: torch.Tensor
    split_names: tuple[str, ...]
    class_names: list[str]
    name: str
    source: str
    domain: str | None = None
    modality: str = "image"
    skipped: int = 0
    derivation: dict[str, Any] | None = field(default=None)

    def __post_init__(self) -> None:
        if isinstance(self.splits, np.ndarray):
            self.splits = torch.from_numpy(np.ascontiguousarray(self.splits))
        self.splits = self.splits.to(torch.int64)
        self.labels = self.labels.to(torch.int64)
        self.split_names = tuple(self.split_names)
        self.class_names = list(self.class_names)
        self._validate()

    def _validate(self) -> None:
        n = self.images.shape[0] if self.images.dim() == 4 else -1
        if self.images.dtype != torch.uint8 or self.images.dim() != 4:
            raise DataError(f"dataset {self.name} needs uint8 images of shape (N, C, H, W).")
        if self.labels.shape != (n,) or self.splits.shape != (n,):
            raise DataError(f"dataset {self.name} needs one label and one split code per image.")
        if len(set(self.class_names)) != len(self.class_names):
            raise DataError(f"dataset {self.name} has duplicate class names.")
        if len(set(self.split_names)) != len(self.split_names):
            raise DataError(f"dataset {self.name} has duplicate split names.")
        if n and (self.labels.min() < 0 or self.labels.max() >= len(self.class_names)):
            raise DataError(f"dataset {self.name} has labels outside its {len(self.class_names)} classes.")
        if n and (self.splits.min() < 0 or self.splits.max() >= len(self.split_names)):
            raise DataError(f"dataset {self.name} has split codes outside {self.split_names}.")

    def __len__(self) -> int:
        return int(self.images.shape[0])

    @property
    def num_classes(self) -> int:
        """Number of classes (some may have no samples)."""
        return len(self.class_names)

    @property
    def image_size(self) -> tuple[int, int]:
        """Image height and width in pixels."""
        return int(self.images.shape[2]), int(self.images.shape[3])

    @property
    def channels(self) -> int:
        """Channels per image: 1 for grayscale, 3 for RGB."""
        return int(self.images.shape[1])

    def split_mask(self, name: str) -> torch.Tensor:
        """Boolean mask (N,) of the samples in split ``name``."""
        if name not in self.split_names:
            raise DataError(
                f"dataset {self.name} has no split {name!r}; its splits are {list(self.split_names)}."
            )
        return self.splits == self.split_names.index(name)

    def split(self, name: str) -> ImageDataset:
        """The samples of one split, as a dataset that keeps the same split names and classes."""
        return self.subset(self.split_mask(name))

    def subset(self, indices: Indices) -> ImageDataset:
        """A copy holding only ``indices`` (integer positions or a boolean mask), in that order."""
        index = torch.as_tensor(np.asarray(indices) if not isinstance(indices, torch.Tensor) else indices)
        if index.dtype != torch.bool:
            index = index.to(torch.int64)
        return replace(self, images=self.images[index], labels=self.labels[index], splits=self.splits[index])

    def as_torch(
        self, split: str | None = None, transform: Callable[[torch.Tensor], torch.Tensor] | None = None
    ) -> TorchImageDataset:
        """A ``torch.utils.data.Dataset`` of (float image in [0, 1] of shape (C, H, W), int label)."""
        data = self if split is None else self.split(split)
        return TorchImageDataset(data.images, data.labels, transform)


class TorchImageDataset(Dataset):
    """Adapter that serves uint8 images as float tensors in [0, 1], optionally transformed."""

    def __init__(
        self,
        images: torch.Tensor,
        labels: torch.Tensor,
        transform: Callable[[torch.Tensor], torch.Tensor] | None = None,
    ) -> None:
        self.images = images
        self.labels = labels
        self.transform = transform

    def __len__(self) -> int:
        return int(self.images.shape[0])

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        image = self.images[i].to(torch.float32).div_(255.0)
        if self.transform is not None:
            image = self.transform(image)
        return image, int(self.labels[i])

"""Real image datasets behind one small interface: load, profile, derive.

``load_dataset(spec)`` returns an in-memory ``ImageDataset``; ``profile_dataset`` gives the properties a
graph node carries; ``derive`` makes a recorded, deterministic variant. Nothing here touches the graph.
"""

from transfer.data.base import DataError, ImageDataset, TorchImageDataset
from transfer.data.derive import derive, describe_bias
from transfer.data.profile import checksum, pixel_stats, profile_dataset
from transfer.data.sources import (
    BUILTIN_LOADERS,
    load_animal_mnist,
    load_dataset,
    load_digits,
    load_fashion_mnist,
    load_idx_folder,
    load_image_folder,
    load_torchvision,
    read_idx,
    stratified_split,
)

__all__ = [
    "BUILTIN_LOADERS",
    "DataError",
    "ImageDataset",
    "TorchImageDataset",
    "checksum",
    "derive",
    "describe_bias",
    "load_animal_mnist",
    "load_dataset",
    "load_digits",
    "load_fashion_mnist",
    "load_idx_folder",
    "load_image_folder",
    "load_torchvision",
    "pixel_stats",
    "profile_dataset",
    "read_idx",
    "stratified_split",
]

"""Loaders for real datasets on local disk, and ``load_dataset(spec)`` that picks one.

Specs: a builtin name (``fashion-mnist``, ``digits``, ``animal-mnist``), ``idx:DIR``, ``imagefolder:DIR``,
``torchvision:NAME[:ROOT]``, or a directory path. Nothing here downloads: every loader reads what is
already installed and says in one sentence what to install when it is missing.
"""

from __future__ import annotations

import gzip
import importlib.resources
import importlib.util
import inspect
import os
import pickle
from collections import Counter
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import ClassVar

import numpy as np
import torch
from PIL import Image

from transfer.data.base import DataError, ImageDataset
from transfer.data.croissant import fetch_croissant

# Debian's dataset-fashion-mnist; KGRAFT_FASHION_MNIST_DIR points elsewhere (a copy on a machine without it).
FASHION_MNIST_DIR = Path(os.environ.get("KGRAFT_FASHION_MNIST_DIR", "/usr/share/datasets/fashion-mnist"))
FASHION_MNIST_CLASSES = [
    "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
]  # fmt: skip
# Order checked against the pictures: label i is the i-th name of the package README's alphabetical list.
ANIMAL_MNIST_CLASSES = ["Bear", "Bird", "Cat", "Cow", "Dog", "Elephant", "Giraffe", "Horse", "Sheep", "Zebra"]
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".pgm", ".tif", ".tiff", ".webp", ".gif")
SPLIT_FOLDERS = ("train", "val", "valid", "validation", "test")
TRAIN_TEST = ("train", "test")

# IDX type code -> big-endian numpy dtype (http://yann.lecun.com/exdb/mnist/, "THE IDX FILE FORMAT").
_IDX_DTYPES = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


# ---------------------------------------------------------------- IDX (MNIST format)


def read_idx(path: str | Path) -> np.ndarray:
    """Parse one IDX file (gzipped or plain) into a native-endian array of the shape its header gives."""
    path = Path(path)
    try:
        raw = path.read_bytes()
        if raw[:2] == b"\x1f\x8b":
            raw = gzip.decompress(raw)
    except (OSError, EOFError) as err:
        raise DataError(f"cannot read IDX file {path}: {err}.") from err
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] not in _IDX_DTYPES or raw[3] == 0:
        raise DataError(
            f"{path} is not an IDX file: its magic number 0x{raw[:4].hex()} is not 0x0000, a type code and a "
            "dimension count."
        )
    dtype, ndim = np.dtype(_IDX_DTYPES[raw[2]]), raw[3]
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise DataError(f"IDX file {path} ends inside its header.")
    dims = tuple(int(d) for d in np.frombuffer(raw, dtype=">u4", count=ndim, offset=4))
    expected = int(np.prod(dims, dtype=np.int64)) * dtype.itemsize
    if len(raw) - header != expected:
        got = len(raw) - header
        raise DataError(
            f"IDX file {path} holds {got} data bytes but its header {dims} needs {expected} bytes."
        )
    return np.frombuffer(raw, dtype=dtype, offset=header).reshape(dims).astype(dtype.newbyteorder("="))


def _find_idx(folder: Path, split: str, kind: str) -> Path | None:
    """The IDX file of one split (``train`` or ``t10k``/``test``) and kind (``images``/``labels``), if any."""
    stems = {"train": ["train"], "test": ["t10k", "test"]}[split]
    ndim = 3 if kind == "images" else 1
    for stem in stems:
        for candidate in sorted(folder.glob(f"*{stem}-{kind}[-.]idx{ndim}-ubyte*")):
            if candidate.name.endswith(("ubyte", "ubyte.gz")):
                return candidate
    return None


def load_idx_folder(
    folder: str | Path,
    class_names: list[str] | None = None,
    name: str | None = None,
    domain: str | None = None,
) -> ImageDataset:
    """Load an MNIST-format folder (``train-images-idx3-ubyte[.gz]``, ``t10k-...``) as train/test splits.

    Class names come from ``class_names``, else a ``classes.txt`` in the folder (one per line), else
    ``"0"``, ``"1"``, ... for as many classes as the labels need (at least ten).
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise DataError(f"{folder} is not a directory of IDX files.")
    images, labels, codes = [], [], []
    for code, split in enumerate(TRAIN_TEST):
        image_file, label_file = _find_idx(folder, split, "images"), _find_idx(folder, split, "labels")
        if image_file is None or label_file is None:
            continue
        x, y = read_idx(image_file), read_idx(label_file)
        if x.ndim != 3 or y.ndim != 1 or x.shape[0] != y.shape[0]:
            raise DataError(
                f"{image_file} {x.shape} and {label_file} {y.shape} are not matching images and labels."
            )
        images.append(x.astype(np.uint8, copy=False)[:, None])
        labels.append(y.astype(np.int64))
        codes.append(np.full(len(y), code, dtype=np.int64))
    if not images:
        raise DataError(f"no train-/t10k- IDX image and label files found under {folder}.")
    y = np.concatenate(labels)
    if class_names is None:
        classes_file = folder / "classes.txt"
        if classes_file.is_file():
            class_names = [line.strip() for line in classes_file.read_text().splitlines() if line.strip()]
        else:
            class_names = [str(i) for i in range(max(10, int(y.max(initial=-1)) + 1))]
    return ImageDataset(
        images=torch.from_numpy(np.concatenate(images)),
        labels=torch.from_numpy(y),
        splits=np.concatenate(codes),
        split_names=TRAIN_TEST,
        class_names=class_names,
        name=name or folder.name,
        source=str(folder.resolve()),
        domain=domain,
    )


def load_fashion_mnist(folder: str | Path = FASHION_MNIST_DIR) -> ImageDataset:
    """Fashion-MNIST (Zalando): 60,000 train + 10,000 test 28x28 grayscale product photos, 10 classes."""
    if not Path(folder).is_dir():
        raise DataError(
            f"Fashion-MNIST is not under {folder}; install it with `apt-get install dataset-fashion-mnist` "
            "or set KGRAFT_FASHION_MNIST_DIR to a folder of its IDX files."
        )
    return load_idx_folder(folder, FASHION_MNIST_CLASSES, name="fashion-mnist", domain="fashion-products")


# ---------------------------------------------------------------- packaged datasets


def stratified_split(labels: np.ndarray, test_fraction: float = 0.2, seed: int = 0) -> np.ndarray:
    """Split codes (0 = train, 1 = test) that put ``round(count * test_fraction)`` of each class in test."""
    rng = np.random.default_rng(seed)
    codes = np.zeros(len(labels), dtype=np.int64)
    for label in np.unique(labels):
        members = rng.permutation(np.flatnonzero(labels == label))
        codes[members[: round(len(members) * test_fraction)]] = 1
    return codes


def load_digits() -> ImageDataset:
    """scikit-learn's bundled UCI digits: 1,797 8x8 images, values 0..16 scaled to round(v * 255 / 16).

    It ships no split, so a fixed stratified 80/20 train/test split (seed 0) is made.
    """
    from sklearn.datasets import load_digits as sklearn_digits

    bunch = sklearn_digits()
    # np.rint rounds the one tie (v = 8 -> 127.5) to even, i.e. 128, as Python's round does.
    pixels = np.rint(bunch.images * (255.0 / 16.0)).astype(np.uint8)
    target = bunch.target.astype(np.int64)
    return ImageDataset(
        images=torch.from_numpy(pixels[:, None].copy()),
        labels=torch.from_numpy(target),
        splits=stratified_split(target),
        split_names=TRAIN_TEST,
        class_names=[str(int(c)) for c in bunch.target_names],
        name="digits",
        source="sklearn.datasets.load_digits",
        domain="handwriting",
    )


class _ArrayUnpickler(pickle.Unpickler):
    """Unpickler that rebuilds numpy arrays and nothing else, so package data cannot run code."""

    _ALLOWED: ClassVar[set[tuple[str, str]]] = {
        ("numpy.core.multiarray", "_reconstruct"),
        ("numpy._core.multiarray", "_reconstruct"),
        ("numpy", "ndarray"),
        ("numpy", "dtype"),
    }

    def find_class(self, module: str, name: str) -> object:
        if (module, name) not in self._ALLOWED:
            raise pickle.UnpicklingError(f"{module}.{name} is not a numpy array part")
        return super().find_class(module, name)


def _read_array_pickle(path: Path) -> np.ndarray:
    try:
        with gzip.open(path, "rb") as f:
            array = _ArrayUnpickler(f).load()
    except (OSError, EOFError, pickle.UnpicklingError) as err:
        raise DataError(f"cannot read the numpy array in {path}: {err}.") from err
    if not isinstance(array, np.ndarray):
        raise DataError(f"{path} does not hold a numpy array.")
    return array


def load_animal_mnist() -> ImageDataset:
    """Animal-MNIST (PyPI ``animal-mnist``): 10,000 28x28 grayscale animal silhouettes, 10 classes of 1,000.

    The package ships one unsplit set, so a fixed stratified 80/20 train/test split (seed 0) is made.
    """
    if importlib.util.find_spec("animal_mnist") is None:
        raise DataError("animal-mnist is not installed; run `pip install --no-deps animal-mnist`.")
    folder = Path(str(importlib.resources.files("animal_mnist"))) / "data" / "Animal_MNIST"
    images = _read_array_pickle(folder / "animal_data_version_3.gz")
    labels = _read_array_pickle(folder / "animal_label_version_3.gz").astype(np.int64)
    if images.dtype != np.uint8 or images.ndim != 3 or labels.shape != (images.shape[0],):
        raise DataError(f"animal-mnist files under {folder} are not (N, 28, 28) uint8 images with N labels.")
    return ImageDataset(
        images=torch.from_numpy(images[:, None].copy()),
        labels=torch.from_numpy(labels),
        splits=stratified_split(labels),
        split_names=TRAIN_TEST,
        class_names=ANIMAL_MNIST_CLASSES,
        name="animal-mnist",
        source=str(folder),
        domain="animal-silhouettes",
    )


# ---------------------------------------------------------------- image folders


_GRAY_MODES = {"1", "L", "LA", "I", "I;16", "I;16B", "I;16L", "F"}


def _image_files(folder: Path) -> list[tuple[str, Path]]:
    """(class name, file) for every image-like file under ``folder/CLASS/``, sorted."""
    found = []
    for class_dir in sorted(p for p in folder.iterdir() if p.is_dir()):
        for file in sorted(class_dir.rglob("*")):
            if file.is_file() and file.suffix.lower() in IMAGE_EXTENSIONS:
                found.append((class_dir.name, file))
    return found


def load_image_folder(
    folder: str | Path,
    image_size: int | tuple[int, int] | None = None,
    name: str | None = None,
    domain: str | None = None,
) -> ImageDataset:
    """Read a torchvision-style folder (``CLASS/*.png``) fully into memory.

    With a ``train/`` subfolder, it and any ``val/``, ``valid/``, ``validation/``, ``test/`` beside it
    become splits; else everything is ``train``. Images become one mode (L if all are grayscale, else RGB)
    and one size (``image_size`` as (H, W), else the most common size), resized bilinearly. Unreadable
    files are skipped and counted in ``skipped``; a folder without a readable image raises ``DataError``.
    """
    root = Path(folder)
    if not root.is_dir():
        raise DataError(f"{root} is not a directory.")
    subdirs = {p.name for p in root.iterdir() if p.is_dir()}
    split_names = tuple(s for s in SPLIT_FOLDERS if s in subdirs)
    if "train" in split_names:
        split_dirs = [root / s for s in split_names]
    else:
        split_names, split_dirs = ("train",), [root]

    # First pass reads headers only: which files open, their modes and sizes.
    entries, skipped = [], 0
    for code, split_dir in enumerate(split_dirs):
        for class_name, file in _image_files(split_dir):
            try:
                with Image.open(file) as im:
                    entries.append((code, class_name, file, im.mode, im.size))
            except (OSError, ValueError, Image.DecompressionBombError):
                skipped += 1
    if not entries:
        raise DataError(f"no images found under {root}" + (f" ({skipped} unreadable)." if skipped else "."))
    mode = "L" if all(e[3] in _GRAY_MODES for e in entries) else "RGB"
    if image_size is None:
        width, height = Counter(e[4] for e in entries).most_common(1)[0][0]
    else:
        height, width = (image_size, image_size) if isinstance(image_size, int) else image_size

    class_names = sorted({e[1] for e in entries} | _class_dirs(split_dirs))
    pixels, labels, codes = [], [], []
    for code, class_name, file, _, _ in entries:
        try:
            with Image.open(file) as im:
                converted = im.convert(mode)
            if converted.size != (width, height):
                converted = converted.resize((width, height), Image.Resampling.BILINEAR)
            array = np.asarray(converted, dtype=np.uint8)
        except (OSError, ValueError, Image.DecompressionBombError):
            skipped += 1  # a header that opened but whose pixels are truncated or corrupt
            continue
        pixels.append(array[None] if array.ndim == 2 else array.transpose(2, 0, 1))
        labels.append(class_names.index(class_name))
        codes.append(code)
    if not pixels:
        raise DataError(f"no images found under {root} ({skipped} unreadable files).")
    return ImageDataset(
        images=torch.from_numpy(np.stack(pixels)),
        labels=torch.tensor(labels, dtype=torch.int64),
        splits=np.asarray(codes, dtype=np.int64),
        split_names=split_names,
        class_names=class_names,
        name=name or root.resolve().name,
        source=str(root.resolve()),
        domain=domain,
        skipped=skipped,
    )


def _class_dirs(split_dirs: list[Path]) -> set[str]:
    """Every class folder name, including those whose images were all unreadable."""
    return {p.name for d in split_dirs if d.is_dir() for p in d.iterdir() if p.is_dir()}


# ---------------------------------------------------------------- torchvision datasets on disk


DEFAULT_TORCHVISION_ROOT = Path.home() / ".cache" / "kgraft" / "torchvision"


def load_torchvision(dataset: str, root: str | Path = DEFAULT_TORCHVISION_ROOT) -> ImageDataset:
    """A torchvision dataset (``MNIST``, ``CIFAR10``, ...) already on disk under ``root``; never downloads."""
    import torchvision.datasets as tvd

    cls = getattr(tvd, dataset, None)
    if not (inspect.isclass(cls) and issubclass(cls, tvd.VisionDataset)):
        raise DataError(f"torchvision has no dataset class named {dataset!r}.")
    params = inspect.signature(cls).parameters
    takes_kwargs = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())
    if "download" not in params and not takes_kwargs:
        raise DataError(f"torchvision.datasets.{dataset} is not a downloadable dataset; use imagefolder:DIR.")
    parts: list[tuple[str, object]] = []
    for split in TRAIN_TEST:
        if "train" in params:
            kwargs: dict[str, object] = {"train": split == "train"}
        elif "split" in params:
            kwargs = {"split": split}
        else:
            kwargs = {}
        try:
            parts.append((split, cls(str(root), download=False, **kwargs)))
        except (TypeError, ValueError) as err:
            raise DataError(
                f"torchvision.datasets.{dataset} needs arguments a spec cannot give ({err})."
            ) from err
        except (RuntimeError, OSError) as err:
            raise DataError(
                f"torchvision dataset {dataset} is not on disk under {root}; run online once with "
                f"download=True (torchvision.datasets.{dataset}({str(root)!r}, download=True)) ({err})."
            ) from err
        if not kwargs:
            break  # no split argument: one part holds everything
    images, labels, codes = [], [], []
    for code, (_, part) in enumerate(parts):
        x, y = _torchvision_arrays(part)
        images.append(x)
        labels.append(y)
        codes.append(np.full(len(y), code, dtype=np.int64))
    y_all = np.concatenate(labels)
    classes = getattr(parts[0][1], "classes", None)
    class_names = [str(c) for c in classes] if classes else [str(i) for i in range(int(y_all.max()) + 1)]
    return ImageDataset(
        images=torch.from_numpy(np.concatenate(images)),
        labels=torch.from_numpy(y_all),
        splits=np.concatenate(codes),
        split_names=tuple(split for split, _ in parts) if len(parts) > 1 else ("train",),
        class_names=class_names,
        name=dataset.lower(),
        source=f"torchvision.datasets.{dataset}:{root}",
    )


def _torchvision_arrays(part: object) -> tuple[np.ndarray, np.ndarray]:
    """(uint8 images (N, C, H, W), int64 labels) from a torchvision dataset, fast where it holds arrays."""
    data, targets = getattr(part, "data", None), getattr(part, "targets", getattr(part, "labels", None))
    if data is not None and targets is not None:
        x = np.asarray(data)
        if x.dtype == np.uint8 and x.ndim in (3, 4):
            if x.ndim == 3:
                x = x[:, None]
            elif x.shape[-1] in (1, 3) and x.shape[1] not in (1, 3):
                x = x.transpose(0, 3, 1, 2)
            return np.ascontiguousarray(x), np.asarray(targets, dtype=np.int64)
    pixels, labels = [], []
    for image, label in part:  # type: ignore[attr-defined]
        array = np.asarray(image, dtype=np.uint8)
        pixels.append(array[None] if array.ndim == 2 else array.transpose(2, 0, 1))
        labels.append(int(label))
    return np.stack(pixels), np.asarray(labels, dtype=np.int64)


# ---------------------------------------------------------------- the registry


BUILTIN_LOADERS: dict[str, Callable[[], ImageDataset]] = {
    "fashion-mnist": load_fashion_mnist,
    "digits": load_digits,
    "animal-mnist": load_animal_mnist,
}


def load_dataset(spec: str) -> ImageDataset:
    """Load a builtin name, ``idx:DIR``, ``imagefolder:DIR``, ``torchvision:NAME[:ROOT]`` or a directory.

    A plain directory holding ``*idx3-ubyte`` files is read as IDX, any other directory as an image folder.
    The result's ``source`` is a spec that loads the same data again (a builtin name, or the prefixed form
    with an absolute path), so the graph can record where to reload it from.
    """
    if spec in BUILTIN_LOADERS:
        return replace(BUILTIN_LOADERS[spec](), source=spec)
    kind, _, rest = spec.partition(":")
    if kind == "idx" and rest:
        return replace(load_idx_folder(rest), source=f"idx:{Path(rest).expanduser().resolve()}")
    if kind == "imagefolder" and rest:
        return replace(load_image_folder(rest), source=f"imagefolder:{Path(rest).expanduser().resolve()}")
    if kind == "croissant" and rest:
        files = fetch_croissant(rest)
        return replace(load_dataset(files), source=f"croissant:{Path(rest).expanduser().resolve()}")
    if kind == "torchvision" and rest:
        dataset, _, root = rest.partition(":")
        if not root:
            return replace(load_torchvision(dataset), source=f"torchvision:{dataset}")
        root_path = Path(root).expanduser().resolve()
        return replace(load_torchvision(dataset, root), source=f"torchvision:{dataset}:{root_path}")
    path = Path(spec).expanduser()
    if path.is_dir():
        if any(path.glob("*idx3-ubyte*")):
            return load_dataset(f"idx:{path}")
        return load_dataset(f"imagefolder:{path}")
    raise DataError(
        f"unknown dataset {spec!r}: use a builtin name ({', '.join(BUILTIN_LOADERS)}), "
        "idx:DIR, imagefolder:DIR, torchvision:NAME[:ROOT] or a directory path."
    )

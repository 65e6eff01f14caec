"""Real pretrained digit CNNs from PyPI ``ccexam`` 1.0.0 (FYS-8805 Collaborative Coding Exam, MIT licence).

The package bundles three state dicts trained by its authors: ``weights/mnist.pth`` (28x28 grayscale,
``MNISTNet``), ``weights/usps.pth`` (16x16 grayscale, ``USPSNet``) and ``weights/svhn.pth`` (32x32 RGB,
``SVHNNet``). They were saved from CUDA tensors, so they are read with ``map_location="cpu"``, and with
``weights_only=True`` like every checkpoint. The architectures are rebuilt in ``architectures.py`` with
the same module names, so no ccexam code runs and a record still loads once its checkpoint is copied
elsewhere; only the installed weight files are read from the package. This module knows the package and
its files; ``bundled.ccexam_records`` turns them into model records.
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from pathlib import Path

from transfer.zoo.record import ZooError

HOMEPAGE = "https://github.com/FYS-8805-Collaborative-Coding/Collaborative-Coding-Exam"
DIGIT_CLASSES = [str(d) for d in range(10)]


@dataclass(frozen=True)
class CCExamModel:
    """One bundled ccexam model: its architecture, weight file, input and the data it was trained on."""

    architecture: str
    weights: str
    input_size: tuple[int, int, int]
    mean: tuple[float, ...]
    std: tuple[float, ...]
    pretrained_on: str
    description: str
    reported: dict[str, float]


# Normalisation statistics and image sizes: ccexam 1.0.0 ccexam/constants.py lines 3-7 (DATASET_STATS),
# used by ccexam/inference.py lines 311-326 (INFERENCE_REGISTRY) and ccexam/data.py lines 100-107
# (Resize, Grayscale/RGB, ToTensor, Normalize). Resize is torchvision's default, bilinear.
# Reported precision/recall: the model cards in ccexam's README (PyPI METADATA, "Model Cards").
CCEXAM_MODELS: dict[str, CCExamModel] = {
    "mnist": CCExamModel(
        "ccexam-mnist", "weights/mnist.pth", (1, 28, 28), (0.1307,), (0.3081,), "mnist",
        "MNIST handwritten-digit CNN (two conv/ReLU/max-pool blocks, 128-unit MLP head) from PyPI ccexam.",
        {"reported_test_precision": 0.9905, "reported_test_recall": 0.9904},
    ),
    "usps": CCExamModel(
        "ccexam-usps", "weights/usps.pth", (1, 16, 16), (0.2471,), (0.2994,), "usps",
        "USPS handwritten-digit CNN (two conv/BN/ReLU/max-pool blocks, dropout MLP head) from PyPI ccexam.",
        {"reported_test_precision": 0.9709, "reported_test_recall": 0.9697},
    ),
    "svhn": CCExamModel(
        "ccexam-svhn", "weights/svhn.pth", (3, 32, 32), (0.4377, 0.4438, 0.4728), (0.1980, 0.2010, 0.1970),
        "svhn",
        "SVHN house-number digit CNN (three double-conv/BN blocks, dropout MLP head) from PyPI ccexam; "
        "trained 5 epochs with Adam, no augmentation.",
        {"reported_test_precision": 0.9436, "reported_test_recall": 0.9473},
    ),
}  # fmt: skip


def ccexam_installed() -> bool:
    """Whether the ``ccexam`` package is importable (its weight files come with it)."""
    return importlib.util.find_spec("ccexam") is not None


def _package_dir() -> Path:
    spec = importlib.util.find_spec("ccexam")
    if spec is None or not spec.submodule_search_locations:
        raise ZooError("ccexam is not installed: pip install --no-deps ccexam")
    return Path(next(iter(spec.submodule_search_locations)))


def ccexam_weights_path(name: str) -> Path:
    """The installed weight file of ccexam model ``name`` (``mnist``, ``usps``, ``svhn``)."""
    if name not in CCEXAM_MODELS:
        raise ZooError(f"ccexam has no model {name!r}; it ships {', '.join(CCEXAM_MODELS)}.")
    path = _package_dir() / CCEXAM_MODELS[name].weights
    if not path.is_file():
        raise ZooError(f"the ccexam package lacks {path}; reinstall it with pip install --no-deps ccexam.")
    return path


__all__ = [
    "CCEXAM_MODELS",
    "DIGIT_CLASSES",
    "HOMEPAGE",
    "CCExamModel",
    "ccexam_installed",
    "ccexam_weights_path",
]

"""Architectures the zoo can build, with the name of each one's head and its layer groups.

``build_model(architecture, num_classes, in_channels, image_size)`` constructs without weights:
- ``smallcnn``: ``SmallCNN``, four conv blocks and a linear head, fast on small grayscale images on a CPU;
- ``ccexam-mnist`` / ``ccexam-usps`` / ``ccexam-svhn``: the digit CNNs of PyPI ``ccexam``, rebuilt here with
  the same module names so its state dicts load with ``strict=True`` (ccexam itself is not imported);
- torchvision families: ``resnet*`` / ``resnext*`` / ``wide_resnet*``, ``mobilenet_v3_*``,
  ``efficientnet_*``, ``convnext_*``, ``vit_*`` (``torchvision.models.get_model(name, weights=None)``);
- ``timm:NAME`` when ``timm`` is importable (``timm.create_model(NAME, pretrained=False)``).

``layer_groups(model, architecture)`` returns prefixes ordered input to output, the head's group last,
checked to cover every parameter exactly once.
"""

from __future__ import annotations

import importlib
import re
from typing import Any

import torch
from torch import nn

from transfer.zoo.groups import Groups, check_layer_groups, compress_groups, split_evenly
from transfer.zoo.record import ZooError

# ---------------------------------------------------------------- SmallCNN


def _conv_block(in_channels: int, out_channels: int, pool: bool) -> nn.Sequential:
    layers: list[nn.Module] = [
        nn.Conv2d(in_channels, out_channels, kernel_size=3, padding=1, bias=False),
        nn.BatchNorm2d(out_channels),
        nn.ReLU(inplace=True),
    ]
    if pool:
        layers.append(nn.MaxPool2d(2, ceil_mode=True))
    return nn.Sequential(*layers)


class SmallCNN(nn.Module):
    """Four 3x3 conv blocks (BN, ReLU; the first three halve the size), global average pool, linear head.

    Shapes: (N, in_channels, H, W) -> block1 (N, w, H/2, W/2) -> block2 (N, 2w, H/4, W/4)
    -> block3 (N, 4w, H/8, W/8) -> block4 (N, 4w, H/8, W/8) -> pool (N, 4w) -> head (N, num_classes).
    Any H, W >= 1 works (pooling rounds up), so one architecture serves 8x8 digits and 28x28 images.
    """

    def __init__(self, in_channels: int = 1, num_classes: int = 10, width: int = 16) -> None:
        super().__init__()
        self.block1 = _conv_block(in_channels, width, pool=True)
        self.block2 = _conv_block(width, 2 * width, pool=True)
        self.block3 = _conv_block(2 * width, 4 * width, pool=True)
        self.block4 = _conv_block(4 * width, 4 * width, pool=False)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.head = nn.Linear(4 * width, num_classes)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """Pooled penultimate features (N, 4w)."""
        x = self.block4(self.block3(self.block2(self.block1(x))))
        return self.pool(x).flatten(1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


# ---------------------------------------------------------------- ccexam digit CNNs
# Rebuilt from ccexam 1.0.0 ccexam/models.py (DigitCNN lines 23-77, USPSNet 95-131, SVHNNet 134-187):
# same layer order, so ``features.N`` / ``classifier.N`` indices match its saved state dicts.


class CCExamDigitNet(nn.Module):
    """ccexam's ``MNISTNet`` (``batchnorm=False``) or ``USPSNet`` (``batchnorm=True``, dropout 0.3).

    Shapes: (N, 1, S, S) -> features (N, 64, S/4, S/4) -> flatten -> 128 -> num_classes.
    """

    def __init__(self, input_size: int, num_classes: int = 10, batchnorm: bool = False) -> None:
        super().__init__()
        self.input_size = input_size
        side = input_size // 4
        if batchnorm:
            self.features = nn.Sequential(
                nn.Conv2d(1, 32, kernel_size=3, padding=1),
                nn.BatchNorm2d(32),
                nn.ReLU(),
                nn.MaxPool2d(2),
                nn.Conv2d(32, 64, kernel_size=3, padding=1),
                nn.BatchNorm2d(64),
                nn.ReLU(),
                nn.MaxPool2d(2),
            )
            self.classifier = nn.Sequential(
                nn.Dropout(0.3),
                nn.Linear(64 * side * side, 128),
                nn.ReLU(),
                nn.Dropout(0.3),
                nn.Linear(128, num_classes),
            )
        else:
            self.features = nn.Sequential(
                nn.Conv2d(1, 32, kernel_size=3, padding=1),
                nn.ReLU(),
                nn.MaxPool2d(2),
                nn.Conv2d(32, 64, kernel_size=3, padding=1),
                nn.ReLU(),
                nn.MaxPool2d(2),
            )
            self.classifier = nn.Sequential(
                nn.Linear(64 * side * side, 128),
                nn.ReLU(),
                nn.Linear(128, num_classes),
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if tuple(x.shape[-2:]) != (self.input_size, self.input_size):
            raise ValueError(
                f"expected {self.input_size}x{self.input_size} inputs, got {tuple(x.shape[-2:])}."
            )
        return self.classifier(self.features(x).flatten(1))


class CCExamSVHNNet(nn.Module):
    """ccexam's ``SVHNNet``: three (conv-BN-ReLU x2, max-pool) blocks, dropout MLP head.

    Shapes: (N, 3, S, S) -> features (N, 128, S/8, S/8) -> flatten -> 256 -> num_classes.
    """

    def __init__(self, input_size: int, num_classes: int = 10, dropout: float = 0.3) -> None:
        super().__init__()
        self.input_size = input_size
        side = input_size // 8

        def block(in_ch: int, out_ch: int) -> nn.Sequential:
            return nn.Sequential(
                nn.Conv2d(in_ch, out_ch, kernel_size=3, padding=1),
                nn.BatchNorm2d(out_ch),
                nn.ReLU(inplace=True),
                nn.Conv2d(out_ch, out_ch, kernel_size=3, padding=1),
                nn.BatchNorm2d(out_ch),
                nn.ReLU(inplace=True),
                nn.MaxPool2d(2),
            )

        self.features = nn.Sequential(block(3, 32), block(32, 64), block(64, 128))
        self.classifier = nn.Sequential(
            nn.Dropout(dropout),
            nn.Linear(128 * side * side, 256),
            nn.ReLU(inplace=True),
            nn.Dropout(dropout),
            nn.Linear(256, num_classes),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if tuple(x.shape[-2:]) != (self.input_size, self.input_size):
            raise ValueError(
                f"expected {self.input_size}x{self.input_size} inputs, got {tuple(x.shape[-2:])}."
            )
        return self.classifier(self.features(x).flatten(1))


# name -> (channels, default side, head, layer groups)
_CCEXAM: dict[str, tuple[int, int, str, Groups]] = {
    "ccexam-mnist": (
        1, 28, "classifier.2", [["features.0"], ["features.3"], ["classifier.0"], ["classifier.2"]],
    ),
    "ccexam-usps": (
        1, 16, "classifier.4",
        [["features.0", "features.1"], ["features.4", "features.5"], ["classifier.1"], ["classifier.4"]],
    ),
    "ccexam-svhn": (
        3, 32, "classifier.4",
        [["features.0"], ["features.1"], ["features.2"], ["classifier.1"], ["classifier.4"]],
    ),
}  # fmt: skip

# ---------------------------------------------------------------- torchvision families

# family -> (name pattern, head module)
_TORCHVISION_FAMILIES: dict[str, tuple[str, str]] = {
    "resnet": (r"(resnet\d+|resnext\d+_\w+|wide_resnet\d+_\d+)", "fc"),
    "mobilenet_v3": (r"mobilenet_v3_(small|large)", "classifier.3"),
    "efficientnet": (r"efficientnet_(b\d|v2_[sml])", "classifier.1"),
    "convnext": (r"convnext_(tiny|small|base|large)", "classifier.2"),
    "vit": (r"vit_[bhl]_\d+", "heads.head"),
}
TIMM_PREFIX = "timm:"


def architecture_family(architecture: str) -> str:
    """``smallcnn``, ``ccexam``, ``timm`` or a torchvision family name; ``ZooError`` when unknown."""
    if architecture == "smallcnn":
        return "smallcnn"
    if architecture in _CCEXAM:
        return "ccexam"
    if architecture.startswith(TIMM_PREFIX):
        return "timm"
    for family, (pattern, _) in _TORCHVISION_FAMILIES.items():
        if re.fullmatch(pattern, architecture):
            return family
    known = ["smallcnn", *_CCEXAM, "resnet18/34/50...", "mobilenet_v3_small/large", "efficientnet_b0...",
             "convnext_tiny...", "vit_b_16...", "timm:NAME"]  # fmt: skip
    raise ZooError(f"unknown architecture {architecture!r}; the zoo builds {', '.join(known)}.")


def import_timm() -> Any:
    """The ``timm`` module, or ``ZooError`` saying how to install it."""
    try:
        return importlib.import_module("timm")
    except ImportError as err:
        raise ZooError("timm is not installed: pip install timm") from err


def build_model(
    architecture: str,
    num_classes: int,
    in_channels: int = 3,
    image_size: int | tuple[int, int] | None = None,
    **arch_kwargs: Any,
) -> nn.Module:
    """Construct ``architecture`` with random weights for ``num_classes`` outputs (never downloads).

    ``image_size`` (H or (H, W)) matters only where the architecture fixes it: the ccexam nets size their
    classifier from it (default: their training size) and ViTs their position embeddings (default 224).
    """
    family = architecture_family(architecture)
    side = image_size[0] if isinstance(image_size, tuple) else image_size
    if isinstance(image_size, tuple) and image_size[0] != image_size[1] and family in ("ccexam", "vit"):
        raise ZooError(f"{architecture} takes square images, got {image_size}.")
    if family == "smallcnn":
        return SmallCNN(in_channels, num_classes, **arch_kwargs)
    if family == "ccexam":
        channels, default_side, _, _ = _CCEXAM[architecture]
        if in_channels != channels:
            raise ZooError(f"{architecture} takes {channels}-channel images, not {in_channels}.")
        side = side or default_side
        if architecture == "ccexam-svhn":
            return CCExamSVHNNet(side, num_classes, **arch_kwargs)
        return CCExamDigitNet(side, num_classes, batchnorm=architecture == "ccexam-usps", **arch_kwargs)
    if family == "timm":
        timm = import_timm()
        kwargs = dict(arch_kwargs)
        if side is not None and "img_size" not in kwargs and _timm_fixed_size(timm, architecture):
            kwargs["img_size"] = side
        try:
            return timm.create_model(
                architecture[len(TIMM_PREFIX) :], pretrained=False, num_classes=num_classes,
                in_chans=in_channels, **kwargs,
            )  # fmt: skip
        except RuntimeError as err:  # timm's "Unknown model (...)"
            raise ZooError(f"timm cannot build {architecture[len(TIMM_PREFIX) :]!r}: {err}") from err
    if in_channels != 3:
        raise ZooError(
            f"torchvision's {architecture} takes 3-channel images, not {in_channels}; repeat grayscale "
            "channels at the input."
        )
    import torchvision.models as tvm

    kwargs = dict(arch_kwargs)
    if family == "vit" and side is not None:
        kwargs.setdefault("image_size", side)
    try:
        return tvm.get_model(architecture, weights=None, num_classes=num_classes, **kwargs)
    except (ValueError, TypeError) as err:
        raise ZooError(f"torchvision cannot build {architecture!r}: {err}") from err


def _timm_fixed_size(timm: Any, architecture: str) -> bool:
    """Whether a timm model's pretrained config marks its input size as fixed (ViT-style)."""
    try:
        cfg = timm.models.get_pretrained_cfg(architecture[len(TIMM_PREFIX) :].split(".")[0])
    except Exception:  # timm's lookup raises various errors for unknown names; creation reports them
        return False
    return bool(cfg is not None and getattr(cfg, "fixed_input_size", False))


def head_name(model: nn.Module, architecture: str) -> str:
    """Name of the classifier module (the one ``chop_head`` replaces)."""
    family = architecture_family(architecture)
    if family == "smallcnn":
        return "head"
    if family == "ccexam":
        return _CCEXAM[architecture][2]
    if family == "timm":
        cfg = getattr(model, "pretrained_cfg", None) or getattr(model, "default_cfg", {})
        name = cfg.get("classifier")
        if not name:
            raise ZooError(f"{architecture} has no classifier name in its timm pretrained_cfg.")
        return name
    return _TORCHVISION_FAMILIES[family][1]


def _children(model: nn.Module, name: str) -> list[str]:
    return [f"{name}.{child}" for child, _ in model.get_submodule(name).named_children()]


def _raw_layer_groups(model: nn.Module, architecture: str) -> Groups:
    family = architecture_family(architecture)
    if family == "smallcnn":
        return [["block1"], ["block2"], ["block3"], ["block4"], ["head"]]
    if family == "ccexam":
        return [list(g) for g in _CCEXAM[architecture][3]]
    if family == "resnet":
        return [["conv1", "bn1"], ["layer1"], ["layer2"], ["layer3"], ["layer4"], ["fc"]]
    if family in ("mobilenet_v3", "efficientnet", "convnext"):
        return [*split_evenly(_children(model, "features"), 4), ["classifier"]]
    if family == "vit":
        blocks = split_evenly(_children(model, "encoder.layers"), 4)
        blocks[0] = ["class_token", "conv_proj", "encoder.pos_embedding", *blocks[0]]
        blocks[-1] = [*blocks[-1], "encoder.ln"]
        return [*blocks, ["heads"]]
    return _timm_layer_groups(model, architecture)


def _timm_layer_groups(model: nn.Module, architecture: str) -> Groups:
    """timm's own ``group_matcher(coarse=True)`` groups, as module prefixes, with the head's group last."""
    timm = import_timm()
    matcher = model.group_matcher(coarse=True)  # type: ignore[operator]
    by_id = timm.models.group_parameters(model, matcher)
    param_groups = [list(names) for _, names in sorted(by_id.items())]
    head = head_name(model, architecture)
    head_params = [n for n, _ in model.named_parameters() if n == head or n.startswith(head + ".")]
    if head_params and not set(head_params) <= set(param_groups[-1]):
        # Keep the head alone at the end so "train only the head" means the classifier.
        param_groups = [[n for n in g if n not in head_params] for g in param_groups]
        param_groups = [g for g in param_groups if g] + [head_params]
    return compress_groups(model, param_groups)


def layer_groups(model: nn.Module, architecture: str) -> Groups:
    """Layer groups of ``model`` (built as ``architecture``), input to output, checked to cover it exactly."""
    groups = _raw_layer_groups(model, architecture)
    check_layer_groups(model, groups)
    return groups


__all__ = [
    "TIMM_PREFIX",
    "CCExamDigitNet",
    "CCExamSVHNNet",
    "SmallCNN",
    "architecture_family",
    "build_model",
    "head_name",
    "import_timm",
    "layer_groups",
]

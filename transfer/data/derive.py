"""Derived datasets: deterministic transformations of an ``ImageDataset`` that record how they were made.

``derive(ds, how, params, seed)`` returns a new dataset whose ``derivation`` is
``{"how": how, "params": params, "seed": seed}``. Pixel transformations apply to every split;
``subset`` samples every (split, class) group alike; ``imbalance`` resamples the train split only.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable
from dataclasses import replace
from typing import Any

import numpy as np
import torch

from transfer.data.base import DataError, ImageDataset

_CHUNK = 8192  # images per step for pixel transforms, so float copies stay small
Params = dict[str, Any]


def _tvf() -> Any:
    """torchvision's functional transforms, imported on first use: the import alone takes seconds."""
    import torchvision.transforms.v2.functional as tvf

    return tvf


def derive(
    ds: ImageDataset, how: str, params: Params | None = None, seed: int = 0, name: str | None = None
) -> ImageDataset:
    """Apply transformation ``how`` with ``params`` to ``ds``; the same inputs always give the same output.

    ``subset`` {fraction | n}: stratified sample of each (split, class) group, exact total.
    ``class_subset`` {classes}: keep those classes, relabelled 0..k-1 in the order given.
    ``rotate`` {degrees}: counter-clockwise; multiples of 90 are exact (and swap H, W of non-square images),
    other angles are bilinear with the size kept and black corners.
    ``invert`` {}: 255 - pixel. ``blur`` {sigma, kernel?}: Gaussian, kernel defaults to 2*ceil(3 sigma)+1.
    ``noise`` {std}: additive Gaussian on the 0..255 scale, rounded and clipped.
    ``downscale`` {factor | size}: antialiased bilinear resize; the result keeps the smaller size.
    ``contrast`` / ``brightness`` / ``color`` {factor}: as PIL's ImageEnhance (color = saturation, RGB only).
    ``imbalance`` {ratio | keep}: resample train so class counts decay geometrically from the first to the
    last class down to 1/ratio, or keep a fraction per class name; other splits are untouched.
    """
    params = copy.deepcopy(dict(params or {}))  # the record must not change when the caller's dict does
    if how not in _TRANSFORMS:
        raise DataError(f"unknown derivation {how!r}; known: {', '.join(sorted(_TRANSFORMS))}.")
    out = _TRANSFORMS[how](ds, params, seed)
    return replace(
        out, name=name or f"{ds.name}-{how}", derivation={"how": how, "params": params, "seed": seed}
    )


def describe_bias(before: ImageDataset, after: ImageDataset) -> dict[str, Any]:
    """The class imbalance of ``after``'s train split (whole set if it has none), as a measured Bias record.

    Severity: ratio < 3 low, < 10 medium, else high.
    """
    ratio, common, rare = _imbalance(after)
    ratio_before, _, _ = _imbalance(before)
    counts = _train_counts(after)
    severity = "low" if ratio < 3 else "medium" if ratio < 10 else "high"
    return {
        "kind": "class-imbalance",
        "description": (
            f"class imbalance ratio {ratio:.1f} in {after.name} (was {ratio_before:.1f} in {before.name}); "
            f"rarest class {rare!r} has {counts[rare]} training samples, "
            f"commonest {common!r} has {counts[common]}."
        ),
        "severity": severity,
        "source": "measured",
        "ratio": ratio,
    }


# ---------------------------------------------------------------- parameter checks


def _number(
    params: Params, key: str, low: float = -math.inf, high: float = math.inf, default: Any = None
) -> float:
    value = params.get(key, default)
    if value is None:
        raise DataError(f"parameter {key!r} is required.")
    if isinstance(value, bool) or not isinstance(value, int | float) or not low <= value <= high:
        raise DataError(f"parameter {key!r} must be a number in [{low}, {high}], got {value!r}.")
    return float(value)


def _only(params: Params, allowed: set[str], one_of: set[str] | None = None) -> None:
    unknown = set(params) - allowed
    if unknown:
        raise DataError(f"unknown parameters {sorted(unknown)}; expected some of {sorted(allowed)}.")
    if one_of is not None and len(one_of & set(params)) != 1:
        raise DataError(f"give exactly one of {sorted(one_of)}.")


def _map_images(ds: ImageDataset, fn: Callable[[torch.Tensor], torch.Tensor]) -> ImageDataset:
    """Apply ``fn`` (uint8 batch -> uint8 batch) chunk by chunk."""
    parts = [fn(ds.images[i : i + _CHUNK]) for i in range(0, len(ds), _CHUNK)]
    images = torch.cat(parts) if parts else ds.images
    return replace(ds, images=images.contiguous())


# ---------------------------------------------------------------- sampling


def _allocate(counts: np.ndarray, total: int) -> np.ndarray:
    """Split ``total`` over groups in proportion to ``counts`` (largest remainder; exact sum)."""
    exact = counts * (total / max(int(counts.sum()), 1))
    take = np.floor(exact).astype(np.int64)
    order = np.argsort(-(exact - take), kind="stable")
    take[order[: total - int(take.sum())]] += 1
    return np.minimum(take, counts)


def _subset(ds: ImageDataset, params: Params, seed: int) -> ImageDataset:
    _only(params, {"fraction", "n"}, one_of={"fraction", "n"})
    if "fraction" in params:
        total = round(_number(params, "fraction", 0.0, 1.0) * len(ds))
    else:
        n = _number(params, "n", 0, len(ds))
        if not n.is_integer():
            raise DataError(f"parameter 'n' must be a whole number, got {params['n']!r}.")
        total = int(n)
    groups = (ds.splits * ds.num_classes + ds.labels).numpy()
    keys, inverse, counts = np.unique(groups, return_inverse=True, return_counts=True)
    take = _allocate(counts, total)
    rng = np.random.default_rng(seed)
    keep = [
        rng.choice(np.flatnonzero(inverse == g), size=int(take[g]), replace=False) for g in range(len(keys))
    ]
    return ds.subset(np.sort(np.concatenate(keep)) if keep else np.zeros(0, dtype=np.int64))


def _class_subset(ds: ImageDataset, params: Params, seed: int) -> ImageDataset:
    _only(params, {"classes"})
    classes = params.get("classes")
    if not isinstance(classes, list | tuple) or not classes or len(set(classes)) != len(classes):
        raise DataError("parameter 'classes' must be a non-empty list of distinct class names.")
    missing = [c for c in classes if c not in ds.class_names]
    if missing:
        raise DataError(f"classes {missing} are not in {ds.name}; it has {ds.class_names}.")
    mapping = torch.full((ds.num_classes,), -1, dtype=torch.int64)
    for new, c in enumerate(classes):
        mapping[ds.class_names.index(c)] = new
    new_labels = mapping[ds.labels]
    keep = new_labels >= 0
    return replace(ds.subset(keep), labels=new_labels[keep], class_names=list(classes))


def _train_counts(ds: ImageDataset) -> dict[str, int]:
    labels = ds.labels[ds.split_mask("train")] if "train" in ds.split_names else ds.labels
    return dict(zip(ds.class_names, torch.bincount(labels, minlength=ds.num_classes).tolist(), strict=True))


def _imbalance(ds: ImageDataset) -> tuple[float, str, str]:
    """(max/max(min, 1), commonest class, rarest class) over the train split."""
    counts = _train_counts(ds)
    if not counts:
        return 1.0, "", ""
    common, rare = max(counts, key=counts.__getitem__), min(counts, key=counts.__getitem__)
    return counts[common] / max(counts[rare], 1), common, rare


def _imbalance_resample(ds: ImageDataset, params: Params, seed: int) -> ImageDataset:
    _only(params, {"ratio", "keep"}, one_of={"ratio", "keep"})
    train = ds.split_mask("train").numpy()
    labels = ds.labels.numpy()
    available = np.bincount(labels[train], minlength=ds.num_classes)
    if "ratio" in params:
        ratio = _number(params, "ratio", 1.0)
        k = ds.num_classes
        if k < 2:
            raise DataError("an imbalance needs at least two classes.")
        decay = ratio ** (-np.arange(k) / (k - 1))  # 1 for the first class, 1/ratio for the last
        top = np.min(available / decay)  # the largest head count every class can still supply
        targets = np.minimum(np.round(top * decay).astype(np.int64), available)
    else:
        keep = params["keep"]
        if not isinstance(keep, dict) or any(c not in ds.class_names for c in keep):
            raise DataError(f"parameter 'keep' must map class names of {ds.name} to fractions in [0, 1].")
        fractions = np.array([_number(keep, c, 0.0, 1.0, default=1.0) for c in ds.class_names])
        targets = np.round(available * fractions).astype(np.int64)
    rng = np.random.default_rng(seed)
    selected = [np.flatnonzero(~train)]
    for c in range(ds.num_classes):
        members = np.flatnonzero(train & (labels == c))
        selected.append(rng.choice(members, size=int(targets[c]), replace=False))
    return ds.subset(np.sort(np.concatenate(selected)))


# ---------------------------------------------------------------- pixel transforms


def _rotate(ds: ImageDataset, params: Params, seed: int) -> ImageDataset:
    _only(params, {"degrees"})
    degrees = _number(params, "degrees")
    if degrees % 90 == 0:
        return _map_images(ds, lambda x: torch.rot90(x, k=int(degrees // 90) % 4, dims=(2, 3)))
    tvf = _tvf()
    interp = tvf.InterpolationMode.BILINEAR
    return _map_images(ds, lambda x: tvf.rotate(x, degrees, interpolation=interp, fill=0.0))


def _invert(ds: ImageDataset, params: Params, seed: int) -> ImageDataset:
    _only(params, set())
    return _map_images(ds, lambda x: 255 - x)


def _blur(ds: ImageDataset, params: Params, seed: int) -> ImageDataset:
    _only(params, {"sigma", "kernel"})
    sigma = _number(params, "sigma", 1e-3, 100.0, default=1.0)
    kernel = int(_number(params, "kernel", 1, 1001, default=2 * math.ceil(3 * sigma) + 1))
    if kernel % 2 == 0:
        raise DataError(f"parameter 'kernel' must be odd, got {kernel}.")
    kernel = min(kernel, 2 * min(ds.image_size) - 1)  # reflect padding needs the kernel inside the image
    tvf = _tvf()
    return _map_images(ds, lambda x: tvf.gaussian_blur(x, [kernel, kernel], [sigma, sigma]))


def _noise(ds: ImageDataset, params: Params, seed: int) -> ImageDataset:
    _only(params, {"std"})
    std = _number(params, "std", 0.0)
    generator = torch.Generator().manual_seed(seed)

    def add_noise(x: torch.Tensor) -> torch.Tensor:
        noise = torch.randn(x.shape, generator=generator) * std
        return (x.to(torch.float32) + noise).round_().clamp_(0, 255).to(torch.uint8)

    return _map_images(ds, add_noise)


def _downscale(ds: ImageDataset, params: Params, seed: int) -> ImageDataset:
    _only(params, {"factor", "size"}, one_of={"factor", "size"})
    height, width = ds.image_size
    if "factor" in params:
        factor = _number(params, "factor", 1.0)
        size = [max(1, round(height / factor)), max(1, round(width / factor))]
    else:
        size = params["size"]
        size = [size, size] if isinstance(size, int) else list(size) if isinstance(size, list | tuple) else []
        if len(size) != 2 or not all(
            isinstance(s, int) and 1 <= s <= d for s, d in zip(size, ds.image_size, strict=False)
        ):
            raise DataError(f"parameter 'size' must be (H, W) no larger than {ds.image_size}, got {size!r}.")
    tvf = _tvf()
    bilinear = tvf.InterpolationMode.BILINEAR
    return _map_images(ds, lambda x: tvf.resize(x, size, interpolation=bilinear, antialias=True))


def _enhance(adjust_name: str, rgb_only: bool = False) -> Callable[[ImageDataset, Params, int], ImageDataset]:
    """A ``{factor}`` transform calling torchvision's ``adjust_name`` (adjust_contrast, ...)."""

    def transform(ds: ImageDataset, params: Params, seed: int) -> ImageDataset:
        _only(params, {"factor"})
        factor = _number(params, "factor", 0.0)
        if rgb_only and ds.channels != 3:
            raise DataError(f"color (saturation) needs RGB images; {ds.name} has {ds.channels} channel(s).")
        adjust = getattr(_tvf(), adjust_name)
        return _map_images(ds, lambda x: adjust(x, factor))

    return transform


_TRANSFORMS: dict[str, Callable[[ImageDataset, Params, int], ImageDataset]] = {
    "subset": _subset,
    "class_subset": _class_subset,
    "rotate": _rotate,
    "invert": _invert,
    "blur": _blur,
    "noise": _noise,
    "downscale": _downscale,
    "contrast": _enhance("adjust_contrast"),
    "brightness": _enhance("adjust_brightness"),
    "color": _enhance("adjust_saturation", rgb_only=True),
    "imbalance": _imbalance_resample,
}

"""Turning a ``ModelRecord`` into a working ``nn.Module``, and models into checkpoints and records.

Checkpoints are read as safetensors, or as torch files with ``torch.load(weights_only=True)`` only: a
checkpoint is data, and a pickle that wants to build arbitrary Python objects is refused, never run.
Nothing here downloads: torchvision weights come from the user's torch hub cache, where
``torchvision``'s own ``get_state_dict`` puts them when run online.
"""

from __future__ import annotations

import hashlib
import json
import os
import pickle
import re
import struct
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import torch
from torch import nn

from transfer.zoo.architectures import TIMM_PREFIX, build_model, head_name, import_timm, layer_groups
from transfer.zoo.ccexam import ccexam_weights_path
from transfer.zoo.groups import param_count
from transfer.zoo.record import INTERPOLATIONS, ModelRecord, ZooError

StateDict = dict[str, torch.Tensor]
_HASH_IN_NAME = re.compile(r"-([a-f0-9]*)\.")  # torch.hub's HASH_REGEX: "resnet18-f37072fd.pth" -> f37072fd
_CHUNK = 1 << 20

# ---------------------------------------------------------------- files


def file_checksum(path: str | Path) -> str:
    """SHA-256 hex digest of a file's bytes."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def _plain_tensors(state: Mapping[str, torch.Tensor]) -> StateDict:
    """CPU, contiguous tensors with no shared storage (safetensors refuses aliases such as tied weights)."""
    out: StateDict = {}
    seen: set[tuple[int, int]] = set()
    for name, tensor in state.items():
        t = tensor.detach().cpu()
        key = (t.untyped_storage().data_ptr(), t.untyped_storage().nbytes())
        if (
            key in seen
            or not t.is_contiguous()
            or t.numel() != t.untyped_storage().nbytes() // t.element_size()
        ):
            t = t.clone(memory_format=torch.contiguous_format)
        else:
            seen.add(key)
        out[name] = t
    return out


def save_checkpoint(
    model: nn.Module | Mapping[str, torch.Tensor], path: str | Path, metadata: dict[str, Any] | None = None
) -> str:
    """Write ``model``'s state dict as safetensors at ``path`` atomically; return the file's SHA-256.

    The bytes go to a temporary file in the same folder, are flushed to disk, then renamed over
    ``path``, so a reader never sees half a checkpoint. ``metadata`` is stored as canonical JSON under
    the one header key ``kgraft``: safetensors writes several metadata keys in a random order, which
    would give equal weights different checksums.
    """
    from safetensors.torch import save

    state = model.state_dict() if isinstance(model, nn.Module) else dict(model)
    header = {"kgraft": json.dumps(metadata, sort_keys=True)} if metadata else None
    data = save(_plain_tensors(state), metadata=header)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return hashlib.sha256(data).hexdigest()


def _is_safetensors(path: Path) -> bool:
    """Safetensors files start with a little-endian u64 header length and a JSON object."""
    with open(path, "rb") as f:
        head = f.read(9)
    if len(head) < 9:
        return False
    (size,) = struct.unpack("<Q", head[:8])
    return head[8:9] == b"{" and 0 < size <= path.stat().st_size - 8


def _unwrap(obj: Any, path: Path) -> StateDict:
    """The tensor mapping inside a loaded torch file (a plain state dict, or one under a usual key)."""
    if isinstance(obj, Mapping) and obj and all(isinstance(v, torch.Tensor) for v in obj.values()):
        state = dict(obj)
        if all(k.startswith("module.") for k in state):  # saved from a DistributedDataParallel wrapper
            state = {k[len("module.") :]: v for k, v in state.items()}
        return state
    if isinstance(obj, Mapping):
        for key in ("state_dict", "model_state_dict", "model"):
            if key in obj:
                return _unwrap(obj[key], path)
    raise ZooError(f"checkpoint {path} holds no state dict of tensors (found {type(obj).__name__}).")


def read_state_dict(path: str | Path) -> StateDict:
    """Tensors of a safetensors or torch checkpoint, on the CPU; unsafe pickles raise ``ZooError``."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise ZooError(f"checkpoint {path} does not exist.")
    if _is_safetensors(path):
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        try:
            return load_file(str(path), device="cpu")
        except (SafetensorError, OSError) as err:
            raise ZooError(f"checkpoint {path} is not a readable safetensors file: {err}.") from err
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        found = re.search(r"unsupported (?:global: )?GLOBAL ([\w.]+)", str(err), re.IGNORECASE)
        if found:
            what = f"asks to build Python objects beyond tensors ({found.group(1)})"
        else:
            operand = re.search(r"Unsupported operand \d+", str(err))
            what = "is not a tensors-only torch file" + (f" ({operand.group(0)})" if operand else "")
        raise ZooError(
            f"checkpoint {path} {what}, so it was refused: kgraft loads checkpoints with weights_only=True "
            "and never runs their code; re-save it as a plain state dict or safetensors where you trust it."
        ) from err
    except (RuntimeError, OSError, EOFError, ValueError) as err:
        raise ZooError(f"checkpoint {path} is not a readable torch or safetensors file: {err}.") from err
    return _unwrap(obj, path)


def check_state_dict(model: nn.Module, state: Mapping[str, torch.Tensor], what: str) -> None:
    """Raise ``ZooError`` naming the first key where ``state`` and ``model`` disagree (name or shape)."""
    expected = model.state_dict()
    problems = []
    for key, tensor in expected.items():
        if key not in state:
            problems.append(f"it lacks {key!r}")
        elif tuple(state[key].shape) != tuple(tensor.shape):
            got, want = tuple(state[key].shape), tuple(tensor.shape)
            problems.append(f"{key!r} has shape {got} where the model needs {want}")
    problems += [f"it has {key!r}, which the model does not" for key in state if key not in expected]
    if problems:
        more = f" ({len(problems) - 1} more mismatches)" if len(problems) > 1 else ""
        raise ZooError(f"{what} does not fit the architecture: {problems[0]}{more}.")


# ---------------------------------------------------------------- records of models


def record_for_model(
    model: nn.Module,
    architecture: str,
    *,
    id: str,
    input_size: Sequence[int],
    mean: Sequence[float],
    std: Sequence[float],
    num_classes: int | None = None,
    **fields: Any,
) -> ModelRecord:
    """A record for ``model`` built as ``architecture``: head, layer groups and size read from the model."""
    if num_classes is None:
        head = model.get_submodule(head_name(model, architecture))
        num_classes = int(getattr(head, "out_features", getattr(head, "out_channels", 0)))
    fields.setdefault("name", id)
    return ModelRecord(
        id=id,
        architecture=architecture,
        num_classes=num_classes,
        input_size=tuple(input_size),  # type: ignore[arg-type]
        mean=tuple(mean),
        std=tuple(std),
        head=head_name(model, architecture),
        layer_groups=layer_groups(model, architecture),
        num_params=param_count(model),
        **fields,
    )


def build_for_record(record: ModelRecord) -> nn.Module:
    """The record's architecture with random weights, sized by its classes, channels and input size."""
    _, height, width = record.input_size
    return build_model(
        record.architecture, record.num_classes, record.in_channels, (height, width), **record.arch_kwargs
    )


# ---------------------------------------------------------------- torchvision


def record_from_torchvision(architecture: str, weights: str = "DEFAULT") -> ModelRecord:
    """A record from torchvision's weight enum (``resnet18``, ``IMAGENET1K_V1``); reads meta, never downloads.

    Preprocessing comes from the enum's ``transforms()`` (crop size, resize size, mean, std,
    interpolation); classes, parameter count, reported metrics and recipe from its ``meta``.
    """
    import torchvision.models as tvm

    try:
        enum = tvm.get_model_weights(architecture)
    except (ValueError, KeyError) as err:
        raise ZooError(f"torchvision has no pretrained weights for {architecture!r}.") from err
    try:
        entry = enum[weights]
    except KeyError as err:
        names = ", ".join(["DEFAULT", *(w.name for w in enum)])
        raise ZooError(f"{architecture} has no weights {weights!r}; torchvision offers {names}.") from err
    transform = entry.transforms()
    crop = getattr(transform, "crop_size", None)
    if crop is None or not hasattr(transform, "mean"):
        raise ZooError(f"{enum.__name__}.{entry.name} are not image-classification weights.")
    meta = entry.meta
    categories = [str(c) for c in meta["categories"]]
    model = build_model(architecture, len(categories), 3, crop[0])
    reported = meta.get("_metrics", {})
    filename = os.path.basename(urlparse(entry.url).path)
    source = f"torchvision:{architecture}.{entry.name}"
    recipe = meta.get("recipe", "")
    if meta.get("num_params") not in (None, param_count(model)):
        raise ZooError(
            f"{source} reports {meta['num_params']} parameters but the built model has {param_count(model)}."
        )
    return record_for_model(
        model,
        architecture,
        id=f"torchvision.{architecture}.{entry.name}",
        name=f"{architecture} ({entry.name})",
        num_classes=len(categories),
        input_size=(3, crop[0], crop[-1]),
        mean=transform.mean,
        std=transform.std,
        interpolation=transform.interpolation.value,
        license=(
            "unspecified: torchvision says pretrained weights may carry terms of their training data"
            + (f"; recipe {recipe}" if recipe else "")
        ),
        source=source,
        version=entry.name,
        pretrained_on=next(iter(reported), None),
        metrics=reported,
        class_names=categories,
        description=" ".join(str(meta.get("_docs", "")).split()) or None,
        extra={
            "weights_enum": f"{enum.__name__}.{entry.name}",
            "url": entry.url,
            "filename": filename,
            "recipe": recipe,
            "resize_size": list(transform.resize_size),
            "crop_pct": crop[0] / transform.resize_size[0],
        },
    )


# timm pretrained tags -> dataset name, e.g. "resnet18.a1_in1k" -> ImageNet-1K
_TIMM_DATASETS = {"in1k": "ImageNet-1K", "in21k": "ImageNet-21K", "in22k": "ImageNet-22K"}


def record_from_timm(name: str, checkpoint: str | None = None, checksum: str | None = None) -> ModelRecord:
    """A record from a timm model's ``pretrained_cfg`` (``resnet18``, ``resnet18.a1_in1k``); never downloads.

    ``input_size``, ``mean``, ``std``, ``interpolation``, ``license`` and the head come from the config,
    layer groups from ``group_matcher``. Weights must already be on disk: pass their ``checkpoint``.
    """
    timm = import_timm()
    try:
        model = timm.create_model(name, pretrained=False)
    except RuntimeError as err:
        raise ZooError(f"timm cannot build {name!r}: {err}") from err
    cfg = dict(model.pretrained_cfg)
    architecture = TIMM_PREFIX + name
    tag = cfg.get("tag") or ""
    interpolation = cfg.get("interpolation") or "bilinear"
    return record_for_model(
        model,
        architecture,
        id=f"timm.{name}",
        name=f"timm {name}",
        num_classes=int(cfg.get("num_classes") or model.num_classes),
        input_size=cfg["input_size"],
        mean=cfg["mean"],
        std=cfg["std"],
        interpolation=interpolation if interpolation in INTERPOLATIONS else "bilinear",
        checkpoint=checkpoint,
        checksum=checksum,
        license=cfg.get("license"),
        source=architecture,
        version=tag or None,
        pretrained_on=next((d for key, d in _TIMM_DATASETS.items() if tag.endswith(key)), None),
        extra={
            key: cfg[key]
            for key in ("hf_hub_id", "url", "crop_pct", "crop_mode", "origin_url", "paper_ids")
            if cfg.get(key) not in (None, "")
        },
    )


def torchvision_cache_path(record: ModelRecord) -> Path:
    """Where torch hub keeps the record's weight file: ``torch.hub.get_dir()/checkpoints/<file>``."""
    filename = record.extra.get("filename") or os.path.basename(urlparse(record.extra.get("url", "")).path)
    if not filename:
        raise ZooError(f"record {record.id!r} names no torchvision weight file (extra.url).")
    return Path(torch.hub.get_dir()) / "checkpoints" / filename


def _torchvision_weights(record: ModelRecord) -> Path:
    path = torchvision_cache_path(record)
    if not path.is_file():
        enum = record.extra.get("weights_enum", record.source)
        raise ZooError(
            f"the weights of {record.source} are not in the torch hub cache ({path}); fetch them once "
            f"online with `python -c \"import torchvision; torchvision.models.get_weight('{enum}')"
            f'.get_state_dict()"` or copy {record.extra.get("url", "the weight file")} there.'
        )
    match = _HASH_IN_NAME.search(path.name)
    if match and match.group(1) and not file_checksum(path).startswith(match.group(1)):
        raise ZooError(
            f"{path} does not match the SHA-256 prefix {match.group(1)} in its name: the download is "
            "corrupt or a different file; delete it and fetch it again."
        )
    return path


# ---------------------------------------------------------------- loading


def checkpoint_path(record: ModelRecord) -> Path:
    """The file ``load_model`` reads for ``record``: its checkpoint, else where its source keeps weights."""
    if record.checkpoint:
        path = Path(record.checkpoint).expanduser()
        if path.is_file() or not record.source.startswith("ccexam:"):
            return path
    if record.source.startswith("ccexam:"):
        return ccexam_weights_path(record.source.split(":", 1)[1])
    if record.source.startswith("torchvision:"):
        return _torchvision_weights(record)
    if record.source.startswith(TIMM_PREFIX):
        raise ZooError(
            f"record {record.id!r} has no checkpoint; kgraft does not download timm weights: save them once "
            "online (timm.create_model(name, pretrained=True)) with transfer.zoo.save_checkpoint and set "
            "the record's checkpoint."
        )
    raise ZooError(f"record {record.id!r} has no checkpoint to load.")


def load_model(record: ModelRecord, verify_checksum: bool = True) -> nn.Module:
    """Build ``record``'s architecture and load its weights strictly; returns the model in eval mode on CPU.

    The checkpoint's SHA-256 is compared with ``record.checksum`` when the record has one. Raises
    ``ZooError`` for a missing file, a checksum mismatch, an unsafe pickle or a state dict that does not
    fit the architecture (naming the first mismatched key).
    """
    path = checkpoint_path(record)
    if not path.is_file():
        raise ZooError(f"checkpoint {path} of model {record.id!r} does not exist.")
    if verify_checksum and record.checksum:
        actual = file_checksum(path)
        if actual != record.checksum:
            raise ZooError(
                f"checkpoint {path} has SHA-256 {actual[:12]}... but model {record.id!r} expects "
                f"{record.checksum[:12]}...: the file changed or belongs to another model."
            )
    state = read_state_dict(path)
    model = build_for_record(record)
    check_state_dict(model, state, f"checkpoint {path} of model {record.id!r}")
    model.load_state_dict(state, strict=True)
    return model.eval()


def chop_head(
    model: nn.Module,
    record: ModelRecord,
    num_classes: int,
    class_names: Sequence[str] | None = None,
    seed: int | None = None,
) -> nn.Module:
    """Give ``model`` a freshly initialised classifier for ``num_classes`` outputs, in place; returns it.

    The old head stays only when the label space is the same: ``num_classes`` equals the record's and
    ``class_names`` are given and equal the record's class names. ``seed`` makes the new weights
    reproducible without touching the global random state.
    """
    if (
        num_classes == record.num_classes
        and class_names is not None
        and list(class_names) == list(record.class_names)
    ):
        return model
    if num_classes < 1:
        raise ZooError(f"a classifier needs at least one class, got {num_classes}.")
    old = model.get_submodule(record.head)
    with torch.random.fork_rng(devices=[]):
        if seed is not None:
            torch.manual_seed(seed)
        if record.architecture.startswith(TIMM_PREFIX) and hasattr(model, "reset_classifier"):
            model.reset_classifier(num_classes)  # type: ignore[operator]
            return model
        if isinstance(old, nn.Linear):
            new: nn.Module = nn.Linear(old.in_features, num_classes, bias=old.bias is not None)
        elif isinstance(old, nn.Conv2d) and old.kernel_size == (1, 1):
            new = nn.Conv2d(old.in_channels, num_classes, kernel_size=1, bias=old.bias is not None)
        else:
            raise ZooError(
                f"the head {record.head!r} of {record.id!r} is a {type(old).__name__}, which chop_head "
                "cannot resize (it replaces Linear and 1x1 Conv2d heads)."
            )
    new.to(device=old.weight.device, dtype=old.weight.dtype)
    model.set_submodule(record.head, new)
    return model


__all__ = [
    "StateDict",
    "ZooError",
    "build_for_record",
    "check_state_dict",
    "checkpoint_path",
    "chop_head",
    "file_checksum",
    "load_model",
    "read_state_dict",
    "record_for_model",
    "record_from_timm",
    "record_from_torchvision",
    "save_checkpoint",
    "torchvision_cache_path",
]

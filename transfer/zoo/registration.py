"""Putting the model zoo into the graph: the demo zoo (pretrained here, ``transfer.zoo.pretrain``),
ccexam's published weights, and single models a user adds (torchvision, timm, ccexam or a local
checkpoint, ``record_from_spec``)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path

from kg import GraphStore
from kg.errors import InvalidRecord
from kg.ids import checkpoint_id
from transfer.data.base import ImageDataset
from transfer.register import external_dataset_batch, model_batch, register_model
from transfer.zoo.architectures import build_model
from transfer.zoo.bundled import ccexam_records
from transfer.zoo.ccexam import ccexam_installed
from transfer.zoo.loading import (
    file_checksum,
    load_model,
    read_state_dict,
    record_for_model,
    record_from_timm,
    record_from_torchvision,
)
from transfer.zoo.pretrain import build_demo_zoo
from transfer.zoo.record import ModelRecord, ZooError

DEMO_AGENT = "kgraft demo zoo"
CCEXAM_AGENT = "ccexam authors (FYS-8805 collaborative coding exam)"


def register_ccexam(store: GraphStore) -> list[ModelRecord]:
    """Record ccexam's MNIST, USPS and SVHN models with their (external) pretraining datasets."""
    if not ccexam_installed():
        raise ZooError("ccexam is not installed: pip install --no-deps ccexam")
    records = ccexam_records()
    for record in records:
        batch = external_dataset_batch(record.pretrained_on)
        batch.merge(model_batch(record, pretrained_on=record.pretrained_on, agent=CCEXAM_AGENT))
        store.apply(batch)
    return records


def build_and_register_demo_zoo(
    store: GraphStore,
    datasets: dict[str, ImageDataset],
    out_dir: str | Path,
    progress: Callable[[str, int, int], None] | None = None,
    epochs: int = 3,
) -> list[ModelRecord]:
    """Pretrain (or load cached) one small CNN per dataset and record each with its pretraining Activity.

    ``datasets`` maps graph dataset ids to the datasets (already registered).
    """
    named = {dataset_id: replace(ds, name=dataset_id) for dataset_id, ds in datasets.items()}
    built = build_demo_zoo(out_dir, named, epochs=epochs, progress=progress)
    records = []
    for record, activity in built:
        training = {k: activity.get(k) for k in ("settings", "metrics", "started", "ended", "device")}
        register_model(store, record, pretrained_on=record.pretrained_on, training=training, agent=DEMO_AGENT)
        records.append(record)
    return records


def _floats(text: str, what: str) -> tuple[float, ...]:
    try:
        return tuple(float(v) for v in text.split(","))
    except ValueError:
        raise InvalidRecord(f"{what} takes comma-separated numbers, got {text!r}.") from None


def record_from_spec(
    spec: str,
    *,
    name: str | None = None,
    architecture: str | None = None,
    input_size: str | None = None,
    mean: str | None = None,
    std: str | None = None,
    class_names: Sequence[str] = (),
    license: str | None = None,
) -> ModelRecord:
    """A model record from ``torchvision:ARCH[:WEIGHTS]``, ``timm:NAME[:CHECKPOINT]``, ``ccexam:NAME`` or a
    local checkpoint path (which then needs ``architecture``, ``input_size`` C,H,W, ``mean`` and ``std``)."""
    kind, _, rest = spec.partition(":")
    if kind == "torchvision" and rest:
        arch, _, weights = rest.partition(":")
        return record_from_torchvision(arch, weights or "DEFAULT")
    if kind == "timm" and rest:
        model_name, _, checkpoint = rest.partition(":")
        return record_from_timm(
            model_name, checkpoint or None, file_checksum(checkpoint) if checkpoint else None
        )
    if kind == "ccexam" and rest:
        for record in ccexam_records():
            if rest in {record.id, record.id.removeprefix("ccexam.")}:
                return record
        raise ZooError(f"ccexam has no model {rest!r}; it ships mnist, usps and svhn.")
    path = Path(spec)
    if not path.is_file():
        raise ZooError(
            f"{spec!r} is neither a checkpoint file nor torchvision:ARCH[:WEIGHTS], timm:NAME or ccexam:NAME."
        )
    missing = [
        flag
        for flag, v in (
            ("--architecture", architecture),
            ("--input-size", input_size),
            ("--mean", mean),
            ("--std", std),
        )
        if not v
    ]
    if missing:
        raise ZooError(f"a local checkpoint needs {', '.join(missing)}.")
    size = tuple(int(v) for v in _floats(input_size, "--input-size"))
    state = read_state_dict(path)
    head_weights = [v for k, v in state.items() if k.endswith("weight") and v.ndim == 2]
    num_classes = int(head_weights[-1].shape[0]) if head_weights else len(class_names) or 1
    model = build_model(architecture, num_classes, in_channels=size[0], image_size=size[1])
    record = record_for_model(
        model,
        architecture,
        id=checkpoint_id(name or path.stem),
        input_size=size,
        mean=_floats(mean, "--mean"),
        std=_floats(std, "--std"),
        num_classes=num_classes,
        checkpoint=str(path.resolve()),
        checksum=file_checksum(path),
        source="local",
        class_names=list(class_names),
        license=license,
    )
    load_model(record)  # refuses an unsafe pickle or weights that do not fit the architecture
    return record

"""The record that travels with every zoo model, as timm's ``PretrainedCfg`` does.

A ``ModelRecord`` says what a model is (architecture, classes, layer groups, head), how its inputs must
look (``input_size``, ``mean``, ``std``, ``interpolation``) and where its weights live (``checkpoint``,
``checksum``, ``source``). ``to_properties`` gives exactly the Model node's properties of
``ontology.vocab``; ``pretrained_on`` stays outside them because the graph holds it as a TRAINED_ON edge.
"""

from __future__ import annotations

import copy
import json
import math
from dataclasses import dataclass, field
from typing import Any

from kg.errors import UserError

INTERPOLATIONS = ("nearest", "bilinear", "bicubic", "area", "lanczos", "nearest-exact")

# Record fields stored as Model node properties under the same name.
_PROPERTY_FIELDS = (
    "id", "name", "description", "created", "version", "kind", "architecture", "num_params", "num_classes",
    "input_size", "mean", "std", "interpolation", "head", "layer_groups", "checkpoint", "checksum", "license",
    "source", "metrics",
)  # fmt: skip
# Record fields without a property of their own: they travel inside ``extra``.
_EXTRA_FIELDS = ("class_names", "arch_kwargs")


class ZooError(UserError, ValueError):
    """A model cannot be built, loaded or described as asked; the message is one sentence for the user."""


def _decode_json(value: Any) -> Any:
    """Stores may hand json-kind properties back as text; accept both text and decoded values."""
    return json.loads(value) if isinstance(value, str) else value


@dataclass
class ModelRecord:
    """What a pretrained model is, what it expects, and where its weights are.

    ``input_size`` is (C, H, W); ``mean``/``std`` are per channel on the [0, 1] pixel scale;
    ``head`` names the classifier module (``"fc"``, ``"classifier.1"``, ``"head"``); ``layer_groups`` lists
    module-name prefixes per group, ordered input to output with the head's group last, covering every
    parameter exactly once. ``arch_kwargs`` are extra constructor arguments of the architecture (e.g. a
    SmallCNN's ``width``). ``extra`` holds anything else worth keeping (a weight URL, crop fraction, ...).
    """

    id: str
    name: str
    architecture: str
    num_classes: int
    input_size: tuple[int, int, int]
    mean: tuple[float, ...]
    std: tuple[float, ...]
    head: str
    layer_groups: list[list[str]]
    interpolation: str = "bilinear"
    checkpoint: str | None = None
    checksum: str | None = None
    license: str | None = None
    source: str = "local"
    pretrained_on: str | None = None
    num_params: int | None = None
    metrics: dict[str, Any] = field(default_factory=dict)
    class_names: list[str] = field(default_factory=list)
    arch_kwargs: dict[str, Any] = field(default_factory=dict)
    kind: str = "classifier"
    version: str | None = None
    description: str | None = None
    created: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.input_size = tuple(int(v) for v in self.input_size)  # type: ignore[assignment]
        self.mean = tuple(float(v) for v in self.mean)
        self.std = tuple(float(v) for v in self.std)
        self.layer_groups = [list(group) for group in self.layer_groups]
        self.class_names = [str(c) for c in self.class_names]
        self._validate()

    def _validate(self) -> None:
        where = f"model record {self.id!r}"
        if len(self.input_size) != 3 or min(self.input_size) < 1:
            raise ZooError(
                f"{where} needs input_size (C, H, W) of positive whole numbers, got {self.input_size}."
            )
        channels = self.input_size[0]
        if len(self.mean) != channels or len(self.std) != channels:
            raise ZooError(f"{where} needs one mean and one std per input channel ({channels}).")
        if not all(math.isfinite(s) and s > 0 for s in self.std):
            raise ZooError(f"{where} needs positive finite std values, got {self.std}.")
        if self.num_classes < 1:
            raise ZooError(f"{where} needs at least one class, got {self.num_classes}.")
        if self.class_names and len(self.class_names) != self.num_classes:
            raise ZooError(f"{where} has {len(self.class_names)} class names for {self.num_classes} classes.")
        if self.interpolation not in INTERPOLATIONS:
            raise ZooError(f"{where} has interpolation {self.interpolation!r}; use one of {INTERPOLATIONS}.")
        if not self.layer_groups or any(not group for group in self.layer_groups):
            raise ZooError(f"{where} needs at least one layer group and no empty group.")
        if not any(self.head == p or self.head.startswith(p + ".") for p in self.layer_groups[-1]):
            raise ZooError(f"{where} must have its head {self.head!r} in the last layer group.")
        overlap = set(self.extra) & set(_EXTRA_FIELDS)
        if overlap:
            raise ZooError(f"{where} keeps {sorted(overlap)} as fields, not inside extra.")

    @property
    def in_channels(self) -> int:
        """Channels the model's first layer takes."""
        return self.input_size[0]

    def to_properties(self) -> dict[str, Any]:
        """The Model node's properties (names of ontology.vocab, json kinds as lists/dicts), ``None`` omitted.

        ``class_names`` and ``arch_kwargs`` go into ``extra``; ``pretrained_on`` is not a property (it is
        the TRAINED_ON edge).
        """
        props: dict[str, Any] = {}
        for name in _PROPERTY_FIELDS:
            value = getattr(self, name)
            if isinstance(value, tuple):
                value = list(value)
            if value is not None:
                props[name] = value
        props["layer_groups"] = [list(group) for group in self.layer_groups]
        props["metrics"] = copy.deepcopy(self.metrics)  # the caller may edit props without touching us
        extra = copy.deepcopy(self.extra)
        if self.class_names:
            extra["class_names"] = list(self.class_names)
        if self.arch_kwargs:
            extra["arch_kwargs"] = dict(self.arch_kwargs)
        props["extra"] = extra
        return props

    @classmethod
    def from_properties(cls, props: dict[str, Any], pretrained_on: str | None = None) -> ModelRecord:
        """Rebuild a record from Model node properties (json kinds decoded or as text).

        ``pretrained_on`` is the dataset at the end of the model's TRAINED_ON edge, if any.
        """
        missing = [name for name in ("id", "architecture", "num_classes", "input_size", "mean", "std",
                                     "head", "layer_groups") if props.get(name) is None]  # fmt: skip
        if missing:
            raise ZooError(f"model properties lack {missing}; a record needs them to rebuild the model.")
        values: dict[str, Any] = {}
        for name in _PROPERTY_FIELDS:
            value = props.get(name)
            if value is None:
                continue
            if name in ("input_size", "mean", "std", "layer_groups", "metrics"):
                value = _decode_json(value)
            values[name] = value
        extra = dict(_decode_json(props.get("extra")) or {})
        for name in _EXTRA_FIELDS:
            if name in extra:
                values[name] = extra.pop(name)
        values["extra"] = extra
        values.setdefault("name", values["id"])
        values["num_classes"] = int(values["num_classes"])
        if values.get("num_params") is not None:
            values["num_params"] = int(values["num_params"])
        return cls(pretrained_on=pretrained_on, **values)

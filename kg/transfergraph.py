"""Import the public TransferGraph image-classification records as graph nodes and outcomes.

The folder (``resources/experiments/image_classification`` of zLizy/transfergraph, ICDE 2024) holds:

* ``model_config_dataset.csv``: one row per Hugging Face model: architecture, pretraining dataset,
  number of labels, reported accuracy, model type, number of parameters.
* ``records.csv``: one row per fine-tuning run: model x target dataset -> ``test_accuracy``, with the
  run's epochs, batch size and learning rate.
* ``target_dataset_features.csv``: each target's size and number of classes (not every target of
  ``records.csv`` is listed; those get a Dataset node without size).

What the batch holds:

====================================  =============================================================
element                               from
====================================  =============================================================
``Model hf:{name}``                   a config row: architecture (first of ``architectures``),
                                      ``num_params``, ``num_classes`` (``#labels``), ``input_size``
                                      [3, s, s], ``metrics`` {"reported_accuracy"}, ``extra``
                                      {"model_type", ...}, ``source`` "transfergraph"
``Dataset {dataset_id(name)}``        a pretraining dataset (config ``dataset``) or a target; one node
                                      when a dataset is both (eurosat, cifar100, food101, ...); a
                                      target missing from the features file takes its class count
                                      from the models pretrained on it when they all agree
``TRAINED_ON`` Model -> Dataset       the model's pretraining dataset
``TRANSFERRED_TO`` Model -> Dataset   a records row: ``accuracy`` = ``test_accuracy``, ``activity``
                                      "transfergraph:{row index}", ``preset`` "transfergraph", the
                                      regime (``epochs``, ``batch_size``, ``learning_rate`` = ``lr``,
                                      ``train_size`` = size x the ``train_slice`` fraction), ``failed``
                                      (``kg.outcomes.is_failed_run``), ``extra`` {eval_accuracy, ...}
====================================  =============================================================

Dataset ids follow ``kg.ids`` (``cats_vs_dogs`` -> ``cats-vs-dogs``), so a target named like a
dataset registered locally or imported from Croissant lands on that node; stores written before this
rule keep their ``transfergraph:{name}`` ids (``kg.adopt``).
"""

from __future__ import annotations

import ast
import csv
import math
from pathlib import Path
from typing import Any

from kg.adopt import adopt
from kg.batch import GraphBatch
from kg.errors import InvalidRecord
from kg.ids import dataset_id
from kg.ids import hf_model_id as model_id
from kg.outcomes import chance_accuracy, is_failed_run
from kg.store import GraphStore
from ontology.vocab import Label, Rel

MODEL_FILE = "model_config_dataset.csv"
RECORDS_FILE = "records.csv"
TARGETS_FILE = "target_dataset_features.csv"
SOURCE = "transfergraph"

_MODEL_COLUMNS = (
    "model",
    "architectures",
    "dataset",
    "#labels",
    "accuracy",
    "model_type",
    "number_of_parameters",
)
_RECORD_COLUMNS = ("model", "finetuned_dataset", "epochs", "batch_size", "lr", "test_accuracy")
_TARGET_COLUMNS = ("target_dataset", "size", "number_of_classes")


def _read(path: Path, required: tuple[str, ...]) -> list[dict[str, str]]:
    if not path.is_file():
        raise InvalidRecord(f"{path} is missing; a TransferGraph folder holds {MODEL_FILE} and more.")
    try:
        with path.open(newline="", encoding="utf-8") as f:
            reader = csv.DictReader(f)
            rows = list(reader)
            header = reader.fieldnames or []
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise InvalidRecord(f"cannot read {path}: {exc}.") from None
    missing = [c for c in required if c not in header]
    if missing:
        raise InvalidRecord(f"{path.name} lacks the column(s) {', '.join(missing)}.")
    return rows


def _number(value: str, where: str, *, required: bool = False) -> float | None:
    text = (value or "").strip()
    if not text:
        if required:
            raise InvalidRecord(f"{where} is empty.")
        return None
    try:
        out = float(text)
    except ValueError:
        raise InvalidRecord(f"{where} must be a number, got {text!r}.") from None
    if not math.isfinite(out):
        raise InvalidRecord(f"{where} must be a finite number, got {text!r}.")
    return out


def _architecture(value: str) -> str | None:
    """``"['ViTForImageClassification']"`` -> ``"ViTForImageClassification"``."""
    text = (value or "").strip()
    if not text:
        return None
    try:
        parsed = ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return text
    if isinstance(parsed, list | tuple):
        return str(parsed[0]) if parsed else None
    return str(parsed)


def transfergraph_batch(directory: str | Path, store: GraphStore | None = None) -> GraphBatch:
    """The TransferGraph records under ``directory`` as one batch (see the module docstring).

    ``store``, if given, is only read: a dataset registered from images keeps its source, and a store
    written by an older version keeps its ``transfergraph:{name}`` ids (``kg.adopt``).

    Raises ``InvalidRecord`` (one sentence) for a missing file or column, a malformed number, an
    accuracy outside [0, 1], or a run whose model is not in the model table.
    """
    models, targets, records = _read_tables(Path(directory))
    b = GraphBatch()
    pretrained_labels: dict[str, set[int]] = {}  # pretraining dataset -> the models' class counts
    known = {_add_model(b, row, i, pretrained_labels) for i, row in enumerate(models, start=2)}
    profile = dict(_add_target(b, row, i) for i, row in enumerate(targets, start=2))
    for i, row in enumerate(records, start=2):
        _add_run(b, row, i, known, profile, pretrained_labels)
    return adopt(store, b, "transfergraph") if store is not None else b


def _read_tables(directory: Path) -> tuple[list[dict[str, str]], list[dict[str, str]], list[dict[str, str]]]:
    """The model, target and record tables of a TransferGraph folder (line numbers as an editor shows
    them start at 2); the target table is optional. Refuses a missing folder or an empty model table."""
    if not directory.is_dir():
        raise InvalidRecord(f"{directory} is not a folder of TransferGraph records.")
    models = _read(directory / MODEL_FILE, _MODEL_COLUMNS)
    records = _read(directory / RECORDS_FILE, _RECORD_COLUMNS)
    targets_path = directory / TARGETS_FILE
    targets = _read(targets_path, _TARGET_COLUMNS) if targets_path.exists() else []
    if not models:
        raise InvalidRecord(f"{MODEL_FILE} in {directory} has no models.")
    return models, targets, records


def _add_model(b: GraphBatch, row: dict[str, str], line: int, pretrained_labels: dict[str, set[int]]) -> str:
    """Add one row of the model table: the Model and, when it names one, its pretraining Dataset with
    TRAINED_ON. Notes the model's class count under its pretraining dataset; returns the model's name."""
    name = (row.get("model") or "").strip()
    if not name:
        raise InvalidRecord(f"{MODEL_FILE} line {line} has no model name.")
    where = f"{MODEL_FILE} line {line} ({name})"
    accuracy = _number(row.get("accuracy", ""), f"{where}: accuracy")
    num_params = _number(row.get("number_of_parameters", ""), f"{where}: number_of_parameters")
    labels = _number(row.get("#labels", ""), f"{where}: #labels")
    size = _number(row.get("input_shape", ""), f"{where}: input_shape")
    extra: dict[str, Any] = {"model_type": (row.get("model_type") or "").strip() or None}
    for column in ("output_shape", "memory_consumption", "problem_type"):
        value = (row.get(column) or "").strip()
        if value:
            extra[column] = value
    b.node(
        Label.MODEL,
        model_id(name),
        name=name,
        kind="classifier",
        architecture=_architecture(row.get("architectures", "")),
        num_params=int(num_params) if num_params is not None else None,
        num_classes=int(labels) if labels is not None else None,
        input_size=[3, int(size), int(size)] if size else None,
        metrics={"reported_accuracy": accuracy} if accuracy is not None else None,
        source=SOURCE,
        extra={k: v for k, v in extra.items() if v is not None},
    )
    pretrained_on = (row.get("dataset") or "").strip()
    if pretrained_on:
        if labels is not None:
            pretrained_labels.setdefault(pretrained_on, set()).add(int(labels))
        b.node(Label.DATASET, dataset_id(pretrained_on), name=pretrained_on, source=SOURCE)
        b.edge(
            Rel.TRAINED_ON,
            (Label.MODEL, model_id(name)),
            (Label.DATASET, dataset_id(pretrained_on)),
            split="train",
        )
    return name


def _add_target(
    b: GraphBatch, row: dict[str, str], line: int
) -> tuple[str, tuple[float | None, float | None]]:
    """Add one row of the target table as a Dataset with its size and class count; returns
    (name, (size, classes)) for the runs on it."""
    name = (row.get("target_dataset") or "").strip()
    if not name:
        raise InvalidRecord(f"{TARGETS_FILE} line {line} has no target_dataset.")
    where = f"{TARGETS_FILE} line {line} ({name})"
    size = _number(row.get("size", ""), f"{where}: size")
    classes = _number(row.get("number_of_classes", ""), f"{where}: number_of_classes")
    b.node(
        Label.DATASET,
        dataset_id(name),
        name=name,
        source=SOURCE,
        n_samples=int(size) if size is not None else None,
        n_classes=int(classes) if classes is not None else None,
    )
    return name, (size, classes)


def _add_run(
    b: GraphBatch,
    row: dict[str, str],
    line: int,
    known: set[str],
    profile: dict[str, tuple[float | None, float | None]],
    pretrained_labels: dict[str, set[int]],
) -> None:
    """Add one row of the record table: a TRANSFERRED_TO outcome from its model to its target (and
    the target Dataset, with the class count its models agree on when the target table lacks it).
    ``profile`` holds the target table's (size, classes); a run at chance is marked failed."""
    name = (row.get("model") or "").strip()
    target = (row.get("finetuned_dataset") or "").strip()
    index = (row.get("") or "").strip() or str(line - 2)  # the unnamed first column is the row index
    where = f"{RECORDS_FILE} line {line}"
    if name not in known:
        raise InvalidRecord(f"{where} names model {name!r}, which is not in {MODEL_FILE}.")
    if not target:
        raise InvalidRecord(f"{where} has no finetuned_dataset.")
    accuracy = _number(row.get("test_accuracy", ""), f"{where}: test_accuracy", required=True)
    if not 0.0 <= accuracy <= 1.0:
        raise InvalidRecord(f"{where}: test_accuracy must lie in [0, 1], got {accuracy}.")
    extra = _run_extra(row, where)
    epochs = _number(row.get("epochs", ""), f"{where}: epochs")
    batch_size = _number(row.get("batch_size", ""), f"{where}: batch_size")
    size, classes = profile.get(target, (None, None))
    if classes is None and len(pretrained_labels.get(target, ())) == 1:
        classes = float(next(iter(pretrained_labels[target])))
    fraction = _slice_fraction(row.get("train_slice", ""))
    b.node(Label.DATASET, dataset_id(target), name=target, source=SOURCE)
    if classes is not None and target not in profile:
        b.node(Label.DATASET, dataset_id(target), n_classes=int(classes))
    b.edge(
        Rel.TRANSFERRED_TO,
        (Label.MODEL, model_id(name)),
        (Label.DATASET, dataset_id(target)),
        activity=f"{SOURCE}:{index}",
        accuracy=accuracy,
        preset=SOURCE,
        epochs=int(epochs) if epochs is not None else None,
        batch_size=int(batch_size) if batch_size is not None else None,
        learning_rate=_number(row.get("lr", ""), f"{where}: lr"),
        train_size=round(size * fraction) if size is not None and fraction is not None else None,
        failed=is_failed_run(accuracy, chance_accuracy(int(classes) if classes else None)),
        extra=extra,
    )


def _run_extra(row: dict[str, str], where: str) -> dict[str, Any]:
    """The record's columns kept as the outcome's ``extra``: eval accuracy and time as numbers, the
    split slices as text."""
    extra: dict[str, Any] = {}
    for column in ("eval_accuracy", "elapsed_time"):
        value = _number(row.get(column, ""), f"{where}: {column}")
        if value is not None:
            extra[column] = value
    for column in ("train_slice", "val_slice", "test_slice"):
        value = (row.get(column) or "").strip()
        if value:
            extra[column] = value
    return extra


def _slice_fraction(value: str) -> float | None:
    """The share of the data a Hugging Face split slice takes: ``":0.7"`` -> 0.7, ``"0.7:0.9"`` ->
    0.2; ``None`` when it is not a fractional slice."""
    text = (value or "").strip()
    if ":" not in text:
        return None
    low, _, high = text.partition(":")
    try:
        a, b = float(low or 0.0), float(high or 1.0)
    except ValueError:
        return None
    return b - a if 0.0 <= a < b <= 1.0 else None

"""Writes the server accepts, each through the library path the command line uses, so the same
validation applies: ``register_dataset`` (``kgraft dataset add``), ``transfer.track`` (runs recorded
from elsewhere), and ``import_croissant``, ``read_rdf`` and ``kg.openlineage.import_batch`` with
``GraphStore.apply`` (``kgraft import croissant|rdf``, ``kgraft openlineage import``). Each write is
a validated ``GraphBatch`` applied in one transaction, so a refused write leaves nothing behind.

Importers are looked up by name in ``IMPORTERS`` (Croissant, RDF, OpenLineage RunEvents); another
format plugs in by adding ``name -> function(store, body, content_type, file_name) -> ApplyStats`` there.
"""

from __future__ import annotations

import re
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from kg import GraphStore
from kg.errors import InvalidRecord, KgError
from kg.store import ApplyStats

MAX_IMPORT_BYTES = 50 * 1024 * 1024
T = TypeVar("T")


def register_dataset_spec(
    store: GraphStore,
    spec: str,
    *,
    name: str | None = None,
    derived_from: str | None = None,
    domain: str | None = None,
    biases: list[str] = (),
    agent: str | None = None,
    new_version: bool = False,
    concepts: bool = True,
    hint: str | None = None,
) -> dict[str, Any]:
    """What ``kgraft dataset add SPEC`` does: load, profile and record a dataset; returns its id,
    whether it was created, its profile and notes."""
    from kg.wordnet import WordNet
    from transfer.data.sources import load_dataset
    from transfer.register import parse_bias, register_dataset

    parsed = [parse_bias(b) for b in biases]  # a malformed bias fails before any loading
    ds = load_dataset(spec)
    if name:
        ds.name = name
    reg = register_dataset(
        store,
        ds,
        derived_from=derived_from,
        domain=domain,
        biases=parsed,
        agent=agent,
        new_version=new_version,
        wordnet=WordNet.load() if concepts else None,
        concept_hint=hint,
    )
    return {"id": reg.id, "created": reg.created, "profile": reg.profile, "notes": list(reg.notes)}


def record_outcome(
    store: GraphStore,
    source: str,
    target: str,
    accuracy: float,
    *,
    baseline_accuracy: float | None = None,
    preset: str | None = None,
    train_size: int | None = None,
    epochs: int | None = None,
    batch_size: int | None = None,
    learning_rate: float | None = None,
    framework: str = "http",
) -> dict[str, str]:
    """A fine-tuning run made elsewhere, recorded through ``transfer.track`` (what the Lightning and
    Hugging Face callbacks use): the Activity, the fine-tuned Model with its lineage, and the
    TRANSFERRED_TO outcome with its regime. Returns the run's and the model's ids."""
    from transfer import track

    measured = {} if baseline_accuracy is None else {"baseline_accuracy": baseline_accuracy}
    with track.run(
        store,
        source=source,
        target=target,
        train_size=train_size,
        epochs=epochs,
        batch_size=batch_size,
        learning_rate=learning_rate,
        preset=preset,
        framework=framework,
    ) as run:
        run.set_outcome(accuracy=accuracy, **measured)
    return {"activity": run.run_id, "model": run.model_id}


def _file_name(name: str | None, suffix: str) -> str:
    """A safe file name for the uploaded document (the importers record it as the source)."""
    base = re.sub(r"[^A-Za-z0-9._-]", "_", Path(name or "").name).lstrip(".")[:100]
    return base or f"upload{suffix}"


def _with_file(body: bytes, name: str, read: Callable[[Path], T]) -> T:
    if len(body) > MAX_IMPORT_BYTES:
        raise InvalidRecord(f"the document is larger than {MAX_IMPORT_BYTES // 2**20} MiB.")
    if not body.strip():
        raise InvalidRecord("the request body is empty; send the document as the body.")
    with tempfile.TemporaryDirectory(prefix="kgraft-import-") as folder:
        path = Path(folder) / name
        path.write_bytes(body)
        return read(path)


def import_croissant(store: GraphStore, body: bytes, content_type: str, name: str | None) -> ApplyStats:
    """``kgraft import croissant``: the body is a Croissant JSON-LD document (``name``: its file name)."""
    from kg.croissant import import_croissant as read

    return store.apply(_with_file(body, _file_name(name, ".json"), lambda p: read(p, store=store)))


def import_rdf(store: GraphStore, body: bytes, content_type: str, name: str | None) -> ApplyStats:
    """``kgraft import rdf``: Turtle (``text/turtle``) or JSON-LD (``application/ld+json``)."""
    from kg.rdf import read_rdf

    suffix = ".jsonld" if "json" in content_type else ".ttl"
    return store.apply(_with_file(body, Path(_file_name(name, suffix)).stem + suffix, read_rdf))


def import_openlineage(store: GraphStore, body: bytes, content_type: str, name: str | None) -> ApplyStats:
    """``kgraft openlineage import``: the body is JSON lines of OpenLineage RunEvents (any producer)."""
    try:
        from kg.openlineage import import_batch, read_events
    except ImportError as exc:
        raise KgError(
            f"OpenLineage import needs the openlineage extra on the server ({exc.name} is missing)."
        ) from None

    events = _with_file(body, _file_name(name, ".jsonl"), read_events)
    return store.apply(import_batch(store, events).batch)


IMPORTERS: dict[str, Callable[[GraphStore, bytes, str, str | None], ApplyStats]] = {
    "croissant": import_croissant,
    "rdf": import_rdf,
    "openlineage": import_openlineage,
}
"""``POST /api/import/{name}``: one entry per format."""

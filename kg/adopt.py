"""Fit an importer's batch to what the store already holds, before it is applied.

Two things, both read-only lookups followed by edits of the batch:

* **Older ids.** A node whose id this version derives from its name (``kg.ids``) is written under the
  id an older version gave the same name (``kg.ids.LEGACY``) when the store holds the old node and not
  the new one, so re-registering or re-importing into an old store updates its nodes instead of
  adding twins (``oxford_pets`` stays ``oxford_pets``; ``transfergraph:pets`` stays).
* **Registered images keep their source.** A Dataset that was registered from images (it has a
  checksum) keeps its ``source`` (the loader spec ``materialise`` rebuilds it from) when a metadata
  importer (Croissant, TransferGraph) describes the same dataset; the importer's other facts are added.
"""

from __future__ import annotations

from kg.batch import GraphBatch
from kg.ids import dataset_id, legacy_id
from kg.store import GraphStore
from ontology.vocab import Label


def adopt(store: GraphStore, batch: GraphBatch, importer: str) -> GraphBatch:
    """``batch`` with its name-derived ids moved to the store's older ids and, for a metadata
    ``importer`` (anything but ``"register"``), registered datasets' sources kept; edited in place."""
    for label in list(batch.nodes):
        renames = _older_ids(store, batch, importer, label)
        if renames:
            _rename(batch, label, renames)
    if importer != "register":
        _keep_registered_sources(store, batch)
    return batch


def stored_dataset_id(store: GraphStore, name: str, importer: str = "register") -> str:
    """The id of the dataset named ``name``: ``kg.ids.dataset_id(name)``, or the id an older
    ``importer`` gave it when the store holds only that one."""
    new = dataset_id(name)
    old = legacy_id(importer, Label.DATASET, new, name)
    if old is None:
        return new
    held = _stored(store, Label.DATASET, [new, old])
    return old if old in held and new not in held else new


def _stored(store: GraphStore, label: Label, ids: list[str]) -> set[str]:
    rows = store.query(f"MATCH (n:{label}) WHERE n.id IN $ids RETURN n.id AS id", {"ids": ids})
    return {row["id"] for row in rows}


def _older_ids(store: GraphStore, batch: GraphBatch, importer: str, label: Label) -> dict[str, str]:
    """New id -> old id, for the ``label`` nodes of ``batch`` the store holds only under the old id."""
    wanted: dict[str, str] = {}
    for node_id, row in batch.nodes[label].items():
        old = legacy_id(importer, label, node_id, row.get("name") or "")
        if old is not None:
            wanted[node_id] = old
    if not wanted:
        return {}
    held = _stored(store, label, [*wanted, *wanted.values()])
    return {new: old for new, old in wanted.items() if old in held and new not in held}


def _rename(batch: GraphBatch, label: Label, renames: dict[str, str]) -> None:
    """Move nodes of ``label`` to new ids, and every relationship end that names them."""
    rows = batch.nodes[label]
    for new, old in renames.items():
        row = rows.pop(new)
        row["id"] = old
        rows.setdefault(old, {"id": old}).update(row)
    for (rel, src_label, dst_label), edges in batch.edges.items():
        if label not in (src_label, dst_label):
            continue
        moved: dict[tuple, dict] = {}
        for key, row in edges.items():
            src = renames.get(key[0], key[0]) if src_label == label else key[0]
            dst = renames.get(key[1], key[1]) if dst_label == label else key[1]
            row.update(src=src, dst=dst)
            moved.setdefault((src, dst, *key[2:]), {}).update(row)
        batch.edges[(rel, src_label, dst_label)] = moved


def _keep_registered_sources(store: GraphStore, batch: GraphBatch) -> None:
    rows = batch.nodes.get(Label.DATASET) or {}
    ids = [node_id for node_id, row in rows.items() if "source" in row]
    if not ids:
        return
    registered = store.query(
        f"MATCH (n:{Label.DATASET}) WHERE n.id IN $ids AND n.checksum IS NOT NULL RETURN n.id AS id",
        {"ids": ids},
    )
    for row in registered:
        rows[row["id"]].pop("source", None)

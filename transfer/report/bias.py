"""Bias analysis: every known bias that reaches the chosen source through its lineage, the path it
travels, and how much of the target's label space it touches; and the target's own class imbalance.

A bias is held by a dataset (or model) upstream of the source (``kg.lineage.biases_reaching``). The
classes it touches are the holder's classes (or the bias's own ``extra.concepts``); they are matched
with the target's by WordNet concept where both sides have concepts, else by class name. The share
is of the target's classes, and of its samples where the target's class counts are known.
"""

from __future__ import annotations

from typing import Any

from kg.lineage import biases_reaching
from kg.store import GraphStore
from ontology.vocab import Label
from transfer.policy import IMBALANCED
from transfer.report.values import decoded, number


def _classes(store: GraphStore, label: str, id: str) -> list[tuple[str, str | None]]:
    """(class name, concept id or None) of a dataset or model."""
    if label == Label.DATASET:
        rows = store.query(
            "MATCH (:Dataset {id: $id})-[h:HAS_CLASS]->(c:Concept) RETURN h.label AS label, c.id AS concept",
            {"id": id},
        )
        if rows:
            return [(str(r["label"] or r["concept"]), r["concept"]) for r in rows]
        node = store.node(Label.DATASET, id) or {}
        names = (node.get("extra") or {}).get("class_names") or list(node.get("class_counts") or {})
        return [(str(n), None) for n in names]
    if label == Label.MODEL:
        node = store.node(Label.MODEL, id) or {}
        return [(str(n), None) for n in decoded(node.get("class_names")) or []]
    return []


def _touched(
    holder: list[tuple[str, str | None]], concepts: list[str], target: list[tuple[str, str | None]]
) -> list[str] | None:
    """The target's class names the bias touches, or None without class information."""
    if not target or not (holder or concepts):
        return None
    if concepts or (all(c for _, c in holder) and all(c for _, c in target)):
        keys = set(concepts) or {c for _, c in holder}
        return [name for name, c in target if c in keys]
    keys = {name.lower() for name, _ in holder}
    return [name for name, _ in target if name.lower() in keys]


def _path(source_id: str, source_name: str | None, reach: Any) -> list[dict[str, Any]]:
    nodes = [{"label": str(Label.MODEL), "id": source_id, "name": source_name or source_id, "rel": None}]
    for step in reach.path:
        rel = f"{step.rel}({step.how})" if step.how else step.rel
        nodes.append({"label": step.label, "id": step.id, "name": step.name or step.id, "rel": rel})
    return nodes


def bias_section(store: GraphStore, source_id: str, target_id: str) -> dict[str, Any]:
    """The report's ``bias`` section."""
    source = store.node(Label.MODEL, source_id) or {}
    target_node = store.node(Label.DATASET, target_id) or {}
    target_classes = _classes(store, Label.DATASET, target_id)
    counts = {str(k): int(v) for k, v in (target_node.get("class_counts") or {}).items()}
    total = sum(counts.values())
    biases = []
    for reach in biases_reaching(store, Label.MODEL, source_id):
        props = reach.properties
        extra = decoded(props.get("extra")) or {}
        holder = reach.path[-2] if len(reach.path) >= 2 else None
        holder_classes = _classes(store, holder.label, holder.id) if holder else []
        touched = _touched(holder_classes, list(extra.get("concepts") or []), target_classes)
        sample_share = None
        if touched is not None and total:
            sample_share = sum(counts.get(name, 0) for name in touched) / total
        biases.append(
            {
                "id": reach.id,
                "kind": props.get("kind") or props.get("name") or reach.id,
                "severity": props.get("severity"),
                "description": props.get("description"),
                "origin": props.get("source"),
                "holder": {"label": holder.label, "id": holder.id, "name": holder.name or holder.id}
                if holder
                else None,
                "distance": reach.distance,
                "path": _path(source_id, source.get("name"), reach),
                "path_text": reach.path_text(source_id),
                "touched_classes": touched,
                "label_share": None if touched is None else len(touched) / max(len(target_classes), 1),
                "sample_share": sample_share,
            }
        )
    imbalance = number(target_node.get("imbalance"))
    return {
        "biases": biases,
        "target_classes": [name for name, _ in target_classes],
        "target_imbalance": {
            "ratio": imbalance,
            "class_counts": counts,
            "imbalanced": imbalance is not None and imbalance >= IMBALANCED,
        },
    }

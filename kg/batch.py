"""``GraphBatch``: a set of node and relationship upserts applied to a store all or nothing.

Every write in kgraft goes through a batch, so that imports are atomic and bulk loads take a
handful of round trips instead of one per element.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

from kg.codec import encode_props
from kg.errors import InvalidRecord
from ontology.vocab import RELS, Label, Rel

EdgeKey = tuple[Rel, Label, Label]


@dataclass
class GraphBatch:
    """Nodes keyed by label and id, relationships keyed by (type, from label, to label).

    Upserting a node merges its properties into any earlier upsert of the same id in the batch;
    properties not given are left as they are in the store.
    """

    nodes: dict[Label, dict[str, dict[str, Any]]] = field(default_factory=lambda: defaultdict(dict))
    edges: dict[EdgeKey, dict[tuple, dict[str, Any]]] = field(default_factory=lambda: defaultdict(dict))

    def node(self, label: Label, id: str, **props: Any) -> str:
        """Add or merge a node; returns its id. ``None`` values are dropped (use the store to unset)."""
        if not isinstance(id, str) or not id:
            raise InvalidRecord(f"every {label} needs a non-empty text id, got {id!r}.")
        clean = {k: v for k, v in props.items() if v is not None}
        encoded = encode_props(label, clean, f"{label} {id!r}")
        row = self.nodes[label].setdefault(id, {"id": id})
        row.update(encoded)
        return id

    def edge(self, rel: Rel, src: tuple[Label, str], dst: tuple[Label, str], **props: Any) -> None:
        """Add or merge a relationship from ``src`` to ``dst`` (each a (label, id) pair)."""
        spec = RELS[rel]
        (src_label, src_id), (dst_label, dst_id) = src, dst
        if (src_label, dst_label) not in spec.ends:
            raise InvalidRecord(f"{rel} cannot join a {src_label} to a {dst_label}.")
        clean = {k: v for k, v in props.items() if v is not None}
        for k in spec.key:  # key properties identify the relationship, so they are never null
            clean.setdefault(k, "")
        encoded = encode_props(rel, clean, f"{rel} {src_id!r}->{dst_id!r}")
        key = (src_id, dst_id, *(encoded[k] for k in spec.key))
        row = self.edges[(rel, src_label, dst_label)].setdefault(key, {"src": src_id, "dst": dst_id})
        row.update(encoded)

    def merge(self, other: GraphBatch) -> None:
        """Fold another batch into this one."""
        for label, rows in other.nodes.items():
            for id, row in rows.items():
                self.nodes[label].setdefault(id, {"id": id}).update(row)
        for key, rows in other.edges.items():
            for ekey, row in rows.items():
                self.edges[key].setdefault(ekey, {}).update(row)

    def node_count(self) -> int:
        """Number of distinct nodes in the batch."""
        return sum(len(rows) for rows in self.nodes.values())

    def edge_count(self) -> int:
        """Number of distinct relationships in the batch."""
        return sum(len(rows) for rows in self.edges.values())

    def __bool__(self) -> bool:
        return self.node_count() + self.edge_count() > 0

"""Lineage and bias-propagation queries over DERIVED_FROM, TRAINED_ON and FINETUNED_FROM.

Lineage relationships point from child to parent (a derived dataset to its source, a model to the
data it was trained on and to the model it was fine-tuned from), so *ancestors* follow them forward
and *descendants* backward. Each answer carries one shortest path from the start node, which is the
"why" a user needs: ``model -TRAINED_ON-> fmnist-imbalanced -DERIVED_FROM(imbalance)-> fmnist``.

Both stores evaluate a bounded shortest-path pattern in one round trip (LadybugDB's ``* SHORTEST``,
Neo4j's ``ANY SHORTEST``). The depth bound is an integer literal (Cypher cannot take it as a
parameter); it is validated here, and every other value is a parameter.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from kg.codec import decode_props
from kg.errors import InvalidRecord
from kg.store import GraphStore
from ontology.vocab import LINEAGE_RELS, NODES, Label, Rel

MAX_DEPTH = 30
Direction = Literal["up", "down"]


@dataclass(frozen=True)
class Step:
    """One hop of a path: the relationship type, how (for DERIVED_FROM), and the node reached."""

    rel: str
    how: str | None
    label: str
    id: str
    name: str | None


@dataclass(frozen=True)
class Reach:
    """A node reached from the start, its distance, and the shortest path that reaches it."""

    label: str
    id: str
    name: str | None
    distance: int
    path: tuple[Step, ...]
    properties: dict[str, Any] = field(default_factory=dict)

    def path_text(self, start: str) -> str:
        """The path as one readable line, e.g. ``m -TRAINED_ON-> d1 -DERIVED_FROM(rotate)-> d0``."""
        parts = [start]
        for step in self.path:
            rel = f"{step.rel}({step.how})" if step.how else step.rel
            parts.append(f"-{rel}-> {step.name or step.id}")
        return " ".join(parts)


def _check_depth(depth: int) -> int:
    if not isinstance(depth, int) or not 1 <= depth <= MAX_DEPTH:
        raise InvalidRecord(f"depth must be a whole number from 1 to {MAX_DEPTH}, got {depth!r}.")
    return depth


def _pattern(
    store: GraphStore, label: Label, rels: tuple[Rel, ...], depth: int, direction: Direction, end: str
) -> str:
    types = "|".join(str(r) for r in rels)
    left, right = ("-", "->") if direction == "up" else ("<-", "-")
    if store.dialect == "ladybug":
        return f"MATCH p = (s:{label} {{id: $id}}){left}[:{types}* SHORTEST 1..{depth}]{right}({end})"
    return f"MATCH p = ANY SHORTEST (s:{label} {{id: $id}}){left}[:{types}]{right}{{1,{depth}}}({end})"


def _returns(store: GraphStore, extra: str = "") -> str:
    if store.dialect == "ladybug":
        return (
            "RETURN label(a) AS label, a.id AS id, a.name AS name, length(p) AS distance, "
            "properties(nodes(p), 'id') AS ids, properties(nodes(p), 'name') AS names, "
            "properties(nodes(p), '_label') AS labels, properties(rels(p), '_label') AS rels, "
            f"properties(rels(p), 'how') AS hows{extra} ORDER BY distance, id"
        )
    return (
        "RETURN labels(a)[0] AS label, a.id AS id, a.name AS name, length(p) AS distance, "
        "[n IN nodes(p) | n.id] AS ids, [n IN nodes(p) | n.name] AS names, "
        "[n IN nodes(p) | labels(n)[0]] AS labels, [r IN relationships(p) | type(r)] AS rels, "
        f"[r IN relationships(p) | r.how] AS hows{extra} ORDER BY distance, id"
    )


def _reach(row: dict[str, Any], properties: dict[str, Any] | None = None) -> Reach:
    steps = tuple(
        Step(rel, how, label, id, name)
        for rel, how, label, id, name in zip(
            row["rels"], row["hows"], row["labels"][1:], row["ids"][1:], row["names"][1:], strict=True
        )
    )
    return Reach(row["label"], row["id"], row["name"], int(row["distance"]), steps, properties or {})


def lineage(
    store: GraphStore, label: Label, id: str, depth: int = 10, direction: Direction = "up"
) -> list[Reach]:
    """Ancestors (``up``) or descendants (``down``) of a dataset or model, nearest first."""
    depth = _check_depth(depth)
    cypher = f"{_pattern(store, label, LINEAGE_RELS, depth, direction, 'a')} {_returns(store)}"
    return [_reach(row) for row in store.query(cypher, {"id": id})]


def ancestors(store: GraphStore, label: Label, id: str, depth: int = 10) -> list[Reach]:
    """Everything ``id`` was derived, trained or fine-tuned from, up to ``depth`` hops."""
    return lineage(store, label, id, depth, "up")


def descendants(store: GraphStore, label: Label, id: str, depth: int = 10) -> list[Reach]:
    """Everything derived, trained or fine-tuned from ``id``, up to ``depth`` hops."""
    return lineage(store, label, id, depth, "down")


def models_downstream_of(store: GraphStore, dataset_id: str, depth: int = 10) -> list[Reach]:
    """Models trained or fine-tuned on ``dataset_id`` or on any data derived from it."""
    return [r for r in descendants(store, Label.DATASET, dataset_id, depth) if r.label == Label.MODEL]


def biases_reaching(store: GraphStore, label: Label, id: str, depth: int = 10) -> list[Reach]:
    """Known biases attached to ``id`` or to anything upstream of it, each with the path it rides.

    A bias on a dataset reaches every dataset derived from it, every model trained on those, and
    every model fine-tuned from such a model.
    """
    depth = _check_depth(depth)
    rels = (*LINEAGE_RELS, Rel.HAS_BIAS)
    bias_cols = "".join(f", a.{p} AS bias_{p}" for p in NODES[Label.BIAS].properties)
    cypher = f"{_pattern(store, label, rels, depth + 1, 'up', 'a:Bias')} {_returns(store, bias_cols)}"
    out = []
    for row in store.query(cypher, {"id": id}):
        props = decode_props(Label.BIAS, {p: row[f"bias_{p}"] for p in NODES[Label.BIAS].properties})
        out.append(_reach(row, props))
    return out

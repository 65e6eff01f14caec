"""The read questions the server asks of the graph, each one named query with parameters.

Lineage and bias answers come from ``kg.lineage``; recommendations from ``gnn.scores.recommend``;
this module adds what a page about one dataset or model needs (its classes, domains, biases and
direct lineage neighbours) and name search.
"""

from __future__ import annotations

import math
from dataclasses import asdict
from typing import Any

from kg import GraphStore
from kg.codec import decode_props
from kg.errors import NotFound
from kg.lineage import Reach
from ontology.vocab import NODES, Label

SEARCHABLE = (Label.DATASET, Label.MODEL)


def json_safe(value: Any) -> Any:
    """``value`` with NaN and infinities as ``None`` and tuples as lists (JSON has neither)."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [json_safe(v) for v in value]
    return value


def search(store: GraphStore, text: str, limit: int = 50) -> list[dict[str, Any]]:
    """Datasets and models whose id or name contains ``text`` (case-insensitive), exact matches first."""
    needle = text.strip().lower()
    hits = []
    for label in SEARCHABLE:
        rows = store.query(
            f"MATCH (n:{label}) WHERE lower(n.id) CONTAINS $q OR lower(coalesce(n.name, '')) CONTAINS $q "
            "RETURN n.id AS id, n.name AS name, n.description AS description",
            {"q": needle},
        )
        hits.extend({"label": str(label), **r} for r in rows)
    exact = {needle}
    hits.sort(
        key=lambda h: (h["id"].lower() not in exact and (h["name"] or "").lower() not in exact, h["id"])
    )
    return hits[:limit]


def _neighbours(store: GraphStore, cypher: str, id: str) -> list[dict[str, Any]]:
    return store.query(cypher, {"id": id})


def dataset_detail(store: GraphStore, dataset_id: str) -> dict[str, Any]:
    """A dataset's record (its profile included), classes, domains, biases and direct lineage."""
    record = store.node(Label.DATASET, dataset_id)
    if record is None:
        raise NotFound(f"no dataset with id {dataset_id!r} in the graph.")
    bias_cols = ", ".join(f"b.{p} AS {p}" for p in NODES[Label.BIAS].properties)
    return {
        "label": "Dataset",
        "record": record,
        "classes": _neighbours(
            store,
            "MATCH (d:Dataset {id: $id})-[r:HAS_CLASS]->(c:Concept) "
            "RETURN c.id AS id, c.name AS name, r.label AS label, r.count AS count ORDER BY r.class_index",
            dataset_id,
        ),
        "domains": _neighbours(
            store,
            "MATCH (d:Dataset {id: $id})-[:IN_DOMAIN]->(x:Domain) RETURN x.id AS id, x.name AS name",
            dataset_id,
        ),
        "biases": [
            decode_props(Label.BIAS, r)
            for r in _neighbours(
                store, f"MATCH (d:Dataset {{id: $id}})-[:HAS_BIAS]->(b:Bias) RETURN {bias_cols}", dataset_id
            )
        ],
        "derived_from": _neighbours(
            store,
            "MATCH (d:Dataset {id: $id})-[r:DERIVED_FROM]->(p:Dataset) "
            "RETURN p.id AS id, p.name AS name, r.how AS how",
            dataset_id,
        ),
        "derived": _neighbours(
            store,
            "MATCH (c:Dataset)-[r:DERIVED_FROM]->(d:Dataset {id: $id}) "
            "RETURN c.id AS id, c.name AS name, r.how AS how ORDER BY c.id",
            dataset_id,
        ),
        "models": _neighbours(
            store,
            "MATCH (m:Model)-[:TRAINED_ON]->(d:Dataset {id: $id}) RETURN m.id AS id, m.name AS name "
            "ORDER BY m.id",
            dataset_id,
        ),
    }


def model_detail(store: GraphStore, model_id: str) -> dict[str, Any]:
    """A model's record, the data it was trained on, the model it was fine-tuned from, its biases and
    its recorded outcomes."""
    record = store.node(Label.MODEL, model_id)
    if record is None:
        raise NotFound(f"no model with id {model_id!r} in the graph.")
    bias_cols = ", ".join(f"b.{p} AS {p}" for p in NODES[Label.BIAS].properties)
    return {
        "label": "Model",
        "record": record,
        "trained_on": _neighbours(
            store,
            "MATCH (m:Model {id: $id})-[:TRAINED_ON]->(d:Dataset) RETURN d.id AS id, d.name AS name",
            model_id,
        ),
        "finetuned_from": _neighbours(
            store,
            "MATCH (m:Model {id: $id})-[:FINETUNED_FROM]->(p:Model) RETURN p.id AS id, p.name AS name",
            model_id,
        ),
        "biases": [
            decode_props(Label.BIAS, r)
            for r in _neighbours(
                store, f"MATCH (m:Model {{id: $id}})-[:HAS_BIAS]->(b:Bias) RETURN {bias_cols}", model_id
            )
        ],
        "outcomes": _neighbours(
            store,
            "MATCH (m:Model {id: $id})-[r:TRANSFERRED_TO]->(d:Dataset) RETURN d.id AS id, d.name AS name, "
            "r.accuracy AS accuracy, r.baseline_accuracy AS baseline_accuracy, r.activity AS activity "
            "ORDER BY d.id",
            model_id,
        ),
    }


def reach_dict(reach: Reach, start_name: str) -> dict[str, Any]:
    """One lineage or bias answer row as JSON, with its path as text."""
    return json_safe({**asdict(reach), "path_text": reach.path_text(start_name)})


def label_of(kind: str) -> Label:
    """``dataset`` / ``model`` (any case) to its label; ``NotFound`` otherwise."""
    for label in SEARCHABLE:
        if kind.lower() in {str(label).lower(), str(label).lower() + "s"}:
            return label
    raise NotFound(f"{kind!r} is not a kind of node with lineage: use dataset or model.")

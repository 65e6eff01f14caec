"""The knowledge graph as a PyG ``HeteroData``: node features from records, typed edges, outcomes.

``build_hetero(store)`` reads the whole graph in one query per node label and one per relationship
type (explicit labels, parameters for every value), maps ids to row indices with a vectorised index
lookup, and turns properties into features with numpy. It works alike on both stores.

Node types (N_t nodes of type t; every type is always present, possibly with 0 nodes):

===========  =======================  =====================================================================
node type    ``x`` shape              features (raw; the model standardises them with stored statistics)
===========  =======================  =====================================================================
dataset      [N_d, 17]                log1p n_samples, has; log1p n_classes, has; log1p imbalance, has;
                                      channels, has; log2 image side, has; mean (3), std (3), has mean/std
model        [N_m, 8 + 17 + 4]        log10 num_params, has; log1p num_classes, has; reported accuracy,
                                      has; log2 input side, has; architecture family one-hot (17 known
                                      families) + 4 hashed buckets for unknown ones
concept      [N_c, 2]                 log1p depth, has
domain       [N_o, 16]                one-hot of a stable hash of the domain id (16 buckets)
===========  =======================  =====================================================================

Edge types (``edge_index`` [2, E] int64, row 0 the source type's index, row 1 the destination's):

=====================================================  ==================================================
edge type                                              from / extra tensors
=====================================================  ==================================================
(model, trained_on, dataset) + (dataset, rev_trained_on, model)          TRAINED_ON
(dataset, derived_from, dataset) + (dataset, rev_derived_from, dataset)  DERIVED_FROM; the forward
                                                       type has ``edge_sampled`` [E] bool: its ``how``
                                                       only samples the parent (``SAMPLING_DERIVATIONS``)
(model, finetuned_from, model) + (model, rev_finetuned_from, model)      FINETUNED_FROM
(dataset, has_class, concept) + (concept, rev_has_class, dataset)        HAS_CLASS
(concept, is_a, concept) + (concept, rev_is_a, concept)                  IS_A
(dataset, in_domain, domain) + (domain, rev_in_domain, dataset)          IN_DOMAIN
(model, scored_on, dataset) + (dataset, rev_scored_on, model)            SCORED_ON, one edge per
                                                       measurement; ``edge_attr`` [E, 14]: kind one-hot
                                                       (``SCORE_KINDS``, 11), value standardised within
                                                       its kind, has p-value, -log10 p / 10;
                                                       ``edge_value`` [E] raw value, ``edge_kind`` [E]
                                                       index into ``SCORE_KINDS``
(model, transferred_to, dataset)                       TRANSFERRED_TO outcomes, one edge per (model,
                                                       dataset) pair: ``edge_label`` [E] float (mean
                                                       accuracy over its runs), ``edge_runs`` [E] int64.
                                                       No reverse here: the GNN adds the visible ones
                                                       itself, so that held-out outcomes never leak.
=====================================================  ==================================================

Graph-level attributes: ``outcome_digest`` (sha256 of every run's model, dataset, activity and
accuracy: what a scorer saw), ``n_outcome_runs``, ``n_failed_runs`` (runs flagged ``failed``: at
chance, kept in the graph but not a ranking signal, so left out of ``edge_label``),
``newest_outcome_time`` (ISO text; "" when no outcome has a time), ``alias_of`` [N_d] int64 (each
dataset's canonical row in its SAME_AS group: outcomes and measurements of every name of a dataset
land on that row, so its history follows the dataset and hiding it hides all its names),
``similar_index`` [2, S] / ``similar_value`` [S, 3] (SIMILAR_TO between canonical dataset rows, one
column per method of ``kg.similarity.ALL_METHODS``: concept-overlap, profile, embedding; 0 where not
measured).

The graph leaves out the GNN's own artefacts: Model nodes of kind ``gnn-scorer`` and the Dataset
nodes (source ``kgraft-gnn``) that stand for the outcome snapshots they were trained on.
"""

from __future__ import annotations

import hashlib
import json
import math
import zlib
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch_geometric.data import HeteroData

from kg.aliases import alias_groups
from kg.similarity import ALL_METHODS as SIMILARITY_METHODS
from kg.similarity import read_similarities
from kg.store import GraphStore
from ontology.vocab import SCORE_KINDS as VOCAB_SCORE_KINDS
from ontology.vocab import Label, Rel, ScoreRole, score_kinds

SCORER_KIND = "gnn-scorer"
"""``kind`` of the Model nodes that record trained GNN scorers."""
SNAPSHOT_SOURCE = "kgraft-gnn"
"""``source`` of the Dataset nodes that stand for the outcome snapshot a scorer was trained on."""

NODE_TYPES: tuple[str, ...] = ("dataset", "model", "concept", "domain")
LABEL_OF: dict[str, Label] = {
    "dataset": Label.DATASET,
    "model": Label.MODEL,
    "concept": Label.CONCEPT,
    "domain": Label.DOMAIN,
}

STRUCTURAL: tuple[tuple[str, str, str, Rel], ...] = (
    ("model", "trained_on", "dataset", Rel.TRAINED_ON),
    ("dataset", "derived_from", "dataset", Rel.DERIVED_FROM),
    ("model", "finetuned_from", "model", Rel.FINETUNED_FROM),
    ("dataset", "has_class", "concept", Rel.HAS_CLASS),
    ("concept", "is_a", "concept", Rel.IS_A),
    ("dataset", "in_domain", "domain", Rel.IN_DOMAIN),
)
"""(source type, relation, destination type, KG relationship) of the structural edges."""

SCORED = ("model", "scored_on", "dataset")
REV_SCORED = ("dataset", "rev_scored_on", "model")
OUTCOME = ("model", "transferred_to", "dataset")

SCORE_KINDS: tuple[str, ...] = tuple(k.name for k in VOCAB_SCORE_KINDS)
"""SCORED_ON kinds the GNN tells apart (``ontology.vocab.SCORE_KINDS``); a stored kind maps to the
first of these it starts with, else to ``other``."""
ESTIMATOR_KINDS = score_kinds(ScoreRole.ESTIMATOR)
"""Transferability estimators: higher is better."""
SHIFT_KINDS = score_kinds(ScoreRole.SHIFT)
"""Shift tests: a small p-value means the target moved away from the source."""

ARCH_FAMILIES: tuple[str, ...] = (
    "levit",
    "mobilevit",
    "deit",
    "beit",
    "data2vec",
    "swin",
    "convnext",
    "van",
    "efficientnet",
    "mobilenet",
    "regnet",
    "densenet",
    "resnet",
    "vgg",
    "vit",
    "mlp",
    "cnn",
)
"""Architecture families, most specific first (``levit`` before ``vit``)."""
ARCH_HASH_BUCKETS = 4
DOMAIN_BUCKETS = 16

DATASET_FEATURES = 17
MODEL_FEATURES = 8 + len(ARCH_FAMILIES) + ARCH_HASH_BUCKETS
CONCEPT_FEATURES = 2
DOMAIN_FEATURES = DOMAIN_BUCKETS
FEATURE_DIMS: dict[str, int] = {
    "dataset": DATASET_FEATURES,
    "model": MODEL_FEATURES,
    "concept": CONCEPT_FEATURES,
    "domain": DOMAIN_FEATURES,
}
SCORED_ATTR_DIM = len(SCORE_KINDS) + 3


def reverse(edge_type: tuple[str, str, str]) -> tuple[str, str, str]:
    """The reverse edge type: (a, r, b) -> (b, rev_r, a)."""
    src, rel, dst = edge_type
    return (dst, f"rev_{rel}", src)


def edge_types() -> list[tuple[str, str, str]]:
    """Every edge type ``build_hetero`` emits, in a fixed order."""
    out: list[tuple[str, str, str]] = []
    for src, rel, dst, _ in STRUCTURAL:
        out += [(src, rel, dst), reverse((src, rel, dst))]
    return [*out, SCORED, REV_SCORED, OUTCOME]


@dataclass
class IdMaps:
    """Stable maps between KG ids and row indices, per node type (ids sorted, so the same graph
    always gives the same indices)."""

    ids: dict[str, list[str]] = field(default_factory=dict)
    index: dict[str, dict[str, int]] = field(default_factory=dict)
    names: dict[str, list[str | None]] = field(default_factory=dict)

    def index_of(self, node_type: str, id: str) -> int:
        """The row of ``id`` among ``node_type`` nodes; raises ``KeyError``."""
        return self.index[node_type][id]

    def id_of(self, node_type: str, row: int) -> str:
        """The KG id of row ``row`` of ``node_type``."""
        return self.ids[node_type][row]

    def name_of(self, node_type: str, row: int) -> str:
        """The node's name, else its id."""
        return self.names[node_type][row] or self.ids[node_type][row]


# ----------------------------------------------------------------------------- reading the store

_NODE_COLUMNS: dict[str, tuple[str, ...]] = {
    "dataset": ("id", "name", "n_samples", "n_classes", "imbalance", "image_size", "channels", "mean", "std"),
    "model": ("id", "name", "architecture", "num_params", "num_classes", "input_size", "metrics"),
    "concept": ("id", "name", "depth"),
    "domain": ("id", "name"),
}


def _read_nodes(store: GraphStore, node_type: str) -> pd.DataFrame:
    label = LABEL_OF[node_type]
    cols = ", ".join(f"n.{c} AS {c}" for c in _NODE_COLUMNS[node_type])
    where, params = "", {}
    if node_type == "model":
        where, params = "WHERE n.kind IS NULL OR n.kind <> $kind ", {"kind": SCORER_KIND}
    elif node_type == "dataset":
        where, params = "WHERE n.source IS NULL OR n.source <> $source ", {"source": SNAPSHOT_SOURCE}
    rows = store.query(f"MATCH (n:{label}) {where}RETURN {cols}", params)
    frame = pd.DataFrame(rows, columns=list(_NODE_COLUMNS[node_type]))
    return frame.sort_values("id", kind="stable").reset_index(drop=True)


def _read_edges(
    store: GraphStore, rel: Rel, src: Label, dst: Label, extra: tuple[str, ...] = ()
) -> pd.DataFrame:
    cols = "".join(f", r.{c} AS {c}" for c in extra)
    rows = store.query(f"MATCH (a:{src})-[r:{rel}]->(b:{dst}) RETURN a.id AS src, b.id AS dst{cols}")
    return pd.DataFrame(rows, columns=["src", "dst", *extra])


# ----------------------------------------------------------------------------- features


def _numeric(frame: pd.DataFrame, column: str) -> np.ndarray:
    return pd.to_numeric(frame[column], errors="coerce").to_numpy(dtype=np.float64)


def _value_and_mask(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    mask = np.isfinite(values)
    return np.where(mask, values, 0.0), mask.astype(np.float64)


def _json_column(frame: pd.DataFrame, column: str) -> list[Any]:
    out: list[Any] = []
    for value in frame[column].tolist():
        if isinstance(value, str):
            try:
                out.append(json.loads(value))
            except json.JSONDecodeError:
                out.append(None)
        else:
            out.append(value if isinstance(value, list | dict) else None)
    return out


def _side(value: Any) -> float:
    """The image side (geometric mean of height and width) of [H, W] or [C, H, W]."""
    if not isinstance(value, list) or len(value) < 2:
        return math.nan
    try:
        h, w = float(value[-2]), float(value[-1])
    except (TypeError, ValueError):
        return math.nan
    return math.sqrt(h * w) if h > 0 and w > 0 else math.nan


def _three(value: Any) -> list[float] | None:
    """Per-channel statistics as three numbers (grey replicated), or ``None``."""
    if not isinstance(value, list) or not value:
        return None
    try:
        nums = [float(v) for v in value]
    except (TypeError, ValueError):
        return None
    return (nums * 3)[:3] if len(nums) == 1 else [*nums, 0.0, 0.0, 0.0][:3]


def dataset_features(frame: pd.DataFrame) -> np.ndarray:
    """[N, 17] dataset features (see the module docstring)."""
    n = len(frame)
    cols = []
    for column, transform in (
        ("n_samples", np.log1p),
        ("n_classes", np.log1p),
        ("imbalance", np.log1p),
        ("channels", lambda v: v),
    ):
        raw = _numeric(frame, column)
        raw = np.where(raw >= 0, raw, np.nan)
        cols += list(_value_and_mask(transform(raw)))
    sides = np.array([_side(v) for v in _json_column(frame, "image_size")], dtype=np.float64)
    cols += list(_value_and_mask(np.log2(sides)))
    stats = np.zeros((n, 7))
    for i, (mean, std) in enumerate(
        zip(_json_column(frame, "mean"), _json_column(frame, "std"), strict=True)
    ):
        m3, s3 = _three(mean), _three(std)
        if m3 is not None and s3 is not None:
            stats[i] = [*m3, *s3, 1.0]
    return np.concatenate([np.stack(cols, axis=1).reshape(n, 10), stats], axis=1)


def architecture_family(architecture: str | None) -> int | None:
    """Index into ``ARCH_FAMILIES`` (or a hashed bucket after them) of an architecture name."""
    if not architecture:
        return None
    text = architecture.lower()
    for i, family in enumerate(ARCH_FAMILIES):
        if family in text:
            return i
    return len(ARCH_FAMILIES) + zlib.crc32(text.encode()) % ARCH_HASH_BUCKETS


def reported_accuracy(metrics: Any) -> float:
    """A model's reported top-1 accuracy in [0, 1] from its ``metrics`` record, else NaN.

    ``reported_accuracy`` first; else the first key holding "acc" (searching one level of nesting,
    as torchvision's {"ImageNet-1K": {"acc@1": 76.1}}), percentages divided by 100.
    """
    if not isinstance(metrics, dict):
        return math.nan
    candidates: list[tuple[str, Any]] = []
    if "reported_accuracy" in metrics:
        candidates.append(("reported_accuracy", metrics["reported_accuracy"]))
    for key, value in sorted(metrics.items()):
        if isinstance(value, dict):
            candidates += [(k, v) for k, v in sorted(value.items()) if "acc" in k.lower()]
        elif "acc" in key.lower():
            candidates.append((key, value))
    for _, value in candidates:
        if isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value):
            v = float(value)
            if 1.0 < v <= 100.0:
                v /= 100.0
            if 0.0 <= v <= 1.0:
                return v
    return math.nan


def model_features(frame: pd.DataFrame) -> np.ndarray:
    """[N, 29] model features (see the module docstring)."""
    n = len(frame)
    params = _numeric(frame, "num_params")
    classes = _numeric(frame, "num_classes")
    cols = [
        *_value_and_mask(np.log10(np.where(params > 0, params, np.nan))),
        *_value_and_mask(np.log1p(np.where(classes >= 0, classes, np.nan))),
        *_value_and_mask(np.array([reported_accuracy(m) for m in _json_column(frame, "metrics")])),
        *_value_and_mask(np.log2(np.array([_side(v) for v in _json_column(frame, "input_size")]))),
    ]
    family = np.zeros((n, len(ARCH_FAMILIES) + ARCH_HASH_BUCKETS))
    for i, arch in enumerate(frame["architecture"].tolist()):
        k = architecture_family(arch if isinstance(arch, str) else None)
        if k is not None:
            family[i, k] = 1.0
    return np.concatenate([np.stack(cols, axis=1).reshape(n, 8), family], axis=1)


def concept_features(frame: pd.DataFrame) -> np.ndarray:
    """[N, 2] concept features: log1p depth in the concept hierarchy, has depth."""
    depth = _numeric(frame, "depth")
    return np.stack(_value_and_mask(np.log1p(np.where(depth >= 0, depth, np.nan))), axis=1).reshape(-1, 2)


def domain_features(frame: pd.DataFrame) -> np.ndarray:
    """[N, 16] domain features: one-hot of a stable hash of the id (domains carry no other data)."""
    out = np.zeros((len(frame), DOMAIN_BUCKETS))
    for i, id in enumerate(frame["id"].tolist()):
        out[i, zlib.crc32(str(id).encode()) % DOMAIN_BUCKETS] = 1.0
    return out


_FEATURES = {
    "dataset": dataset_features,
    "model": model_features,
    "concept": concept_features,
    "domain": domain_features,
}


def score_kind(kind: str | None) -> int:
    """Index into ``SCORE_KINDS`` of a stored SCORED_ON kind (``"LogME"`` -> logme, ``"mmd-test"`` -> mmd)."""
    text = (kind or "").strip().lower().replace("-", "_").replace(" ", "_")
    for i, name in enumerate(SCORE_KINDS[:-1]):
        if text.startswith(name):
            return i
    return len(SCORE_KINDS) - 1


def _scored_attr(frame: pd.DataFrame) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """SCORED_ON edge attributes [E, 14], raw values [E] and kind indices [E]."""
    e = len(frame)
    kinds = np.array([score_kind(k) for k in frame["kind"].tolist()], dtype=np.int64)
    value = _numeric(frame, "value")
    value = np.where(np.isfinite(value), value, 0.0)
    scaled = np.zeros(e)
    for k in np.unique(kinds):
        sel = kinds == k
        mu, sd = value[sel].mean(), value[sel].std()
        scaled[sel] = (value[sel] - mu) / sd if sd > 0 else 0.0
    p = _numeric(frame, "p_value")
    has_p = np.isfinite(p)
    logp = np.where(has_p, -np.log10(np.clip(np.where(has_p, p, 1.0), 1e-10, 1.0)) / 10.0, 0.0)
    attr = np.zeros((e, SCORED_ATTR_DIM))
    attr[np.arange(e), kinds] = 1.0
    attr[:, len(SCORE_KINDS)] = scaled
    attr[:, len(SCORE_KINDS) + 1] = has_p
    attr[:, len(SCORE_KINDS) + 2] = logp
    return attr, value, kinds


def _index(maps: IdMaps, node_type: str, ids: pd.Series) -> np.ndarray:
    return pd.Index(maps.ids[node_type]).get_indexer(ids.astype(object)) if len(ids) else np.zeros(0, int)


def _edge_index(src: np.ndarray, dst: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.stack([src, dst]).astype(np.int64)).reshape(2, -1)


def outcome_digest(frame: pd.DataFrame) -> str:
    """sha256 over every outcome run (model, dataset, activity, accuracy), order-independent."""
    lines = sorted(
        f"{s}\t{d}\t{a}\t{float(x):.6g}"
        for s, d, a, x in zip(frame["src"], frame["dst"], frame["activity"], frame["accuracy"], strict=True)
    )
    return hashlib.sha256("\n".join(lines).encode()).hexdigest()


def build_hetero(store: GraphStore) -> tuple[HeteroData, IdMaps]:
    """The KG in ``store`` as a ``HeteroData`` and its id maps (see the module docstring).

    One round trip per node label and per relationship type; everything else is numpy.
    """
    data = HeteroData()
    maps = IdMaps()
    for node_type in NODE_TYPES:
        frame = _read_nodes(store, node_type)
        maps.ids[node_type] = [str(i) for i in frame["id"].tolist()]
        maps.index[node_type] = {id: i for i, id in enumerate(maps.ids[node_type])}
        maps.names[node_type] = [n if isinstance(n, str) else None for n in frame["name"].tolist()]
        x = _FEATURES[node_type](frame) if len(frame) else np.zeros((0, FEATURE_DIMS[node_type]))
        data[node_type].x = torch.from_numpy(x.astype(np.float32)).reshape(-1, FEATURE_DIMS[node_type])
        data[node_type].num_nodes = len(frame)

    for src_type, rel, dst_type, kg_rel in STRUCTURAL:
        derivation = kg_rel == Rel.DERIVED_FROM
        extra = ("how",) if derivation else ()
        frame = _read_edges(store, kg_rel, LABEL_OF[src_type], LABEL_OF[dst_type], extra)
        s, d = _index(maps, src_type, frame["src"]), _index(maps, dst_type, frame["dst"])
        keep = (s >= 0) & (d >= 0)
        pairs = np.unique(np.stack([s[keep], d[keep]], axis=1).reshape(-1, 2), axis=0)
        data[src_type, rel, dst_type].edge_index = _edge_index(pairs[:, 0], pairs[:, 1])
        data[reverse((src_type, rel, dst_type))].edge_index = _edge_index(pairs[:, 1], pairs[:, 0])
        if derivation:  # which pairs only sample their parent (a pair with several hows: any of them)
            sampled = keep & frame["how"].isin(SAMPLING_DERIVATIONS).to_numpy()
            n = data[dst_type].num_nodes
            codes = s[sampled].astype(np.int64) * n + d[sampled]
            data[src_type, rel, dst_type].edge_sampled = torch.from_numpy(
                np.isin(pairs[:, 0].astype(np.int64) * n + pairs[:, 1], codes)
            )

    alias = _alias_rows(store, maps)
    data.alias_of = torch.from_numpy(alias)
    data.similar_index, data.similar_value = _similar(store, maps, alias)
    frame = _read_edges(store, Rel.SCORED_ON, Label.MODEL, Label.DATASET, ("kind", "value", "p_value"))
    s, d = _index(maps, "model", frame["src"]), _canonical(alias, _index(maps, "dataset", frame["dst"]))
    keep = (s >= 0) & (d >= 0)
    frame = frame[keep].reset_index(drop=True)
    attr, value, kinds = _scored_attr(frame) if len(frame) else (np.zeros((0, SCORED_ATTR_DIM)), [], [])
    for et, (a, b) in ((SCORED, (s[keep], d[keep])), (REV_SCORED, (d[keep], s[keep]))):
        data[et].edge_index = _edge_index(a, b)
        data[et].edge_attr = torch.tensor(attr, dtype=torch.float32).reshape(-1, SCORED_ATTR_DIM)
        data[et].edge_value = torch.tensor(np.asarray(value, dtype=np.float32))
        data[et].edge_kind = torch.tensor(np.asarray(kinds, dtype=np.int64))

    frame = _read_edges(
        store, Rel.TRANSFERRED_TO, Label.MODEL, Label.DATASET, ("accuracy", "activity", "time", "failed")
    )
    frame["accuracy"] = pd.to_numeric(frame["accuracy"], errors="coerce")
    trained = np.isfinite(frame["accuracy"].to_numpy(dtype=np.float64)) & ~frame["failed"].eq(True).to_numpy()
    data.n_failed_runs = int((frame["failed"].eq(True)).sum())
    frame = frame[trained].reset_index(drop=True)
    s, d = _index(maps, "model", frame["src"]), _canonical(alias, _index(maps, "dataset", frame["dst"]))
    keep = (s >= 0) & (d >= 0)
    runs = pd.DataFrame({"s": s[keep], "d": d[keep], "acc": frame["accuracy"].to_numpy()[keep]})
    pairs = runs.groupby(["s", "d"], sort=True)["acc"].agg(["mean", "count"]).reset_index()
    data[OUTCOME].edge_index = _edge_index(pairs["s"].to_numpy(), pairs["d"].to_numpy())
    data[OUTCOME].edge_label = torch.tensor(pairs["mean"].to_numpy(), dtype=torch.float32)
    data[OUTCOME].edge_runs = torch.tensor(pairs["count"].to_numpy(), dtype=torch.int64)
    kept = frame[keep]
    data.outcome_digest = outcome_digest(kept)
    data.n_outcome_runs = len(kept)
    times = [t for t in kept["time"].tolist() if isinstance(t, str) and t]
    data.newest_outcome_time = max(times) if times else ""  # PyG drops None attributes
    return data, maps


def _alias_rows(store: GraphStore, maps: IdMaps) -> np.ndarray:
    """[N_d] int64: each dataset row's canonical row in its SAME_AS group (itself without one)."""
    rows = np.arange(len(maps.ids["dataset"]), dtype=np.int64)
    for id, root in alias_groups(store).items():
        i, r = maps.index["dataset"].get(id), maps.index["dataset"].get(root)
        if i is not None and r is not None:
            rows[i] = r
    return rows


def _similar(store: GraphStore, maps: IdMaps, alias: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
    """SIMILAR_TO as [2, S] int64 dataset-row pairs (canonical rows, sorted by a * N + b) and [S, M]
    float values per ``SIMILARITY_METHODS`` column (0 where a method was not measured; the pair's
    best value when aliases give it several)."""
    n = len(maps.ids["dataset"])
    values: dict[tuple[int, int], np.ndarray] = {}
    for (a, b), by_method in read_similarities(store).items():
        i, j = maps.index["dataset"].get(a), maps.index["dataset"].get(b)
        if i is None or j is None:
            continue
        key = (int(alias[i]), int(alias[j]))
        if key[0] == key[1]:
            continue
        row = values.setdefault(key, np.zeros(len(SIMILARITY_METHODS)))
        for k, method in enumerate(SIMILARITY_METHODS):
            if method in by_method:
                row[k] = max(row[k], min(max(by_method[method], 0.0), 1.0))
    keys = sorted(values, key=lambda ab: ab[0] * n + ab[1])
    index = torch.tensor(keys, dtype=torch.int64).reshape(-1, 2).t().contiguous()
    value = torch.tensor(np.array([values[k] for k in keys]), dtype=torch.float32)
    return index, value.reshape(-1, len(SIMILARITY_METHODS))


def _canonical(alias: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """Dataset rows mapped to their alias group's canonical row (-1, a missing node, stays -1)."""
    return np.where(rows >= 0, alias[np.maximum(rows, 0)], rows) if len(rows) else rows


def canonical_dataset(data: HeteroData, row: int) -> int:
    """The row whose outcomes and measurements stand for dataset ``row`` and its aliases."""
    alias = getattr(data, "alias_of", None)
    return int(alias[row]) if alias is not None and len(alias) > row else row


# ----------------------------------------------------------------------------- pair context

LINEAGE_HOPS = 3
SAMPLING_DERIVATIONS = frozenset({"subset", "class_subset", "imbalance", "new-version"})
"""DERIVED_FROM ``how`` values whose images are the parent's images, unchanged: a stratified subset,
some of its classes, a class-imbalanced resample, or a new version of the same data. A model trained
on one of the two has seen the other's images (the label priors may differ; the inputs do not)."""
PAIR_FEATURES: tuple[str, ...] = (
    "trained_on_target",
    "lineage_related",
    "domain_overlap",
    "has_domain_info",
    "concept_overlap",
    "has_concept_info",
    *(f"{k}_z" for k in ESTIMATOR_KINDS),
    *(f"has_{k}" for k in ESTIMATOR_KINDS),
)
"""Columns of ``PairContext.features``: graph facts about one (source model, target dataset) pair."""


def _adjacency(data: HeteroData, edge_type: tuple[str, str, str], only: str | None = None) -> Any:
    """Sparse [N_src, N_dst] adjacency of ``edge_type``; with ``only``, just the edges whose boolean
    attribute of that name is set (none when the graph lacks the attribute)."""
    import scipy.sparse as sp

    src, _, dst = edge_type
    ei = data[edge_type].edge_index.numpy()
    if only is not None:
        mask = getattr(data[edge_type], only, None)
        ei = ei[:, mask.numpy()] if mask is not None and len(mask) == ei.shape[1] else ei[:, :0]
    shape = (data[src].num_nodes, data[dst].num_nodes)
    return sp.csr_matrix((np.ones(ei.shape[1]), (ei[0], ei[1])), shape=shape)


def _alias_adjacency(data: HeteroData) -> Any:
    """Sparse [N_d, N_d]: dataset rows joined to their alias group's canonical row, both ways."""
    import scipy.sparse as sp

    n = data["dataset"].num_nodes
    alias = getattr(data, "alias_of", None)
    if alias is None or len(alias) != n:
        return sp.csr_matrix((n, n))
    rows = np.arange(n)
    a = sp.csr_matrix((np.ones(n), (rows, alias.numpy())), shape=(n, n))
    return a + a.T


def _closure(step: Any, hops: int) -> Any:
    """I + step + step^2 + ... + step^hops, binarised (reach within ``hops``)."""
    import scipy.sparse as sp

    out = sp.identity(step.shape[0], format="csr")
    power = out
    for _ in range(hops):
        power = (power @ step).sign()
        out = out + power
    return out.sign().tocsr()


class PairContext:
    """What the graph says about (source model, target dataset) pairs, without learning.

    Sparse reach matrices built once per graph (numpy / scipy; a 1,000-candidate query takes
    milliseconds):

    * ``seen`` [N_m, N_d]: datasets a model was trained on, directly or through the models it was
      fine-tuned from (up to 3 FINETUNED_FROM hops);
    * ``related`` [N_d, N_d]: datasets within 3 DERIVED_FROM hops either way (incl. itself);
    * ``seen_data`` [N_m, N_d]: targets whose images a model was trained on: ``seen``, widened by
      up to 3 sampling-only DERIVED_FROM hops either way (``SAMPLING_DERIVATIONS``: e.g. a subset or
      a class-imbalanced resample of the training set, or the training set of a subset);
    * ``domains`` [N_d, N_o] and ``concepts`` [N_d, N_c]: a dataset's domains and classes, inherited
      from its DERIVED_FROM ancestors, classes widened by two IS_A hops;
    * estimator measurements (SCORED_ON of estimator kinds), standardised within (target, kind).
    """

    def __init__(self, data: HeteroData) -> None:
        trained = _adjacency(data, ("model", "trained_on", "dataset"))
        finetuned = _adjacency(data, ("model", "finetuned_from", "model"))
        derived = _adjacency(data, ("dataset", "derived_from", "dataset"))
        self.seen = (_closure(finetuned, LINEAGE_HOPS) @ trained).sign().tocsr()
        up = _closure(derived, LINEAGE_HOPS)
        self.related = (up + up.T).sign().tocsr()
        self.domains = (up @ _adjacency(data, ("dataset", "in_domain", "domain"))).sign().tocsr()
        widen = _closure(_adjacency(data, ("concept", "is_a", "concept")), 2)
        self.concepts = (up @ _adjacency(data, ("dataset", "has_class", "concept")) @ widen).sign().tocsr()
        self.model_domains = (self.seen @ self.domains).sign().tocsr()
        self.model_concepts = (self.seen @ self.concepts).sign().tocsr()
        self.seen_related = (self.seen @ self.related).sign().tocsr()
        sampled = _adjacency(data, ("dataset", "derived_from", "dataset"), "edge_sampled")
        same = _closure(sampled + sampled.T + _alias_adjacency(data), LINEAGE_HOPS)
        self.seen_data = (self.seen @ same).sign().tocsr()
        self._estimators = self._estimator_table(data)

    @staticmethod
    def _estimator_table(data: HeteroData) -> dict[tuple[int, int], np.ndarray]:
        store = data[SCORED]
        if store.edge_index.shape[1] == 0:
            return {}
        frame = pd.DataFrame(
            {
                "m": store.edge_index[0].numpy(),
                "d": store.edge_index[1].numpy(),
                "k": store.edge_kind.numpy(),
                "v": store.edge_value.numpy().astype(np.float64),
            }
        )
        frame = frame[frame["k"] < len(ESTIMATOR_KINDS)]
        if frame.empty:
            return {}
        frame = frame.groupby(["m", "d", "k"], as_index=False)["v"].mean()  # several layers: average
        grouped = frame.groupby(["d", "k"])["v"]
        sd = grouped.transform("std").fillna(0.0).to_numpy()
        centred = frame["v"].to_numpy() - grouped.transform("mean").to_numpy()
        z = np.where(sd > 0, centred / np.where(sd > 0, sd, 1.0), 0.0)
        table: dict[tuple[int, int], np.ndarray] = {}
        for m, d, k, value in zip(frame["m"], frame["d"], frame["k"], np.clip(z, -4, 4), strict=True):
            row = table.setdefault((int(m), int(d)), np.zeros(2 * len(ESTIMATOR_KINDS)))
            row[k] = value
            row[len(ESTIMATOR_KINDS) + k] = 1.0
        return table

    @staticmethod
    def _overlap(left: Any, right: Any, src: np.ndarray, dst: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        a, b = left[src], right[dst]
        inter = np.asarray(a.multiply(b).sum(axis=1)).ravel()
        na, nb = np.asarray(a.sum(axis=1)).ravel(), np.asarray(b.sum(axis=1)).ravel()
        union = na + nb - inter
        has = (na > 0) & (nb > 0)
        return np.where(has, inter / np.maximum(union, 1), 0.0), has.astype(np.float64)

    def trained_on_data(self, src: np.ndarray, dst: np.ndarray) -> np.ndarray:
        """[P] bool: whether each model was trained on its target's data (``seen_data``)."""
        src, dst = np.array(src, dtype=np.int64), np.array(dst, dtype=np.int64)  # writable copies
        if len(src) == 0:
            return np.zeros(0, dtype=bool)
        return np.asarray(self.seen_data[src, dst]).ravel() > 0

    def features(self, src: np.ndarray, dst: np.ndarray) -> np.ndarray:
        """[P, len(PAIR_FEATURES)] for model rows ``src`` and dataset rows ``dst`` (both [P])."""
        src, dst = np.array(src, dtype=np.int64), np.array(dst, dtype=np.int64)
        out = np.zeros((len(src), len(PAIR_FEATURES)))
        if len(src) == 0:
            return out
        out[:, 0] = np.asarray(self.seen[src, dst]).ravel()
        out[:, 1] = np.asarray(self.seen_related[src, dst]).ravel()
        out[:, 2], out[:, 3] = self._overlap(self.model_domains, self.domains, src, dst)
        out[:, 4], out[:, 5] = self._overlap(self.model_concepts, self.concepts, src, dst)
        if self._estimators:
            for i, (m, d) in enumerate(zip(src.tolist(), dst.tolist(), strict=True)):
                row = self._estimators.get((m, d))
                if row is not None:
                    out[i, 6:] = row
        return out

"""How alike two datasets are, from what the graph holds, recorded as ``SIMILAR_TO`` edges.

Methods computed here (no images needed; ``embedding``, which needs them, lives in
``transfer.probe.dataset_embedding`` and returns the same ``Similarity`` records):

``concept-overlap``
    Jaccard overlap ``|A & B| / |A | B|`` of the two datasets' class concepts (``HAS_CLASS ->
    Concept``), each set widened by the concepts up to ``IS_A_HOPS`` (2) ``IS_A`` steps above its
    classes (WordNet: dog.n.01 -> canine.n.02 -> carnivore.n.01), as ``gnn.builder.PairContext``
    widens them. A dataset with no classes of its own takes those of its nearest ``DERIVED_FROM``
    ancestors (up to ``LINEAGE_HOPS`` steps). Datasets without concepts get no edge.
``profile``
    ``exp(-0.5 * mean_k z_k^2)`` over the profile features ``k`` both datasets have, where ``z_k`` is
    their gap in feature ``k`` divided by that feature's standard deviation over every dataset in
    the graph that has it (a feature that is the same everywhere counts as no gap). Features:
    ``log n_samples``, ``log n_classes``, ``channels``, ``log2`` image side, pixel mean and std per
    channel (grey replicated to three), read as ``gnn.builder.dataset_features`` reads them.
    Datasets sharing no feature get no edge.

Values lie in [0, 1]; 1 is most alike. ``record_similarities`` writes one ``SIMILAR_TO`` per pair and
method in both directions (the relation is symmetric, so a directed Cypher pattern finds it either
way); ``read_similarities`` reads them all back in one query.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from kg.batch import GraphBatch
from kg.codec import decode_props
from kg.errors import KgError
from kg.store import GraphStore
from ontology.vocab import Label, Rel

CONCEPT_OVERLAP = "concept-overlap"
PROFILE = "profile"
EMBEDDING = "embedding"
GRAPH_METHODS: tuple[str, ...] = (CONCEPT_OVERLAP, PROFILE)
"""Methods computed from the graph alone (this module)."""
ALL_METHODS: tuple[str, ...] = (CONCEPT_OVERLAP, PROFILE, EMBEDDING)
"""Every method kgraft knows; ``embedding`` is computed in ``transfer.probe.dataset_embedding``."""

IS_A_HOPS = 2
"""How far above a class concept its set is widened (as ``gnn.builder.PairContext``)."""
LINEAGE_HOPS = 3
"""How far up ``DERIVED_FROM`` a dataset without classes looks for inherited ones."""

PROFILE_FEATURES: tuple[str, ...] = (
    "log n_samples",
    "log n_classes",
    "channels",
    "log2 image side",
    "mean[0]",
    "mean[1]",
    "mean[2]",
    "std[0]",
    "std[1]",
    "std[2]",
)
"""Names of the profile features, in order."""

_D = Label.DATASET


class SimilarityError(KgError):
    """A similarity request a user can fix (an unknown method)."""


@dataclass(frozen=True)
class Similarity:
    """How alike ``dataset_id`` and ``other_id`` are by one ``method``: ``value`` in [0, 1].

    ``facts`` says why (e.g. ``shared``: the shared concepts' names, most specific first), and is
    stored on the edge as ``extra``.
    """

    dataset_id: str
    other_id: str
    method: str
    value: float
    facts: dict[str, Any] = field(default_factory=dict)

    def explanation(self) -> str:
        """One line for people: the method's evidence."""
        if self.method == CONCEPT_OVERLAP:
            shared = self.facts.get("shared", [])
            head = ", ".join(shared[:5]) + (", ..." if len(shared) > 5 else "")
            return f"{self.facts.get('n_shared', 0)} of {self.facts.get('n_union', 0)} concepts shared" + (
                f": {head}" if head else ""
            )
        if self.method == PROFILE:
            gaps = self.facts.get("largest_gaps", [])
            text = ", ".join(f"{g['feature']} {g['z']:+.1f} SD" for g in gaps)
            return f"{self.facts.get('n_features', 0)} profile features" + (
                f"; largest gaps: {text}" if text else ""
            )
        if self.method == EMBEDDING:
            nan = float("nan")
            d, scale = self.facts.get("frechet", nan), self.facts.get("scale", nan)
            return f"Frechet distance {d:.3g} (scale {scale:.3g})"
        return ""


def check_methods(methods: Iterable[str], known: Sequence[str] = ALL_METHODS) -> list[str]:
    """``methods`` without repeats, in order; raises ``SimilarityError`` for one not in ``known``."""
    out = list(dict.fromkeys(m.strip() for m in methods if m.strip()))
    if not out:
        raise SimilarityError(f"no similarity method given; use one or more of {', '.join(known)}.")
    for m in out:
        if m in ALL_METHODS and m not in known:
            raise SimilarityError(
                f"similarity method {m!r} needs the images; use transfer.dataset_similarity.find_similar."
            )
        if m not in known:
            raise SimilarityError(f"unknown similarity method {m!r}; use one or more of {', '.join(known)}.")
    return out


def resolve_datasets(
    store: GraphStore, dataset: str, against: Sequence[str] | None = None
) -> tuple[str, list[str]]:
    """The id of ``dataset`` (id or name) and the ids to compare it with: ``against`` resolved, or
    every other dataset in the graph of a comparable modality (``comparable``: image datasets are
    not compared with the scorer's outcome snapshots). Raises ``NotFound`` for an unknown name."""
    dataset_id = store.resolve(dataset, (_D,))[1]
    if against is None:
        rows = store.query(f"MATCH (d:{_D}) RETURN d.id AS id, d.modality AS modality ORDER BY id")
        modality = next((r["modality"] for r in rows if r["id"] == dataset_id), None)
        others = [r["id"] for r in rows if comparable(modality, r["modality"])]
    else:
        others = list(dict.fromkeys(store.resolve(a, (_D,))[1] for a in against))
    return dataset_id, [o for o in others if o != dataset_id]


def comparable(modality: str | None, other: str | None) -> bool:
    """Whether datasets of these modalities are compared: the same, or either unknown."""
    return modality is None or other is None or modality == other


def similarities(
    store: GraphStore,
    dataset: str,
    methods: Sequence[str] = GRAPH_METHODS,
    against: Sequence[str] | None = None,
) -> list[Similarity]:
    """How alike ``dataset`` (id or name) is to each of ``against`` (ids or names; default every
    other dataset) by each of ``methods`` (``GRAPH_METHODS``), best first. Pairs a method has no
    evidence for are left out. Raises ``NotFound`` for an unknown dataset, ``SimilarityError`` for
    an unknown method."""
    methods = check_methods(methods, GRAPH_METHODS)
    dataset_id, others = resolve_datasets(store, dataset, against)
    return graph_similarities(store, dataset_id, others, methods)


def graph_similarities(
    store: GraphStore, dataset_id: str, others: Sequence[str], methods: Sequence[str] = GRAPH_METHODS
) -> list[Similarity]:
    """``similarities`` for ids already resolved (``resolve_datasets``) and methods already checked:
    a few queries per method, whatever the number of datasets."""
    out: list[Similarity] = []
    if others:
        if CONCEPT_OVERLAP in methods:
            out += concept_overlap(store, dataset_id, others)
        if PROFILE in methods:
            out += profile_similarity(store, dataset_id, others)
    return sorted(out, key=lambda s: (-s.value, s.method, s.other_id))


# -- concept overlap ----------------------------------------------------------------------------
_ANCESTRY = f"""
MATCH p = (d:{_D})-[:{Rel.DERIVED_FROM}*1..{LINEAGE_HOPS}]->(a:{_D})
WHERE d.id IN $ids
RETURN d.id AS dataset, a.id AS ancestor, min(length(p)) AS hops
"""

_WIDENED_CLASSES = f"""
MATCH (d:{_D})-[:{Rel.HAS_CLASS}]->(:{Label.CONCEPT})-[:{Rel.IS_A}*0..{IS_A_HOPS}]->(x:{Label.CONCEPT})
WHERE d.id IN $ids
RETURN DISTINCT d.id AS dataset, x.id AS concept, x.name AS name, x.depth AS depth
"""


def concept_sets(store: GraphStore, dataset_ids: Sequence[str]) -> dict[str, set[str]]:
    """Each dataset's class concepts widened by ``IS_A_HOPS`` (inherited from its nearest
    ``DERIVED_FROM`` ancestors with classes when it has none); datasets with none are absent.
    Two queries, whatever the number of datasets."""
    sets, _names = _concept_sets(store, dataset_ids)
    return sets


def _concept_sets(
    store: GraphStore, dataset_ids: Sequence[str]
) -> tuple[dict[str, set[str]], dict[str, tuple[str, int]]]:
    ids = list(dict.fromkeys(dataset_ids))
    ancestors: dict[str, list[tuple[int, str]]] = {}
    for row in store.query(_ANCESTRY, {"ids": ids}):
        ancestors.setdefault(row["dataset"], []).append((int(row["hops"]), row["ancestor"]))
    wanted = set(ids) | {a for found in ancestors.values() for _h, a in found}
    own: dict[str, set[str]] = {}
    names: dict[str, tuple[str, int]] = {}  # concept -> (name, depth) for explanations
    for row in store.query(_WIDENED_CLASSES, {"ids": sorted(wanted)}):
        own.setdefault(row["dataset"], set()).add(row["concept"])
        names[row["concept"]] = (row["name"] or row["concept"], int(row["depth"] or 0))
    sets: dict[str, set[str]] = {}
    for d in ids:
        if d in own:
            sets[d] = own[d]
            continue
        with_classes = sorted((h, a) for h, a in ancestors.get(d, []) if a in own)
        if with_classes:
            nearest = with_classes[0][0]
            sets[d] = set().union(*(own[a] for h, a in with_classes if h == nearest))
    return sets, names


def concept_overlap(store: GraphStore, dataset_id: str, others: Sequence[str]) -> list[Similarity]:
    """``concept-overlap`` of ``dataset_id`` with each of ``others`` (ids; see the module docstring)."""
    sets, names = _concept_sets(store, [dataset_id, *others])
    mine = sets.get(dataset_id)
    if not mine:
        return []
    out = []
    for other in others:
        theirs = sets.get(other)
        if not theirs or other == dataset_id:
            continue
        shared = mine & theirs
        union = mine | theirs
        ordered = sorted(shared, key=lambda c: (-names[c][1], names[c][0]))
        out.append(
            Similarity(
                dataset_id,
                other,
                CONCEPT_OVERLAP,
                len(shared) / len(union),
                {
                    "n_shared": len(shared),
                    "n_union": len(union),
                    "shared": [names[c][0] for c in ordered[:20]],
                },
            )
        )
    return out


# -- profile ------------------------------------------------------------------------------------
_PROFILES = f"""
MATCH (d:{_D})
RETURN d.id AS id, d.modality AS modality, d.n_samples AS n_samples, d.n_classes AS n_classes,
       d.channels AS channels, d.image_size AS image_size, d.mean AS mean, d.std AS std
"""


def _positive(value: Any) -> float | None:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) and number > 0 else None


def _three(value: Any) -> list[float] | None:
    if not isinstance(value, list) or not value:
        return None
    try:
        nums = [float(v) for v in value]
    except (TypeError, ValueError):
        return None
    if not all(math.isfinite(v) for v in nums):
        return None
    return (nums * 3)[:3] if len(nums) == 1 else [*nums, 0.0, 0.0, 0.0][:3]


def profile_vector(node: dict[str, Any]) -> list[float | None]:
    """A dataset node's profile features (``PROFILE_FEATURES``; ``None`` where it lacks one)."""
    n_samples, n_classes = _positive(node.get("n_samples")), _positive(node.get("n_classes"))
    channels = _positive(node.get("channels"))
    size = node.get("image_size")
    side = None
    if isinstance(size, list) and len(size) >= 2:
        h, w = _positive(size[-2]), _positive(size[-1])
        side = math.log2(math.sqrt(h * w)) if h and w else None
    mean, std = _three(node.get("mean")), _three(node.get("std"))
    stats: list[float | None] = [*mean, *std] if mean is not None and std is not None else [None] * 6
    return [
        math.log(n_samples) if n_samples else None,
        math.log(n_classes) if n_classes else None,
        channels,
        side,
        *stats,
    ]


def profile_similarity(store: GraphStore, dataset_id: str, others: Sequence[str]) -> list[Similarity]:
    """``profile`` similarity of ``dataset_id`` with each of ``others`` (ids; see the module
    docstring). One query reads every dataset's profile, for the spreads: over the datasets of a
    modality comparable with ``dataset_id``'s (``comparable``)."""
    rows = store.query(_PROFILES)
    modality = next((r["modality"] for r in rows if r["id"] == dataset_id), None)
    vectors = {row["id"]: profile_vector(decode_props(_D, row)) for row in rows}
    peers = [vectors[row["id"]] for row in rows if comparable(modality, row["modality"])]
    spreads: list[float | None] = []
    for k in range(len(PROFILE_FEATURES)):
        values = [v[k] for v in peers if v[k] is not None]
        spreads.append(statistics.pstdev(values) if len(values) >= 2 else None)
    mine = vectors.get(dataset_id)
    if mine is None:
        return []
    out = []
    for other in others:
        theirs = vectors.get(other)
        if theirs is None or other == dataset_id:
            continue
        gaps: list[tuple[str, float]] = []
        for k, name in enumerate(PROFILE_FEATURES):
            a, b, sd = mine[k], theirs[k], spreads[k]
            if a is None or b is None:
                continue
            gaps.append((name, (a - b) / sd if sd else 0.0))  # no spread: every dataset alike here
        if not gaps:
            continue
        value = math.exp(-0.5 * sum(z * z for _n, z in gaps) / len(gaps))
        largest = sorted(gaps, key=lambda g: -abs(g[1]))[:3]
        out.append(
            Similarity(
                dataset_id,
                other,
                PROFILE,
                value,
                {
                    "n_features": len(gaps),
                    "largest_gaps": [{"feature": n, "z": round(z, 3)} for n, z in largest if z != 0],
                },
            )
        )
    return out


# -- the graph ----------------------------------------------------------------------------------
def similarity_batch(sims: Iterable[Similarity], *, time: str | None = None) -> GraphBatch:
    """``SIMILAR_TO`` edges for ``sims``, each pair in both directions, keyed by method."""
    time = time or datetime.now(UTC).isoformat(timespec="seconds")
    batch = GraphBatch()
    for s in sims:
        for a, b in ((s.dataset_id, s.other_id), (s.other_id, s.dataset_id)):
            batch.edge(
                Rel.SIMILAR_TO,
                (_D, a),
                (_D, b),
                method=s.method,
                value=float(s.value),
                time=time,
                extra=s.facts,
            )
    return batch


def record_similarities(
    store: GraphStore, dataset_id: str, sims: Iterable[Similarity], *, time: str | None = None
) -> int:
    """Write ``sims`` of ``dataset_id`` as ``SIMILAR_TO`` edges (both directions; one per pair and
    method, replacing an earlier value) in one batch; returns the number of pairs written."""
    sims = list(sims)
    stray = [s for s in sims if s.dataset_id != dataset_id]
    if stray:
        raise SimilarityError(
            f"a similarity of {stray[0].dataset_id!r} was given to record for {dataset_id!r}."
        )
    store.apply(similarity_batch(sims, time=time))
    return len(sims)


_READ = f"""
MATCH (a:{_D})-[r:{Rel.SIMILAR_TO}]->(b:{_D})
RETURN a.id AS a, b.id AS b, r.method AS method, r.value AS value
"""


def read_similarities(store: GraphStore) -> dict[tuple[str, str], dict[str, float]]:
    """Every recorded similarity: (dataset id, other id) -> {method: value}, one query. Both
    directions of a pair are present (they are written so)."""
    out: dict[tuple[str, str], dict[str, float]] = {}
    for row in store.query(_READ):
        if row["value"] is not None:
            out.setdefault((row["a"], row["b"]), {})[row["method"]] = float(row["value"])
    return out

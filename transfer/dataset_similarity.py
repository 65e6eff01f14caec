"""Which registered datasets are most like a given one: every similarity method in one call, recorded.

``find_similar`` runs the graph's methods (``kg.similarity``: concept overlap, profile) and the image
method (``transfer.probe.dataset_embedding``: embedding), writes every pair it measured as
``SIMILAR_TO`` edges (both directions, one per method) and ranks the other datasets by the mean of
their values over the methods that measured them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from kg.similarity import (
    ALL_METHODS,
    EMBEDDING,
    GRAPH_METHODS,
    Similarity,
    check_methods,
    graph_similarities,
    record_similarities,
    resolve_datasets,
)
from kg.store import GraphStore
from ontology.vocab import Label
from transfer.probe.dataset_embedding import DEFAULT_SAMPLE, Progress, compare_embeddings
from transfer.probe.features import DEFAULT_CACHE


@dataclass(frozen=True)
class SimilarDataset:
    """One other dataset: its mean value over the methods that measured it, and each measurement."""

    dataset_id: str
    name: str | None
    score: float
    by_method: dict[str, Similarity]


@dataclass
class SimilarityReport:
    """What ``find_similar`` measured for ``dataset_id``: similarities, skipped work, edges written."""

    dataset_id: str
    methods: list[str]
    similarities: list[Similarity] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    recorded: int = 0
    names: dict[str, str | None] = field(default_factory=dict)

    def ranked(self, top: int | None = None) -> list[SimilarDataset]:
        """The other datasets, most similar first (mean value over methods; ties by id)."""
        grouped: dict[str, dict[str, Similarity]] = {}
        for s in self.similarities:
            grouped.setdefault(s.other_id, {})[s.method] = s
        rows = [
            SimilarDataset(
                other,
                self.names.get(other),
                sum(s.value for s in found.values()) / len(found),
                dict(sorted(found.items(), key=lambda kv: ALL_METHODS.index(kv[0]))),
            )
            for other, found in grouped.items()
        ]
        rows.sort(key=lambda r: (-r.score, r.dataset_id))
        return rows if top is None else rows[:top]


def find_similar(
    store: GraphStore,
    dataset: str,
    methods: Sequence[str] = ALL_METHODS,
    against: Sequence[str] | None = None,
    *,
    record: bool = True,
    sample: int = DEFAULT_SAMPLE,
    cache_dir: Path | None = DEFAULT_CACHE,
    progress: Progress | None = None,
) -> SimilarityReport:
    """Measure how alike ``dataset`` (id or name) is to ``against`` (default every other dataset) by
    each of ``methods``, and record the results as ``SIMILAR_TO`` edges (unless ``record`` is off).

    Raises ``NotFound`` for an unknown dataset and ``SimilarityError`` for an unknown method, before
    any work is done; nothing is written unless every method finished."""
    methods = check_methods(methods)
    dataset_id, others = resolve_datasets(store, dataset, against)
    report = SimilarityReport(dataset_id, methods)
    graph_methods = [m for m in methods if m in GRAPH_METHODS]
    if others and graph_methods:
        report.similarities += graph_similarities(store, dataset_id, others, graph_methods)
    if others and EMBEDDING in methods:
        result = compare_embeddings(
            store, dataset_id, others, n=sample, cache_dir=cache_dir, progress=progress
        )
        report.similarities += result.similarities
        report.notes += result.notes
    if record and report.similarities:
        report.recorded = record_similarities(store, dataset_id, report.similarities)
    wanted = {dataset_id, *(s.other_id for s in report.similarities)}
    report.names = {
        row["id"]: row["name"]
        for row in store.query(
            f"MATCH (d:{Label.DATASET}) WHERE d.id IN $ids RETURN d.id AS id, d.name AS name",
            {"ids": sorted(wanted)},
        )
    }
    return report

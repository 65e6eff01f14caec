"""The ``embedding`` similarity: datasets compared by what one fixed reference encoder makes of them.

Reference encoder: the MNIST CNN shipped in PyPI ``ccexam`` 1.0.0 (``ccexam.mnist``, see
``transfer.zoo.ccexam``), chosen because its weights are a fixed file with a recorded SHA-256, so an
embedding is the same on every machine and torch version (a seeded random initialisation would hang
on torch's init code staying unchanged), and because trained filters (strokes, edges, blobs) separate
small grey images better than random ones. Every dataset goes through it as fine-tuning would feed
it (``Preprocess``: grey conversion, resizing to 28 x 28, its own mean/std); its embedding is the
128-dimensional input of the classifier's last layer.

A dataset is summarised Task2Vec/FID-style by the mean ``mu`` (d,) and covariance ``S`` (d, d) of the
embeddings of a seeded sample (``DEFAULT_SAMPLE`` images over all splits). Two summaries are compared
by the Frechet distance

    ``F = |mu_a - mu_b|^2 + tr(S_a) + tr(S_b) - 2 tr((S_a^1/2 S_b S_a^1/2)^1/2)``

and ``similarity = exp(-F / scale)`` with ``scale = (tr S_a + tr S_b) / 2``, the pair's mean total
variance. The scale makes the value independent of the encoder's feature units: two samples of one
distribution score near 1, a pair whose distance equals its own spread scores exp(-1) = 0.37, and
sets whose means lie several spreads apart score near 0.

Datasets are rebuilt from their recipe (``transfer.register.materialise``); one that cannot be (no
images, e.g. a TransferGraph record) is skipped with a note. Summaries are cached on disk under the
encoder's checksum, the dataset's recorded checksum, the sample size and seed, so a rerun neither
rebuilds nor encodes a dataset; the features themselves are cached as ``extract_features`` does.
"""

from __future__ import annotations

import hashlib
import io
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch
from torch import nn

from kg.errors import KgError
from kg.files import atomic_write_bytes
from kg.similarity import EMBEDDING, Similarity, resolve_datasets
from kg.store import GraphStore
from ontology.vocab import Label
from transfer.data.base import DataError, ImageDataset
from transfer.data.profile import checksum
from transfer.probe.features import DEFAULT_CACHE, extract_features, sample_indices
from transfer.zoo.record import ModelRecord

REFERENCE_ENCODER = "ccexam.mnist"
"""Id of the fixed reference encoder's record (see the module docstring)."""
DEFAULT_SAMPLE = 500
"""Images per dataset: enough for a stable 128-d mean and covariance, seconds on a CPU."""
SUMMARY_CACHE = DEFAULT_CACHE.parent / "dataset-embeddings"

Progress = Callable[[str, int, int], None]
"""``(message, done, total)``, called as datasets are embedded."""


@dataclass(frozen=True)
class DatasetEmbedding:
    """A dataset's embedding summary: mean (d,) and covariance (d, d) over ``n`` sampled images."""

    dataset_id: str
    mean: np.ndarray
    cov: np.ndarray
    n: int


@dataclass
class EmbeddingResult:
    """Similarities by ``embedding`` and the datasets skipped, each with why."""

    similarities: list[Similarity] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


@lru_cache(maxsize=1)
def reference_encoder() -> tuple[nn.Module, ModelRecord]:
    """The reference encoder and its record (loaded once per process; its checksum is verified)."""
    from transfer.zoo.bundled import ccexam_records
    from transfer.zoo.loading import load_model

    record = next(r for r in ccexam_records() if r.id == REFERENCE_ENCODER)
    return load_model(record), record


def summarise(features: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
    """Mean (d,) and sample covariance (d, d) of features (n, d), in float64."""
    x = features.double().numpy()
    if len(x) < 2:
        raise DataError(f"an embedding summary needs at least 2 images, got {len(x)}.")
    return x.mean(axis=0), np.cov(x, rowvar=False)


def _psd_sqrt(matrix: np.ndarray) -> np.ndarray:
    values, vectors = np.linalg.eigh((matrix + matrix.T) / 2)
    return (vectors * np.sqrt(np.clip(values, 0.0, None))) @ vectors.T


def frechet_distance(a: DatasetEmbedding, b: DatasetEmbedding) -> float:
    """The Frechet distance between two summaries (see the module docstring); 0 for equal ones.

    ``tr((S_a S_b)^1/2)`` is taken as ``sum sqrt(eig(S_a^1/2 S_b S_a^1/2))``, a symmetric
    eigenproblem, so it stays real where ``scipy.linalg.sqrtm`` of the product would not."""
    root = _psd_sqrt(a.cov)
    inner = root @ b.cov @ root
    cross = np.sqrt(np.clip(np.linalg.eigvalsh((inner + inner.T) / 2), 0.0, None)).sum()
    gap = a.mean - b.mean
    return max(float(gap @ gap + np.trace(a.cov) + np.trace(b.cov) - 2.0 * cross), 0.0)


def embedding_similarity(a: DatasetEmbedding, b: DatasetEmbedding) -> Similarity:
    """``exp(-F / scale)`` with ``scale`` the pair's mean total variance (see the module docstring)."""
    distance = frechet_distance(a, b)
    scale = float(np.trace(a.cov) + np.trace(b.cov)) / 2.0
    value = float(np.exp(-distance / scale)) if scale > 0 else float(distance == 0.0)
    facts = {"frechet": round(distance, 6), "scale": round(scale, 6), "encoder": REFERENCE_ENCODER}
    facts |= {"sample": [a.n, b.n]}
    return Similarity(a.dataset_id, b.dataset_id, EMBEDDING, value, facts)


def _summary_path(cache_dir: Path, record: ModelRecord, data_checksum: str, n: int, seed: int) -> Path:
    key = {"encoder": record.checksum or record.id, "dataset": data_checksum, "n": n, "seed": seed}
    digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:32]
    return cache_dir / f"{digest}.npz"


def _load_summary(path: Path, dataset_id: str) -> DatasetEmbedding | None:
    if not path.is_file():
        return None
    with np.load(path) as saved:
        return DatasetEmbedding(dataset_id, saved["mean"], saved["cov"], int(saved["n"]))


def _save_summary(path: Path, emb: DatasetEmbedding) -> None:
    buffer = io.BytesIO()
    np.savez(buffer, mean=emb.mean, cov=emb.cov, n=np.array(emb.n))
    atomic_write_bytes(path, buffer.getvalue())


def embed_images(
    ds: ImageDataset,
    dataset_id: str,
    *,
    n: int = DEFAULT_SAMPLE,
    seed: int = 0,
    cache_dir: Path | None = DEFAULT_CACHE,
) -> DatasetEmbedding:
    """The embedding summary of a seeded sample of ``n`` images of ``ds`` (over all splits)."""
    model, record = reference_encoder()
    indices = sample_indices(ds, n, seed, split=None)
    feats, _cached = extract_features(model, record, ds, indices=indices, cache_dir=cache_dir, device="cpu")
    mean, cov = summarise(feats.penultimate)
    return DatasetEmbedding(dataset_id, mean, cov, len(indices))


def embed_dataset(
    store: GraphStore,
    dataset_id: str,
    *,
    n: int = DEFAULT_SAMPLE,
    seed: int = 0,
    cache_dir: Path | None = DEFAULT_CACHE,
) -> DatasetEmbedding:
    """The embedding summary of a registered dataset, from the cache when its recorded checksum is
    known there, else rebuilt from its recipe and encoded. Raises ``KgError`` / ``DataError`` when
    its images cannot be rebuilt."""
    from transfer.register import materialise

    _model, record = reference_encoder()
    summaries = None if cache_dir is None else Path(cache_dir).parent / SUMMARY_CACHE.name
    node = store.node(Label.DATASET, dataset_id) or {}
    recorded = node.get("checksum")
    if summaries is not None and recorded:
        cached = _load_summary(_summary_path(summaries, record, recorded, n, seed), dataset_id)
        if cached is not None:
            return cached
    ds = materialise(store, dataset_id)
    emb = embed_images(ds, dataset_id, n=n, seed=seed, cache_dir=cache_dir)
    if summaries is not None:
        _save_summary(_summary_path(summaries, record, recorded or checksum(ds), n, seed), emb)
    return emb


def embedding_similarities(
    store: GraphStore,
    dataset: str,
    against: Sequence[str] | None = None,
    *,
    n: int = DEFAULT_SAMPLE,
    seed: int = 0,
    cache_dir: Path | None = DEFAULT_CACHE,
    progress: Progress | None = None,
) -> EmbeddingResult:
    """``embedding`` similarity of ``dataset`` (id or name) with each of ``against`` (default: every
    other dataset), best first. Datasets whose images cannot be rebuilt are skipped with a note;
    if ``dataset`` itself cannot be, the result is empty with that note."""
    dataset_id, others = resolve_datasets(store, dataset, against)
    return compare_embeddings(
        store, dataset_id, others, n=n, seed=seed, cache_dir=cache_dir, progress=progress
    )


def compare_embeddings(
    store: GraphStore,
    dataset_id: str,
    others: Sequence[str],
    *,
    n: int = DEFAULT_SAMPLE,
    seed: int = 0,
    cache_dir: Path | None = DEFAULT_CACHE,
    progress: Progress | None = None,
) -> EmbeddingResult:
    """``embedding_similarities`` for ids already resolved (``kg.similarity.resolve_datasets``)."""
    result = EmbeddingResult()
    embeddings: dict[str, DatasetEmbedding] = {}
    todo = [dataset_id, *others]
    for done, current in enumerate(todo):
        if progress is not None:
            progress(f"embedding {current}", done, len(todo))
        try:
            embeddings[current] = embed_dataset(store, current, n=n, seed=seed, cache_dir=cache_dir)
        except (KgError, DataError) as exc:
            result.notes.append(f"embedding: skipped {current}: {exc}")
            if current == dataset_id:
                break  # nothing to compare the others with
    if progress is not None:
        progress("embedded", len(todo), len(todo))
    mine = embeddings.get(dataset_id)
    if mine is not None:
        result.similarities = sorted(
            (embedding_similarity(mine, embeddings[o]) for o in others if o in embeddings),
            key=lambda s: (-s.value, s.other_id),
        )
    return result

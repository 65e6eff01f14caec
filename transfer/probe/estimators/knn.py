"""Leave-one-out k-nearest-neighbour accuracy with cosine similarity."""

from __future__ import annotations

import torch
from torch import Tensor

from transfer.probe.estimators import linalg
from transfer.probe.estimators.inputs import check_inputs


def knn_accuracy(features: Tensor, labels: Tensor, *, k: int = 5, chunk_size: int = 2048) -> float:
    """Leave-one-out k-NN accuracy with cosine similarity, in [0, 1].

    Each sample is classified by the majority label of its k most similar other samples; ties go to
    the class with the larger summed similarity. Deterministic; memory is chunk_size x N.
    """
    checked = check_inputs(features, labels)
    f, y, num_classes = checked.features, checked.labels, checked.num_classes
    n = f.shape[0]
    k = max(1, min(k, n - 1))
    x = torch.nn.functional.normalize(f.to(linalg.compute_dtype(f)), dim=1)
    correct = 0
    for start in range(0, n, chunk_size):
        stop = min(start + chunk_size, n)
        sims = x[start:stop] @ x.T  # (chunk, N)
        rows = torch.arange(stop - start, device=x.device)
        sims[rows, rows + start] = -float("inf")  # leave the sample itself out
        top_sims, top_idx = sims.topk(k, dim=1)
        votes = torch.zeros(stop - start, num_classes, dtype=torch.float64, device=x.device)
        votes.scatter_add_(1, y[top_idx], torch.ones_like(top_sims, dtype=torch.float64))
        # summed similarity / (2k + 1) lies in (-1/2, 1/2): it only ever breaks ties between counts
        votes.scatter_add_(1, y[top_idx], top_sims.double() / (2 * k + 1))
        correct += int((votes.argmax(1) == y[start:stop]).sum())
    return correct / n

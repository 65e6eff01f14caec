"""SIMILAR_TO in the scorer: the history readout pools a source's outcomes on datasets recorded as
similar to the target, so a target with no outcomes gets a ranking of its own (both stores)."""

from __future__ import annotations

import numpy as np
import torch

from gnn.builder import PairContext, build_hetero
from gnn.model import GnnConfig, TransferGNN, history_width, similar_of
from gnn.train import TrainConfig, fit, outcome_table
from kg import GraphBatch, GraphStore
from kg.similarity import CONCEPT_OVERLAP, Similarity, record_similarities
from ontology.vocab import Label, Rel

D, M = Label.DATASET, Label.MODEL
FAMILIES = ("a", "b", "c")


def _graph() -> GraphBatch:
    """Three families of two targets each, alike in every profile field; source s_x is best on both
    targets of family x and middling or poor elsewhere."""
    b = GraphBatch()
    for f in FAMILIES:
        b.node(M, f"s_{f}", name=f"s_{f}", architecture="resnet18", num_params=11_000_000, num_classes=10)
        for k in (1, 2):
            b.node(D, f"{f}{k}", name=f"{f}{k}", n_samples=1000, n_classes=10)
    for f in FAMILIES:
        for k in (1, 2):
            for g in FAMILIES:
                accuracy = 0.9 if g == f else 0.5 + 0.1 * FAMILIES.index(g)
                b.edge(
                    Rel.TRANSFERRED_TO,
                    (M, f"s_{g}"),
                    (D, f"{f}{k}"),
                    activity=f"run:{g}:{f}{k}",
                    accuracy=accuracy,
                )
    return b


def _similar(store: GraphStore) -> None:
    sims = [Similarity(f"{f}1", f"{f}2", CONCEPT_OVERLAP, 0.8) for f in FAMILIES]
    for f in FAMILIES:
        record_similarities(store, f"{f}1", [s for s in sims if s.dataset_id == f"{f}1"])


def test_history_readout_pools_outcomes_on_similar_datasets(store: GraphStore) -> None:
    store.apply(_graph())
    _similar(store)
    data, maps = build_hetero(store)
    assert data.similar_index.shape[1] == 6  # three pairs, both directions
    config = GnnConfig()
    model = TransferGNN(config)
    outcomes = outcome_table(data)
    target = maps.index_of("dataset", "a1")
    visible = outcomes.dst != target
    vis = tuple(
        torch.from_numpy(v[visible].astype(np.int64 if i < 2 else np.float32))
        for i, v in enumerate((outcomes.src, outcomes.dst, outcomes.z, outcomes.q))
    )
    h = {nt: torch.zeros(data[nt].num_nodes, config.hidden) for nt in data.node_types}
    src = torch.tensor([maps.index_of("model", f"s_{f}") for f in FAMILIES])
    dst = torch.full((3,), target)
    readout, _ = model.history(h, src, dst, vis, data["dataset"].x, similar_of(data))
    assert readout.shape == (3, history_width(config))
    twin = maps.index_of("dataset", "a2")
    expected = [float(outcomes.z[(outcomes.src == int(s)) & (outcomes.dst == twin)][0]) for s in src]
    np.testing.assert_allclose(readout[:, -2].detach().numpy(), expected, rtol=1e-5)
    assert readout[:, -1].tolist() == [1.0, 1.0, 1.0]


def test_similar_datasets_give_a_held_out_target_its_own_ranking(store: GraphStore) -> None:
    store.apply(_graph())
    _similar(store)
    data, maps = build_hetero(store)
    context = PairContext(data)
    models = np.array([maps.index_of("model", f"s_{f}") for f in FAMILIES])
    best = {}
    for f in ("a", "c"):
        target = maps.index_of("dataset", f"{f}1")
        result = fit(data, train=TrainConfig(epochs=150, ensemble=1), seed=0, exclude_targets=[target])
        prediction = result.ensemble.predict(data, context, outcome_table(data, [target]), target, models)
        best[f] = FAMILIES[int(np.argmax(prediction.z))]
    assert best == {"a": "a", "c": "c"}  # each held-out target's twin decides; one ranking would not

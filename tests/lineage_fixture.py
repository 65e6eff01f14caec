"""A lineage graph used by the store, lineage and CLI tests.

fmnist -> fmnist-rot (rotate) -> fmnist-rot-blur (blur) -> fmnist-rot-blur-noise (noise)
       -> ...-small (subset) -> ...-imbalanced (imbalance) -> ...-gray-inverted (invert): seven datasets.
Model ``cnn-base`` is TRAINED_ON the imbalanced variant; ``cnn-tuned`` is FINETUNED_FROM it and
TRAINED_ON ``digits``. Biases sit upstream (``fmnist``: label noise; the imbalanced variant: class
imbalance) and on ``digits``. ``tricky`` is a dataset whose name holds quotes and Cypher keywords.
"""

from __future__ import annotations

from kg import GraphBatch
from ontology.vocab import Label, Rel

CHAIN = [
    ("fmnist", None),
    ("fmnist-rot", "rotate"),
    ("fmnist-rot-blur", "blur"),
    ("fmnist-rot-blur-noise", "noise"),
    ("fmnist-rot-blur-noise-small", "subset"),
    ("fmnist-imbalanced", "imbalance"),
    ("fmnist-gray-inverted", "invert"),
]
TRICKY_NAME = "x\"); MATCH (n) DETACH DELETE n; // 'quoted' RETURN"

D, M, B, A, G = Label.DATASET, Label.MODEL, Label.BIAS, Label.ACTIVITY, Label.AGENT


def lineage_batch() -> GraphBatch:
    """The fixture graph as one batch."""
    b = GraphBatch()
    for i, (name, how) in enumerate(CHAIN):
        b.node(D, name, name=name, n_samples=1000 - 100 * i, mean=[0.28], checksum=f"sha-{i}")
        if how:
            parent = CHAIN[i - 1][0]
            b.edge(Rel.DERIVED_FROM, (D, name), (D, parent), how=how, params={"step": i})
    b.node(D, "digits", name="digits", n_samples=1797)
    b.node(D, "tricky", name=TRICKY_NAME, description="a name to break naive query building")
    b.edge(Rel.DERIVED_FROM, (D, "tricky"), (D, "digits"), how="subset")
    b.node(M, "cnn-base", name="cnn-base", architecture="SmallCNN", num_params=12345)
    b.node(M, "cnn-tuned", name="cnn-tuned", architecture="SmallCNN", num_params=12345)
    b.edge(Rel.TRAINED_ON, (M, "cnn-base"), (D, "fmnist-imbalanced"))
    b.edge(Rel.TRAINED_ON, (M, "cnn-tuned"), (D, "digits"))
    b.edge(Rel.FINETUNED_FROM, (M, "cnn-tuned"), (M, "cnn-base"))
    b.node(
        B,
        "bias-label-noise",
        name="label noise",
        kind="label-noise",
        source="human",
        severity="medium",
        description="about 3% of training labels are wrong",
    )
    b.node(
        B,
        "bias-imbalance",
        name="class imbalance",
        kind="class-imbalance",
        source="measured",
        severity="high",
        description="rarest class has 1/10 of the commonest",
    )
    b.node(
        B,
        "bias-writers",
        name="few writers",
        kind="sampling",
        source="human",
        severity="low",
        description="digits come from 43 writers",
    )
    b.edge(Rel.HAS_BIAS, (D, "fmnist"), (B, "bias-label-noise"))
    b.edge(Rel.HAS_BIAS, (D, "fmnist-imbalanced"), (B, "bias-imbalance"))
    b.edge(Rel.HAS_BIAS, (D, "digits"), (B, "bias-writers"))
    b.node(
        A,
        "act-pretrain",
        name="pretrain cnn-base",
        kind="pretraining",
        status="finished",
        settings={"epochs": 3},
    )
    b.node(G, "alice", name="Alice", kind="person")
    b.edge(Rel.USED, (A, "act-pretrain"), (D, "fmnist-imbalanced"), role="train")
    b.edge(Rel.GENERATED_BY, (M, "cnn-base"), (A, "act-pretrain"))
    b.edge(Rel.ASSOCIATED_WITH, (A, "act-pretrain"), (G, "alice"))
    b.edge(Rel.ATTRIBUTED_TO, (D, "fmnist"), (G, "alice"), role="creator")
    return b

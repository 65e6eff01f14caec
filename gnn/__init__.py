"""Graph learning: the KG as a PyG ``HeteroData``, the heterogeneous GNN, training on recorded
outcomes, scoring (compatibility, shift risk, bias risk) and leave-one-target-out evaluation.

Imports ``kg`` and ``ontology`` (never ``transfer``).
"""

from gnn.builder import IdMaps, PairContext, build_hetero
from gnn.evaluate import LotoResult, loto
from gnn.model import GnnConfig, TransferGNN
from gnn.scores import Recommendation, Score, StaleScorerWarning, recommend
from gnn.train import ScorerError, ScorerInfo, TrainConfig, fit, load_scorer, train_scorer

__all__ = [
    "GnnConfig",
    "IdMaps",
    "LotoResult",
    "PairContext",
    "Recommendation",
    "Score",
    "ScorerError",
    "ScorerInfo",
    "StaleScorerWarning",
    "TrainConfig",
    "TransferGNN",
    "build_hetero",
    "fit",
    "load_scorer",
    "loto",
    "recommend",
    "train_scorer",
]

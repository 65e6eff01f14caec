"""The heterogeneous GNN that scores (source model, target dataset) pairs.

Read top to bottom: standardise node features, encode each node type, run ``layers`` rounds of typed
message passing, then score pairs with a head that also attends over the source's recorded outcomes.

Message passing (one ``HeteroLayer``; h_t [N_t, H] for every node type t):

    h'_t = LayerNorm(h_t + Dropout(ReLU(S_t(h) + A_t(h))))

* ``S`` (structural edges, ``STRUCTURAL_MP``): ``conv="sage"``: sum over edge types r of SAGEConv
  (W_1 x_i + W_2 mean_{j in N_r(i)} x_j); ``conv="hgt"``: one HGTConv (type-specific attention).
* ``A`` (attributed edges: SCORED_ON measurements and visible outcomes, both directions): sum over
  edge types of ``EdgeSAGEConv``: W_root x_i + W_out mean_j ReLU(W_src x_j + W_edge e_ji). An
  outcome edge carries e = [z, q, 1]: z the accuracy standardised within its target, q its
  percentile there; the caller decides which outcomes are visible, so held-out ones never reach the
  embeddings.

Pair head, for P pairs (m_p, d_p) with pair features f_p [P, F] (``builder.PairContext``):

    w_e   = softmax_e(<Q h_{d_p}, K h_{d'}> / sqrt(A)) over the source's visible outcomes e = (m_p, d')
    v_e   = softmax_e(-sum_k exp(s_k) gap_k(d_p, d')^2)  (``feature_kernel``: ``gnn.similarity``)
    u_e   = softmax_e(sum_k exp(g_k) sim_k(d_p, d')) over the outcomes whose target d' is recorded
            SIMILAR_TO d_p (``similarity_pool``; k: concept overlap, profile, embedding)
    r_p   = [sum w_e z_e, sum w_e q_e, mean z, mean q, min z, max z, std z, log(1 + n), 1[n > 0],
             sum v_e z_e, sum u_e z_e, 1[any d' SIMILAR_TO d_p]]                             [P, 12]
    a_p   = (1 - sigmoid(c)) * r_p[0] + sigmoid(c) * r_p[9]
    z_hat = MLP([h_{m_p} || h_{d_p} || h_{m_p} * h_{d_p} || f_p || r_p]) + b * a_p                  [P]

(``residual``: the head starts from the pooled history a_p, b a learned scalar initialised to 1, c a
learned mix initialised to 0, and learns corrections to it. Without ``feature_kernel`` r_p lacks its
10th column and a_p = r_p[0]; without ``similarity_pool`` it lacks the last two.)

The similarity pool is where recorded knowledge about the target itself enters: its class concepts,
profile and image embedding compared with other datasets' (``kg.similarity``,
``transfer.probe.dataset_embedding``). A target with no outcomes but SIMILAR_TO datasets with history
is ranked from the sources' results on those, so two new targets get different rankings when they
resemble different datasets.

``r_p`` is a PNA-style multi-aggregation readout of the source's outcome edges: the attention lets a
target draw on the source's results on similar targets (a learned, target-conditioned version of
"how good is this model elsewhere"), the plain statistics give the head the robust summaries, and
the kernel pool v weighs the source's outcomes by how alike their targets' own records (size,
classes, image statistics) are to this target's, with a learned per-column scale s_k (initialised
to 1 standard deviation of the training targets). The kernel pool is the one that generalises to
an unseen target on the TransferGraph records, where the learned attention over embeddings does not
(docs/benchmarks.md); on the local zoo, whose variants share their records, the attention matters
more, so the mix c is learned.

Self-supervised link decoder (DistMult), per structural relation r with vector w_r [H]:
``logit(s, r, d) = sum(h_s * w_r * h_d)``.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import torch
from torch import Tensor, nn
from torch_geometric.data import HeteroData
from torch_geometric.nn import HeteroConv, HGTConv, MessagePassing, SAGEConv
from torch_geometric.utils import scatter, softmax

from gnn.builder import (
    FEATURE_DIMS,
    NODE_TYPES,
    PAIR_FEATURES,
    REV_SCORED,
    SCORE_KINDS,
    SCORED,
    STRUCTURAL,
    reverse,
)
from gnn.similarity import VALUE_COLUMNS, kernel_statistics, squared_gaps
from kg.similarity import ALL_METHODS as SIMILARITY_METHODS

EdgeType = tuple[str, str, str]

STRUCTURAL_MP: tuple[EdgeType, ...] = tuple(
    et for src, rel, dst, _ in STRUCTURAL for et in ((src, rel, dst), reverse((src, rel, dst)))
)
"""Structural message-passing edge types (forward and reverse)."""
STRUCTURAL_FORWARD: tuple[EdgeType, ...] = tuple((src, rel, dst) for src, rel, dst, _ in STRUCTURAL)
"""Forward structural edge types: the self-supervised link-prediction targets."""
OUTCOME_MP: EdgeType = ("model", "outcome", "dataset")
REV_OUTCOME_MP: EdgeType = ("dataset", "rev_outcome", "model")
OUTCOME_ATTR_DIM = 3
HISTORY_FEATURES = 9
ATTRIBUTED_MP: tuple[EdgeType, ...] = (SCORED, REV_SCORED, OUTCOME_MP, REV_OUTCOME_MP)
"""Attributed message-passing edge types (widths: ``scored_attr_dim`` and ``OUTCOME_ATTR_DIM``)."""


@dataclass(frozen=True)
class GnnConfig:
    """Architecture of the scorer (saved with every checkpoint)."""

    conv: str = "sage"
    """``"sage"`` (HeteroConv of SAGEConv) or ``"hgt"`` (HGTConv) for the structural edges."""
    hidden: int = 48
    layers: int = 2
    heads: int = 2
    """HGT attention heads (``conv="hgt"`` only)."""
    dropout: float = 0.1
    attention_dim: int = 16
    history: bool = True
    """Whether the pair head attends over the source's visible outcomes."""
    residual: bool = True
    """Whether the head predicts a correction to the pooled history z (``prior_weight`` * a_p)."""
    feature_kernel: bool = True
    """Whether the history readout also pools the source's outcomes weighted by how alike their
    targets' own records are to this target's (``gnn.similarity``, a learned per-column scale), and
    the residual starts from a learned mix of that pool and the attended one."""
    similarity_pool: bool = True
    """Whether the history readout also pools the source's outcomes on datasets recorded as SIMILAR_TO
    the target (concept overlap, profile, embedding; a learned weight per method), with an indicator
    of whether any such outcome exists."""
    seen_prior: float = 2.0
    """Within-target z added at prediction, outside the learned head, when the source was already
    trained on the target's data (``PairContext.trained_on_data``); 0 turns it off (see ``Ensemble``)."""
    estimator_weight: float = 0.5
    """Weight of the target's own estimator measurements when they re-order the candidates probed on
    it, against the learned prediction (``gnn.evidence``); 0 leaves the learned ranking as it is. It
    applies to scorers whose training outcomes had no estimator measurements beside them (e.g.
    trained on TransferGraph's records); a head that saw them learned their weight itself
    (``Ensemble.effective_weight``)."""

    pair_features: tuple[str, ...] = PAIR_FEATURES
    """Names of the pair-feature columns the head reads (``builder.PAIR_FEATURES`` when trained); a
    saved scorer keeps its own, and ``gnn.layout`` maps today's columns onto them by name."""
    score_kinds: tuple[str, ...] = SCORE_KINDS
    """Names of the SCORED_ON kinds its measurement edges were one-hot over (``builder.SCORE_KINDS``)."""

    def to_dict(self) -> dict:
        """Plain dict (JSON-ready)."""
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}

    @classmethod
    def from_dict(cls, values: dict) -> GnnConfig:
        """The config from ``to_dict`` output (unknown keys ignored)."""
        return cls(
            **{
                k: tuple(v) if isinstance(v, list) else v
                for k, v in values.items()
                if k in cls.__dataclass_fields__
            }
        )


def scored_attr_dim(config: GnnConfig) -> int:
    """Width of a SCORED_ON edge's attributes for this scorer: kind one-hot plus value, has p, -log p."""
    return len(config.score_kinds) + 3


def history_width(config: GnnConfig) -> int:
    """Columns of the history readout: ``HISTORY_FEATURES``, plus the kernel pool with
    ``feature_kernel``, plus the similarity pool and its indicator with ``similarity_pool``."""
    return HISTORY_FEATURES + int(config.feature_kernel) + 2 * int(config.similarity_pool)


def similar_of(data: HeteroData) -> tuple[Tensor, Tensor] | None:
    """The graph's SIMILAR_TO (index, values) as ``builder.build_hetero`` stores them, if any."""
    index = getattr(data, "similar_index", None)
    return (index, data.similar_value) if index is not None else None


def similarity_lookup(similar: tuple[Tensor, Tensor] | None, left: Tensor, right: Tensor) -> Tensor:
    """[K, M] SIMILAR_TO values of dataset-row pairs (``left``, ``right``) [K] from ``similar`` =
    (index [2, S] sorted by a * N + b, values [S, M]); zeros for pairs without one."""
    if similar is None or similar[0].shape[1] == 0 or len(left) == 0:
        width = similar[1].shape[1] if similar is not None else len(SIMILARITY_METHODS)
        return torch.zeros(len(left), width)
    index, values = similar
    n = int(max(index.max(), left.max(), right.max())) + 1
    codes = index[0] * n + index[1]
    query = left * n + right
    pos = torch.clamp(torch.searchsorted(codes, query), max=len(codes) - 1)
    found = codes[pos] == query
    return torch.where(found[:, None], values[pos], torch.zeros(()))


def attributed_dim(config: GnnConfig, edge_type: EdgeType) -> int:
    """Edge-feature width of an attributed message-passing edge type."""
    return scored_attr_dim(config) if edge_type in (SCORED, REV_SCORED) else OUTCOME_ATTR_DIM


class EdgeSAGEConv(MessagePassing):
    """x'_i = W_root x_i + W_out mean_{j in N(i)} ReLU(W_src x_j + W_edge e_ji).

    A two-layer message MLP whose second layer is applied after the (linear) mean, and whose first
    layer is applied to nodes before the gather: the same function, a third of the per-edge work.
    Shapes: x = (x_src [N_s, H], x_dst [N_d, H]), edge_index [2, E], edge_attr [E, F_e] -> [N_d, H].
    """

    def __init__(self, channels: int, edge_dim: int) -> None:
        super().__init__(aggr="mean")
        self.root = nn.Linear(channels, channels)
        self.source = nn.Linear(channels, channels)
        self.edge = nn.Linear(edge_dim, channels, bias=False)
        self.out = nn.Linear(channels, channels, bias=False)

    def forward(self, x: tuple[Tensor, Tensor], edge_index: Tensor, edge_attr: Tensor) -> Tensor:
        x_src, x_dst = x
        mean = self.propagate(
            edge_index,
            x=(self.source(x_src), x_dst),
            edge_attr=self.edge(edge_attr),
            size=(len(x_src), len(x_dst)),
        )
        return self.out(mean) + self.root(x_dst)

    def message(self, x_j: Tensor, edge_attr: Tensor) -> Tensor:
        return torch.relu(x_j + edge_attr)


class HeteroLayer(nn.Module):
    """One round of typed message passing with a residual connection (see the module docstring)."""

    def __init__(self, config: GnnConfig) -> None:
        super().__init__()
        h = config.hidden
        self.conv = config.conv
        if config.conv == "sage":
            self.structural: nn.Module = HeteroConv(
                {et: SAGEConv((h, h), h, aggr="mean") for et in STRUCTURAL_MP}, aggr="sum"
            )
        elif config.conv == "hgt":
            self.structural = HGTConv(h, h, (list(NODE_TYPES), list(STRUCTURAL_MP)), heads=config.heads)
        else:
            raise ValueError(f"unknown conv {config.conv!r}; use 'sage' or 'hgt'.")
        self.attributed = HeteroConv(
            {et: EdgeSAGEConv(h, attributed_dim(config, et)) for et in ATTRIBUTED_MP}, aggr="sum"
        )
        self.norm = nn.ModuleDict({nt: nn.LayerNorm(h) for nt in NODE_TYPES})
        self.dropout = nn.Dropout(config.dropout)

    def forward(
        self, h: dict[str, Tensor], edge_index: dict[EdgeType, Tensor], edge_attr: dict[EdgeType, Tensor]
    ) -> dict[str, Tensor]:
        structural = {et: edge_index[et] for et in STRUCTURAL_MP if edge_index[et].shape[1] > 0}
        attributed = {et: edge_index[et] for et in ATTRIBUTED_MP if edge_index[et].shape[1] > 0}
        present = {nt: x for nt, x in h.items() if len(x) > 0}
        messages: dict[str, Tensor] = {}
        if structural:
            if self.conv == "hgt":
                used = {nt for et in structural for nt in (et[0], et[2])}
                out = self.structural({nt: present[nt] for nt in used}, structural)
            else:
                out = self.structural(present, structural)
            messages = {nt: v for nt, v in out.items() if v is not None}
        if attributed:
            out = self.attributed(
                present, attributed, edge_attr_dict={et: edge_attr[et] for et in attributed}
            )
            for nt, v in out.items():
                messages[nt] = messages[nt] + v if nt in messages else v
        new = {}
        for nt, x in h.items():
            update = messages.get(nt)
            y = x if update is None else x + self.dropout(torch.relu(update))
            new[nt] = self.norm[nt](y)
        return new


class TransferGNN(nn.Module):
    """Encoders, ``layers`` HeteroLayers, a DistMult link decoder and the pair head."""

    def __init__(self, config: GnnConfig) -> None:
        super().__init__()
        self.config = config
        h = config.hidden
        for nt in NODE_TYPES:
            self.register_buffer(f"x_mean_{nt}", torch.zeros(FEATURE_DIMS[nt]))
            self.register_buffer(f"x_std_{nt}", torch.ones(FEATURE_DIMS[nt]))
        self.encoders = nn.ModuleDict({nt: nn.Linear(FEATURE_DIMS[nt], h) for nt in NODE_TYPES})
        self.layers = nn.ModuleList([HeteroLayer(config) for _ in range(config.layers)])
        self.relation = nn.Parameter(torch.randn(len(STRUCTURAL_FORWARD), h) * 0.1)
        self.query = nn.Linear(h, config.attention_dim)
        self.key = nn.Linear(h, config.attention_dim)
        self.prior_weight = nn.Parameter(torch.ones(()))
        if config.similarity_pool:  # exp(scale) * value per method; starts at 4 per unit of similarity
            self.similarity_scale = nn.Parameter(torch.full((len(SIMILARITY_METHODS),), math.log(4.0)))
        if config.feature_kernel:
            self.kernel_scale = nn.Parameter(torch.zeros(len(VALUE_COLUMNS)))
            self.base_mix = nn.Parameter(torch.zeros(()))
            self.register_buffer("kernel_mean", torch.zeros(len(VALUE_COLUMNS)))
            self.register_buffer("kernel_sd", torch.ones(len(VALUE_COLUMNS)))
        self.head = nn.Sequential(
            nn.Linear(3 * h + len(config.pair_features) + history_width(config), h),
            nn.ReLU(),
            nn.Dropout(config.dropout),
            nn.Linear(h, h // 2),
            nn.ReLU(),
            nn.Linear(h // 2, 1),
        )

    # -- features ---------------------------------------------------------------------------
    @torch.no_grad()
    def set_normalisation(self, x_dict: dict[str, Tensor]) -> None:
        """Store per-column mean / std of the training graph's features (used at every forward)."""
        for nt in NODE_TYPES:
            x = x_dict[nt]
            if len(x) == 0:
                continue
            mean, std = x.mean(0), x.std(0, unbiased=False)
            getattr(self, f"x_mean_{nt}").copy_(mean)
            getattr(self, f"x_std_{nt}").copy_(torch.where(std > 1e-6, std, torch.ones_like(std)))

    @torch.no_grad()
    def set_kernel_statistics(self, x_targets: Tensor) -> None:
        """Standardise the feature kernel over ``x_targets``, the raw features of the datasets with
        training outcomes (``feature_kernel`` only)."""
        if self.config.feature_kernel:
            mean, sd = kernel_statistics(x_targets)
            self.kernel_mean.copy_(mean)
            self.kernel_sd.copy_(sd)

    def embed(
        self,
        x_dict: dict[str, Tensor],
        edge_index: dict[EdgeType, Tensor],
        edge_attr: dict[EdgeType, Tensor],
    ) -> dict[str, Tensor]:
        """Node embeddings {type: [N_t, H]} after message passing over the given edges."""
        h = {}
        for nt in NODE_TYPES:
            x = (x_dict[nt] - getattr(self, f"x_mean_{nt}")) / getattr(self, f"x_std_{nt}")
            h[nt] = torch.relu(self.encoders[nt](x))
        for layer in self.layers:
            h = layer(h, edge_index, edge_attr)
        return h

    # -- decoders ---------------------------------------------------------------------------
    def link_logits(self, h: dict[str, Tensor], relation: int, src: Tensor, dst: Tensor) -> Tensor:
        """DistMult logits [P] for structural relation ``STRUCTURAL_FORWARD[relation]``."""
        s, _, d = STRUCTURAL_FORWARD[relation]
        return (h[s][src] * self.relation[relation] * h[d][dst]).sum(-1)

    def history(
        self,
        h: dict[str, Tensor],
        src: Tensor,
        dst: Tensor,
        visible: tuple[Tensor, ...],
        x_dataset: Tensor,
        similar: tuple[Tensor, Tensor] | None = None,
    ) -> tuple[Tensor, tuple[Tensor, Tensor, Tensor]]:
        """[P, ``history_width``] history readout (see the module docstring) and (pair, edge,
        weight) [K] of the pooling the residual starts from (a_p), for explanations. ``visible`` =
        (model rows, dataset rows, z, q), each [E]; ``x_dataset`` [N_d, 17] the raw dataset
        features (for ``feature_kernel``); ``similar`` the graph's SIMILAR_TO (``similar_of``)."""
        vis_src, vis_dst, vis_z, vis_q = visible
        n_pairs, n_models = len(src), len(h["model"])
        if len(vis_src) == 0 or not self.config.history:
            empty = torch.zeros(0, dtype=torch.long)
            return torch.zeros(n_pairs, history_width(self.config)), (empty, empty, torch.zeros(0))
        order = torch.argsort(vis_src, stable=True)
        degree = torch.bincount(vis_src, minlength=n_models)
        start = torch.cumsum(degree, 0) - degree
        counts = degree[src]
        pair = torch.repeat_interleave(torch.arange(n_pairs), counts)
        offset = torch.cumsum(counts, 0) - counts
        edge = order[start[src][pair] + torch.arange(len(pair)) - offset[pair]]
        q = self.query(h["dataset"][dst])[pair]
        k = self.key(h["dataset"][vis_dst[edge]])
        weight = softmax((q * k).sum(-1) / math.sqrt(self.config.attention_dim), pair, num_nodes=n_pairs)
        z, pct = vis_z[edge], vis_q[edge]

        def pool(values: Tensor, reduce: str) -> Tensor:
            return scatter(values, pair, dim=0, dim_size=n_pairs, reduce=reduce)

        mean = pool(z, "mean")
        std = torch.sqrt(torch.clamp(pool(z * z, "mean") - mean**2, min=0.0) + 1e-6)
        readout = [
            pool(weight * z, "sum"),
            pool(weight * pct, "sum"),
            mean,
            pool(pct, "mean"),
            pool(z, "min"),
            pool(z, "max"),
            std,
            torch.log1p(counts.float()),
            (counts > 0).float(),
        ]
        if self.config.feature_kernel:
            gaps = squared_gaps(
                x_dataset[dst][pair], x_dataset[vis_dst[edge]], self.kernel_mean, self.kernel_sd
            )
            near = softmax(-(gaps * torch.exp(self.kernel_scale)).sum(-1), pair, num_nodes=n_pairs)
            readout.append(pool(near * z, "sum"))
            mix = torch.sigmoid(self.base_mix)
            weight = (1 - mix) * weight + mix * near  # what the residual's a_p pooled
        if self.config.similarity_pool:  # after the kernel column: the residual reads that by index
            sim = similarity_lookup(similar, dst[pair], vis_dst[edge])
            has = (sim > 0).any(-1)
            logits = torch.where(has, (sim * torch.exp(self.similarity_scale)).sum(-1), torch.full((), -1e4))
            w_sim = softmax(logits, pair, num_nodes=n_pairs) * has
            total = pool(w_sim, "sum")
            readout.append(pool(w_sim * z, "sum") / torch.clamp(total, min=1e-12))
            readout.append(pool(has.float(), "max"))
        return torch.stack(readout, dim=1), (pair, edge, weight)

    def pair_scores(
        self,
        h: dict[str, Tensor],
        src: Tensor,
        dst: Tensor,
        pair_x: Tensor,
        visible: tuple[Tensor, ...],
        x_dataset: Tensor,
        similar: tuple[Tensor, Tensor] | None = None,
    ) -> tuple[Tensor, tuple[Tensor, Tensor, Tensor]]:
        """Predicted within-target z [P] for model rows ``src`` and dataset rows ``dst``, and the
        history attention (see ``history``)."""
        hm, hd = h["model"][src], h["dataset"][dst]
        hist, attention = self.history(h, src, dst, visible, x_dataset, similar)
        z = self.head(torch.cat([hm, hd, hm * hd, pair_x, hist], dim=-1)).squeeze(-1)
        if self.config.residual:  # start from the pooled history; learn corrections
            base = hist[:, 0]
            if self.config.feature_kernel:  # a learned mix of the attended and the kernel pool
                mix = torch.sigmoid(self.base_mix)
                base = (1 - mix) * base + mix * hist[:, HISTORY_FEATURES]
            z = z + self.prior_weight * base
        return z, attention

"""Training the scorer on recorded outcomes, saving it, and recording it in the graph.

Training is full-batch. Each epoch simulates the question the scorer will be asked (a target whose
outcomes it has not seen):

1. a random tenth (at least one) of the targets with outcomes is *held out*: their outcome edges
   are removed from message passing and from every source's history, and only their pairs are
   supervised (on TransferGraph: one target per epoch, as in leave-one-target-out);
2. a random 20% of each structural relation is dropped from message passing and used as positives
   for the self-supervised link loss (negatives: random destinations of the same type);
3. loss = MSE(z_hat, z) + ``rank_weight`` * ListNet(z_hat, z) within each held-out target
   + ``link_weight`` * BCE(link logits), z the accuracy standardised within its target (clipped
   to +-10).

A graph without outcomes trains the link loss alone; the scorer then says so (basis
"self-supervised"). Uncertainty comes from a deep ensemble: ``ensemble`` members with seeds
``seed * 1000 + k``, each reproducible on CPU.

The trained scorer is an artefact of the graph: a Model node (kind ``gnn-scorer``) with its
checkpoint (safetensors, written atomically) and checksum, TRAINED_ON a Dataset node that stands
for the snapshot of outcomes it saw (``outcomes-snapshot:{digest[:16]}``).
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import scipy.stats
import torch
from torch import Tensor
from torch_geometric.data import HeteroData
from torch_geometric.utils import softmax

from gnn.builder import (
    NODE_TYPES,
    OUTCOME,
    PAIR_FEATURES,
    REV_SCORED,
    SCORED,
    SCORER_KIND,
    SNAPSHOT_SOURCE,
    IdMaps,
    PairContext,
    build_hetero,
    reverse,
)
from gnn.evidence import blend, estimator_evidence
from gnn.layout import adapt, data_in_layout, to_layout
from gnn.model import (
    OUTCOME_MP,
    REV_OUTCOME_MP,
    STRUCTURAL_FORWARD,
    EdgeType,
    GnnConfig,
    TransferGNN,
    similar_of,
)
from kg.batch import GraphBatch
from kg.clock import now
from kg.errors import KgError
from kg.files import atomic_write_bytes
from kg.store import GraphStore
from ontology.vocab import Label, Rel

CHECKPOINT_FORMAT = "kgraft-gnn-scorer/1"
TRAINED_ON_RELATION = STRUCTURAL_FORWARD.index(("model", "trained_on", "dataset"))


class ScorerError(KgError):
    """The GNN scorer cannot be trained, found or loaded (one sentence)."""


@dataclass(frozen=True)
class TrainConfig:
    """Optimisation settings (saved with every scorer)."""

    epochs: int = 300
    lr: float = 5e-3
    weight_decay: float = 1e-4
    ensemble: int = 4
    holdout_fraction: float = 0.1
    rank_weight: float = 1.0
    link_weight: float = 0.2
    edge_drop: float = 0.2
    temperature: float = 0.5
    z_clip: float = 10.0

    def to_dict(self) -> dict:
        """Plain dict (JSON-ready)."""
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict) -> TrainConfig:
        """The config from ``to_dict`` output (unknown keys ignored)."""
        return cls(**{k: v for k, v in values.items() if k in cls.__dataclass_fields__})


# ----------------------------------------------------------------------------- outcomes


@dataclass(frozen=True)
class Outcomes:
    """Outcome pairs a scorer may learn from or look at, z-scored within each target.

    All arrays [E]: model rows, dataset rows, mean accuracy, within-target z (clipped) and
    within-target percentile q in (0, 1) (ties share their mean rank).
    """

    src: np.ndarray
    dst: np.ndarray
    accuracy: np.ndarray
    z: np.ndarray
    q: np.ndarray

    def __len__(self) -> int:
        return len(self.src)

    def targets(self) -> np.ndarray:
        """Dataset rows with at least one outcome, sorted."""
        return np.unique(self.dst)

    def stats(self, target: int) -> tuple[float, float, int]:
        """(mean, std, count) of the recorded accuracies on ``target``."""
        acc = self.accuracy[self.dst == target]
        return (float(acc.mean()), float(acc.std()), len(acc)) if len(acc) else (float("nan"), 0.0, 0)


def outcome_table(
    data: HeteroData, exclude_targets: Sequence[int] = (), z_clip: float = 10.0, ddof: int = 0
) -> Outcomes:
    """The graph's outcomes minus those into ``exclude_targets``, z-scored within each target
    (standard deviation with ``ddof``), clipped to +-``z_clip``, and their percentiles."""
    ei = data[OUTCOME].edge_index.numpy()
    acc = data[OUTCOME].edge_label.numpy().astype(np.float64)
    keep = ~np.isin(ei[1], np.asarray(list(exclude_targets), dtype=np.int64))
    src, dst, acc = ei[0][keep], ei[1][keep], acc[keep]
    z, q = np.zeros(len(acc)), np.zeros(len(acc))
    for t in np.unique(dst):
        sel = dst == t
        sd = acc[sel].std(ddof=ddof) if sel.sum() > ddof else 0.0
        z[sel] = (acc[sel] - acc[sel].mean()) / sd if sd > 1e-9 else 0.0
        q[sel] = (scipy.stats.rankdata(acc[sel]) - 0.5) / sel.sum()
    return Outcomes(src, dst, acc, np.clip(z, -z_clip, z_clip), q)


def message_edges(
    data: HeteroData,
    outcomes: Outcomes,
    visible: np.ndarray | None = None,
    structural: dict[EdgeType, Tensor] | None = None,
) -> tuple[dict[EdgeType, Tensor], dict[EdgeType, Tensor]]:
    """Edge indices and attributes for message passing: structural edges (``structural`` overrides
    the forward ones, e.g. after dropout), SCORED_ON both ways, and the ``visible`` outcomes both
    ways with attributes [z, q, 1]."""
    edge_index: dict[EdgeType, Tensor] = {}
    for et in STRUCTURAL_FORWARD:
        ei = structural[et] if structural is not None else data[et].edge_index
        edge_index[et] = ei
        edge_index[reverse(et)] = ei.flip(0)
    edge_attr = {SCORED: data[SCORED].edge_attr, REV_SCORED: data[REV_SCORED].edge_attr}
    edge_index[SCORED] = data[SCORED].edge_index
    edge_index[REV_SCORED] = data[REV_SCORED].edge_index
    mask = np.ones(len(outcomes), dtype=bool) if visible is None else visible
    ei = torch.from_numpy(np.stack([outcomes.src[mask], outcomes.dst[mask]]).astype(np.int64)).reshape(2, -1)
    z = torch.from_numpy(outcomes.z[mask].astype(np.float32))
    q = torch.from_numpy(outcomes.q[mask].astype(np.float32))
    attr = torch.stack([z, q, torch.ones_like(z)], dim=1)
    edge_index[OUTCOME_MP], edge_attr[OUTCOME_MP] = ei, attr
    edge_index[REV_OUTCOME_MP], edge_attr[REV_OUTCOME_MP] = ei.flip(0), attr
    return edge_index, edge_attr


def _visible(outcomes: Outcomes, mask: np.ndarray) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    return (
        torch.from_numpy(outcomes.src[mask].astype(np.int64)),
        torch.from_numpy(outcomes.dst[mask].astype(np.int64)),
        torch.from_numpy(outcomes.z[mask].astype(np.float32)),
        torch.from_numpy(outcomes.q[mask].astype(np.float32)),
    )


# ----------------------------------------------------------------------------- the ensemble


@contextmanager
def one_thread() -> Iterator[None]:
    """Run torch on one thread: these graphs are small, so thread hand-offs cost more than they save
    (10x slower scatters on a busy 2-core machine), and results stay bitwise reproducible."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


@dataclass
class Prediction:
    """Scores of candidate models for one target.

    z, z_std, link, link_std [P]: ensemble mean / std of the predicted within-target z (after the
    seen prior and the estimator evidence, ``gnn.evidence``) and of the
    self-supervised TRAINED_ON link probability; ``attention`` lists, per pair, (dataset row, weight,
    z) of the source's outcomes the history attention drew on (member-averaged weights); ``seen`` [P]
    whether the source was trained on the target's data (and so got ``seen_prior`` in its z).
    """

    z: np.ndarray
    z_std: np.ndarray
    members: np.ndarray
    link: np.ndarray
    link_std: np.ndarray
    attention: list[list[tuple[int, float, float]]]
    seen: np.ndarray
    learned: np.ndarray | None = None
    """[P] ensemble-mean z before the target's estimator evidence re-ordered the probed candidates."""
    evidence: np.ndarray | None = None
    """[P] mean estimator z on the target (0 where not probed); ``probed`` [P] bool where measured."""
    probed: np.ndarray | None = None


@dataclass
class Ensemble:
    """Trained members that share one architecture; ``basis`` says what they learned from.

    ``predict`` adds ``gnn.seen_prior`` (z) to the members' predictions for sources already trained
    on the target's data. The rule sits outside the learned head on purpose: outcomes of such pairs
    are rare in any training set (and on targets where every source does well they show little
    lift), so a head that learned the effect would learn it too small, and a head that saw the
    prior in training would learn to cancel it. A source fine-tuned on the very data it is scored
    for starts with features, and often a label space, fitted to it; two standard deviations puts it
    near the top of a typical ranking unless its history says it is weak.
    """

    members: list[TransferGNN]
    gnn: GnnConfig
    basis: str = "outcomes"
    learned_estimators: bool = False
    """Whether its training outcomes had estimator measurements beside them, so the head learned how
    far to trust them; the target's probes then re-order the shortlist through the head alone, and
    ``gnn.estimator_weight`` applies only to scorers that never saw estimators (``effective_weight``)."""

    @property
    def effective_weight(self) -> float:
        """The estimator weight ``predict`` blends with (0 when the head learned the estimators)."""
        return 0.0 if self.learned_estimators else self.gnn.estimator_weight

    @torch.no_grad()
    def predict(
        self,
        data: HeteroData,
        context: PairContext,
        outcomes: Outcomes,
        target: int,
        models: np.ndarray,
        *,
        hide_target: bool = True,
    ) -> Prediction:
        """Score ``models`` (model rows [P]) for dataset row ``target``; the target's own outcomes
        are hidden from message passing and history, as in training (``hide_target=False`` only to
        plant a leak in tests)."""
        models = np.asarray(models, dtype=np.int64)
        visible = outcomes.dst != target if hide_target else np.ones(len(outcomes), dtype=bool)
        edge_index, edge_attr = message_edges(data, outcomes, visible)
        src = torch.from_numpy(models)
        dst = torch.full((len(models),), int(target), dtype=torch.long)
        pair_x = torch.from_numpy(context.features(models, dst.numpy()).astype(np.float32))
        evidence, probed = estimator_evidence(pair_x.numpy().astype(np.float64))
        pair_x, edge_attr = adapt(pair_x, edge_attr, self.gnn.pair_features, self.gnn.score_kinds)
        vis = _visible(outcomes, visible)
        zs, links, weights = [], [], torch.zeros(0)
        pair_idx = edge_idx = torch.zeros(0, dtype=torch.long)
        with one_thread():
            for member in self.members:
                member.eval()
                h = member.embed(data.x_dict, edge_index, edge_attr)
                z, (pair_idx, edge_idx, w) = member.pair_scores(
                    h, src, dst, pair_x, vis, data["dataset"].x, similar_of(data)
                )
                zs.append(z)
                links.append(torch.sigmoid(member.link_logits(h, TRAINED_ON_RELATION, src, dst)))
                weights = w if len(weights) == 0 else weights + w
        z_all = torch.stack(zs).numpy().astype(np.float64)
        seen = context.trained_on_data(models, dst.numpy())
        z_all += self.gnn.seen_prior * seen
        learned = z_all.mean(0)
        z_all = blend(z_all, evidence, probed, self.effective_weight)
        link_all = torch.stack(links).numpy().astype(np.float64)
        attention: list[list[tuple[int, float, float]]] = [[] for _ in models]
        if len(weights):
            vis_dst, vis_z = vis[1].numpy(), vis[2].numpy()
            w = (weights / len(self.members)).numpy()
            for p, e, wt in zip(pair_idx.tolist(), edge_idx.tolist(), w.tolist(), strict=True):
                attention[p].append((int(vis_dst[e]), float(wt), float(vis_z[e])))
        return Prediction(
            z=z_all.mean(0),
            z_std=z_all.std(0),
            members=z_all,
            link=link_all.mean(0),
            link_std=link_all.std(0),
            attention=[sorted(a, key=lambda t: -t[1]) for a in attention],
            seen=seen,
            learned=learned,
            evidence=evidence,
            probed=probed,
        )


@dataclass
class FitResult:
    """A trained ensemble, its per-member loss curves (total, supervised, link) and timing."""

    ensemble: Ensemble
    losses: list[dict[str, list[float]]]
    seconds: float


def _listnet(pred: Tensor, true: Tensor, group: Tensor, n_groups: int, temperature: float) -> Tensor:
    """ListNet as KL(top-one distribution of the truth || of the prediction), averaged over groups
    (KL rather than cross-entropy, so a perfect ranking scores 0)."""
    p_true = softmax(true / temperature, group, num_nodes=n_groups)
    p_pred = softmax(pred / temperature, group, num_nodes=n_groups)
    return (p_true * (torch.log(p_true + 1e-12) - torch.log(p_pred + 1e-12))).sum() / n_groups


def _train_member(
    data: HeteroData,
    pair_x: Tensor,
    outcomes: Outcomes,
    gnn: GnnConfig,
    train: TrainConfig,
    seed: int,
) -> tuple[TransferGNN, dict[str, list[float]]]:
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    model = TransferGNN(gnn)
    model.set_normalisation(data.x_dict)
    model.set_kernel_statistics(data["dataset"].x[torch.from_numpy(np.unique(outcomes.dst))])
    optimiser = torch.optim.AdamW(
        model.parameters(), lr=train.lr, weight_decay=train.weight_decay, fused=True
    )
    counts = np.bincount(outcomes.dst, minlength=data["dataset"].num_nodes) if len(outcomes) else np.zeros(0)
    targets = np.flatnonzero(counts >= 2)
    z_all = torch.from_numpy(outcomes.z.astype(np.float32))
    src_all = torch.from_numpy(outcomes.src.astype(np.int64))
    dst_all = torch.from_numpy(outcomes.dst.astype(np.int64))
    forward_edges = {et: data[et].edge_index for et in STRUCTURAL_FORWARD}
    has_links = any(e.shape[1] > 0 for e in forward_edges.values())
    losses: dict[str, list[float]] = {"total": [], "supervised": [], "link": []}
    model.train()
    for _ in range(train.epochs):
        held_mask = np.zeros(len(outcomes), dtype=bool)
        if len(targets):
            k = max(1, round(train.holdout_fraction * len(targets)))
            held = rng.choice(targets, size=min(k, len(targets)), replace=False)
            held_mask = np.isin(outcomes.dst, held)
        kept: dict[EdgeType, Tensor] = {}
        positives: list[tuple[int, Tensor]] = []
        for r, et in enumerate(STRUCTURAL_FORWARD):
            ei = forward_edges[et]
            n = ei.shape[1]
            drop = rng.random(n) < train.edge_drop
            if n and not drop.any():
                drop[rng.integers(n)] = True
            kept[et] = ei[:, torch.from_numpy(~drop)]
            if drop.any():
                positives.append((r, ei[:, torch.from_numpy(drop)]))
        edge_index, edge_attr = message_edges(data, outcomes, ~held_mask, kept)
        h = model.embed(data.x_dict, edge_index, edge_attr)
        supervised = torch.zeros(())
        if held_mask.any():
            sel = torch.from_numpy(held_mask)
            src, dst, z = src_all[sel], dst_all[sel], z_all[sel]
            z_hat, _ = model.pair_scores(
                h, src, dst, pair_x[sel], _visible(outcomes, ~held_mask), data["dataset"].x, similar_of(data)
            )
            _, group = torch.unique(dst, return_inverse=True)
            n_groups = int(group.max()) + 1
            supervised = torch.mean((z_hat - z) ** 2) + train.rank_weight * _listnet(
                z_hat, z, group, n_groups, train.temperature
            )
        link = torch.zeros(())
        if has_links and positives:
            logits, labels = [], []
            for r, pos in positives:
                _, _, dst_type = STRUCTURAL_FORWARD[r]
                neg_dst = torch.from_numpy(rng.integers(data[dst_type].num_nodes, size=pos.shape[1]))
                logits += [model.link_logits(h, r, pos[0], pos[1]), model.link_logits(h, r, pos[0], neg_dst)]
                labels += [torch.ones(pos.shape[1]), torch.zeros(pos.shape[1])]
            link = torch.nn.functional.binary_cross_entropy_with_logits(torch.cat(logits), torch.cat(labels))
        total = supervised + train.link_weight * link
        if total.requires_grad:
            optimiser.zero_grad()
            total.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 5.0, foreach=True)
            optimiser.step()
        losses["total"].append(float(total.detach()))
        losses["supervised"].append(float(supervised.detach()))
        losses["link"].append(float(link.detach()))
    model.eval()
    return model, losses


@torch.no_grad()
def heldout_loss(
    ensemble: Ensemble,
    data: HeteroData,
    outcomes: Outcomes,
    targets: Sequence[int],
    train: TrainConfig | None = None,
    context: PairContext | None = None,
) -> float:
    """The supervised objective (MSE + ``rank_weight`` * ListNet) with ``targets`` hidden, as one
    training epoch sees it but deterministic: the member-averaged loss on those targets' pairs."""
    train = train or TrainConfig()
    context = context or PairContext(data)
    held = np.isin(outcomes.dst, np.asarray(list(targets)))
    edge_index, edge_attr = message_edges(data, outcomes, ~held)
    src = torch.from_numpy(outcomes.src[held].astype(np.int64))
    dst = torch.from_numpy(outcomes.dst[held].astype(np.int64))
    z = torch.from_numpy(outcomes.z[held].astype(np.float32))
    pair_x = torch.from_numpy(context.features(src.numpy(), dst.numpy()).astype(np.float32))
    pair_x, edge_attr = adapt(pair_x, edge_attr, ensemble.gnn.pair_features, ensemble.gnn.score_kinds)
    _, group = torch.unique(dst, return_inverse=True)
    losses = []
    with one_thread():
        for member in ensemble.members:
            member.eval()
            h = member.embed(data.x_dict, edge_index, edge_attr)
            z_hat, _ = member.pair_scores(
                h, src, dst, pair_x, _visible(outcomes, ~held), data["dataset"].x, similar_of(data)
            )
            rank = _listnet(z_hat, z, group, int(group.max()) + 1, train.temperature)
            losses.append(float(torch.mean((z_hat - z) ** 2) + train.rank_weight * rank))
    return float(np.mean(losses))


def fit(
    data: HeteroData,
    *,
    gnn: GnnConfig | None = None,
    train: TrainConfig | None = None,
    seed: int = 0,
    exclude_targets: Sequence[int] = (),
    context: PairContext | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> FitResult:
    """Train an ensemble on ``data``'s outcomes, minus every outcome into ``exclude_targets``."""
    gnn, train = gnn or GnnConfig(), train or TrainConfig()
    started = time.perf_counter()
    context = context or PairContext(data)
    outcomes = outcome_table(data, exclude_targets, train.z_clip)
    pair_x = torch.from_numpy(context.features(outcomes.src, outcomes.dst).astype(np.float32))
    pair_x = to_layout(pair_x, PAIR_FEATURES, gnn.pair_features)
    data = data_in_layout(data, gnn.score_kinds)
    members, losses = [], []
    with one_thread():
        for k in range(train.ensemble):
            member, curve = _train_member(data, pair_x, outcomes, gnn, train, seed * 1000 + k)
            members.append(member)
            losses.append(curve)
            if progress:
                progress(k + 1, train.ensemble)
    basis = "outcomes" if len(outcomes) else "self-supervised"
    _, measured = estimator_evidence(context.features(outcomes.src, outcomes.dst))
    ensemble = Ensemble(members, gnn, basis, learned_estimators=bool(measured.any()))
    return FitResult(ensemble, losses, time.perf_counter() - started)


# ----------------------------------------------------------------------------- checkpoints


def save_checkpoint(ensemble: Ensemble, train: TrainConfig, path: str | Path) -> str:
    """Write the ensemble as one safetensors file (atomically); returns its sha256."""
    from safetensors.torch import save

    tensors = {
        f"member{k}.{name}": t.detach().contiguous().clone()
        for k, member in enumerate(ensemble.members)
        for name, t in member.state_dict().items()
    }
    # one metadata key: safetensors writes several in hash order, which would change the checksum
    header = {
        "format": CHECKPOINT_FORMAT,
        "gnn": ensemble.gnn.to_dict(),
        "train": train.to_dict(),
        "members": len(ensemble.members),
        "basis": ensemble.basis,
        "learned_estimators": ensemble.learned_estimators,
    }
    metadata = {"kgraft": json.dumps(header, sort_keys=True)}
    payload = save(tensors, metadata=metadata)
    atomic_write_bytes(path, payload)
    return hashlib.sha256(payload).hexdigest()


def load_checkpoint(path: str | Path, checksum: str | None = None) -> Ensemble:
    """Read an ensemble back; ``checksum`` (sha256) is verified when given."""
    from safetensors import SafetensorError
    from safetensors.torch import load

    path = Path(path)
    try:
        payload = path.read_bytes()
    except OSError as exc:
        raise ScorerError(f"cannot read the GNN checkpoint {path}: {exc.strerror or exc}.") from None
    if checksum and hashlib.sha256(payload).hexdigest() != checksum:
        raise ScorerError(f"the GNN checkpoint {path} does not match its recorded checksum; retrain it.")
    try:
        tensors = load(payload)
        size = int.from_bytes(payload[:8], "little")  # safetensors: u64 header size, then JSON header
        header = json.loads(payload[8 : 8 + size])
        metadata = json.loads(header.get("__metadata__", {}).get("kgraft", "{}"))
    except (SafetensorError, ValueError) as exc:
        raise ScorerError(f"{path} is not a kgraft GNN checkpoint: {str(exc).splitlines()[0]}.") from None
    if metadata.get("format") != CHECKPOINT_FORMAT:
        raise ScorerError(f"{path} is not a kgraft GNN checkpoint (format {metadata.get('format')!r}).")
    # scorers saved before the kernel / similarity pools existed lack the keys: they had neither
    gnn = GnnConfig.from_dict({"feature_kernel": False, "similarity_pool": False, **metadata["gnn"]})
    members = []
    for k in range(int(metadata["members"])):
        member = TransferGNN(gnn)
        prefix = f"member{k}."
        member.load_state_dict({n[len(prefix) :]: t for n, t in tensors.items() if n.startswith(prefix)})
        member.eval()
        members.append(member)
    return Ensemble(
        members, gnn, metadata.get("basis", "outcomes"), bool(metadata.get("learned_estimators", False))
    )


# ----------------------------------------------------------------------------- the scorer in the graph


@dataclass(frozen=True)
class ScorerInfo:
    """A trained scorer as recorded in the graph."""

    id: str
    version: int
    checkpoint: str
    checksum: str
    snapshot_id: str
    n_outcomes: int
    basis: str
    """``"outcomes"`` or ``"self-supervised"`` (the graph held no outcomes)."""
    message: str
    metrics: dict[str, Any] = field(default_factory=dict)
    created: str = ""
    outcome_digest: str = ""
    newest_outcome_time: str | None = None


def snapshot_id(digest: str) -> str:
    """Id of the Dataset node standing for the outcome snapshot with this digest."""
    return f"outcomes-snapshot:{digest[:16]}"


def _scorer_rows(store: GraphStore) -> list[dict[str, Any]]:
    return store.query(
        "MATCH (m:Model) WHERE m.kind = $kind "
        "OPTIONAL MATCH (m)-[:TRAINED_ON]->(s:Dataset) "
        "RETURN m.id AS id, m.version AS version, m.checkpoint AS checkpoint, m.checksum AS checksum, "
        "m.metrics AS metrics, m.extra AS extra, m.created AS created, s.id AS snapshot, "
        "s.n_samples AS n_outcomes, s.extra AS snapshot_extra",
        {"kind": SCORER_KIND},
    )


def _info(row: dict[str, Any]) -> ScorerInfo:
    extra = json.loads(row["extra"]) if isinstance(row.get("extra"), str) else (row.get("extra") or {})
    snap = row.get("snapshot_extra")
    snap = json.loads(snap) if isinstance(snap, str) else (snap or {})
    metrics = row.get("metrics")
    metrics = json.loads(metrics) if isinstance(metrics, str) else (metrics or {})
    return ScorerInfo(
        id=row["id"],
        version=int(row.get("version") or 0),
        checkpoint=row.get("checkpoint") or "",
        checksum=row.get("checksum") or "",
        snapshot_id=row.get("snapshot") or "",
        n_outcomes=int(row.get("n_outcomes") or 0),
        basis=extra.get("basis", "outcomes"),
        message=extra.get("message", ""),
        metrics=metrics,
        created=row.get("created") or "",
        outcome_digest=snap.get("outcome_digest", ""),
        newest_outcome_time=snap.get("newest_outcome_time"),
    )


def latest_scorer(store: GraphStore) -> ScorerInfo | None:
    """The newest scorer recorded in the graph (highest version), or ``None``."""
    rows = _scorer_rows(store)
    if not rows:
        return None
    return max((_info(r) for r in rows), key=lambda info: (info.version, info.created, info.id))


def load_scorer(store: GraphStore, scorer_id: str | None = None) -> tuple[Ensemble, ScorerInfo]:
    """Load a recorded scorer (the newest unless ``scorer_id``), checking its checksum."""
    if scorer_id is None:
        info = latest_scorer(store)
        if info is None:
            raise ScorerError("the graph holds no trained GNN scorer; run `kgraft gnn train` first.")
    else:
        found = [_info(r) for r in _scorer_rows(store) if r["id"] == scorer_id]
        if not found:
            raise ScorerError(f"no GNN scorer {scorer_id!r} in the graph.")
        info = found[0]
    return load_checkpoint(info.checkpoint, info.checksum or None), info


def train_scorer(
    store: GraphStore,
    out_dir: str | Path,
    seed: int = 0,
    *,
    gnn: GnnConfig | None = None,
    train: TrainConfig | None = None,
    metrics: dict[str, Any] | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> ScorerInfo:
    """Train a scorer on every outcome in ``store``, save it under ``out_dir`` and record it.

    ``metrics`` (e.g. a leave-one-target-out summary) is stored on the Model node beside the
    training figures. A graph without outcomes gives a self-supervised scorer, and says so.
    """
    gnn, train = gnn or GnnConfig(), train or TrainConfig()
    data, _ = build_hetero(store)
    if sum(data[nt].num_nodes for nt in NODE_TYPES) == 0 or data["model"].num_nodes == 0:
        raise ScorerError("the graph holds no models to score; add some with `kgraft model add` first.")
    result = fit(data, gnn=gnn, train=train, seed=seed, progress=progress)
    n_outcomes = int(data.n_outcome_runs)
    n_targets = len(np.unique(data[OUTCOME].edge_index[1].numpy()))
    version = max((_info(r).version for r in _scorer_rows(store)), default=0) + 1
    path = Path(out_dir).resolve() / f"gnn-scorer-v{version}.safetensors"
    checksum = save_checkpoint(result.ensemble, train, path)
    info = ScorerInfo(
        id=f"gnn-scorer:v{version}",
        version=version,
        checkpoint=str(path),
        checksum=checksum,
        snapshot_id=snapshot_id(data.outcome_digest),
        n_outcomes=n_outcomes,
        basis=result.ensemble.basis,
        message=_training_message(result.ensemble.basis, n_outcomes, n_targets),
        metrics=_training_metrics(result, n_outcomes, n_targets, metrics),
        created=now(),
        outcome_digest=data.outcome_digest,
        newest_outcome_time=data.newest_outcome_time or None,
    )
    num_params = sum(p.numel() for m in result.ensemble.members for p in m.parameters())
    store.apply(_scorer_batch(info, n_targets, num_params, gnn, train, seed))
    return info


def _training_message(basis: str, n_outcomes: int, n_targets: int) -> str:
    """What a scorer learned from, in one sentence."""
    if basis == "outcomes":
        return f"trained on {n_outcomes} recorded outcomes over {n_targets} target datasets."
    return (
        "the graph holds no recorded outcomes: the scorer learned only from the graph's structure "
        "(self-supervised link prediction), so its scores fall back to that and to estimator scores."
    )


def _training_metrics(
    result: FitResult, n_outcomes: int, n_targets: int, extra: dict[str, Any] | None
) -> dict[str, Any]:
    """The training figures kept on the scorer's Model node, with the caller's ``extra`` metrics."""
    return {
        "train_seconds": round(result.seconds, 3),
        "n_outcomes": n_outcomes,
        "n_targets": n_targets,
        "initial_loss": float(np.mean([curve["total"][0] for curve in result.losses])),
        "final_loss": float(np.mean([curve["total"][-1] for curve in result.losses])),
        **(extra or {}),
    }


def _scorer_batch(
    info: ScorerInfo, n_targets: int, num_params: int, gnn: GnnConfig, train: TrainConfig, seed: int
) -> GraphBatch:
    """The scorer's Model node TRAINED_ON the Dataset node standing for its outcome snapshot."""
    b = GraphBatch()
    b.node(
        Label.DATASET,
        info.snapshot_id,
        name=f"outcome snapshot {info.outcome_digest[:12]} ({info.n_outcomes} outcomes)",
        description="the fine-tuning outcomes recorded in the graph when a GNN scorer was trained",
        source=SNAPSHOT_SOURCE,
        modality="outcomes",
        n_samples=info.n_outcomes,
        checksum=info.outcome_digest,
        created=info.created,
        extra={
            "outcome_digest": info.outcome_digest,
            "newest_outcome_time": info.newest_outcome_time,
            "n_targets": n_targets,
        },
    )
    b.node(
        Label.MODEL,
        info.id,
        name=f"GNN transfer scorer v{info.version}",
        kind=SCORER_KIND,
        version=str(info.version),
        architecture=f"TransferGNN-{gnn.conv}",
        num_params=num_params,
        checkpoint=info.checkpoint,
        checksum=info.checksum,
        source="kgraft",
        created=info.created,
        metrics=info.metrics,
        extra={
            "gnn": gnn.to_dict(),
            "train": train.to_dict(),
            "seed": seed,
            "basis": info.basis,
            "message": info.message,
        },
    )
    b.edge(Rel.TRAINED_ON, (Label.MODEL, info.id), (Label.DATASET, info.snapshot_id), split="train")
    return b


def graph_and_context(store: GraphStore) -> tuple[HeteroData, IdMaps, PairContext]:
    """``build_hetero`` plus the pair context, for scoring."""
    data, maps = build_hetero(store)
    return data, maps, PairContext(data)

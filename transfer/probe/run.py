"""``kgraft probe``: measure a source model on a target dataset and record every figure as SCORED_ON.

For one (model, target) pair:

* transferability estimators on the target sample's penultimate features (and the source head's
  logits for LEEP and NCE), layer ``penultimate``;
* when the model's pretraining data can be rebuilt from the graph, shift tests between a source and a
  target sample: per layer group the ``layer_shift_score`` (the generality curve is 1 - score) and a
  linear probe's target accuracy from that group's features; kernel MMD with a permutation p-value
  and per-dimension KS (Bonferroni) on the softmax outputs; a domain-classifier AUC; label shift from
  the class priors; and the shift's type (input-level, semantic, label, none);
* the generality curve as JSON and PNG, and the recommended freeze cut (its turning point).

Re-probing updates the same SCORED_ON relationships (keyed by kind and layer).
"""

from __future__ import annotations

import io
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch

from kg import GraphBatch, GraphStore
from kg.files import atomic_write_bytes
from kg.lineage import trained_on
from ontology.vocab import Label, Rel
from transfer.data.base import ImageDataset
from transfer.probe.estimators import ProbeError, estimate_all, linear_probe_accuracy
from transfer.probe.features import DEFAULT_CACHE, extract_features
from transfer.probe.shift import classify_shift, domain_classifier_auc, ks_test, label_shift, mmd_test
from transfer.probe.similarity import find_turning_point, layer_shift_score
from transfer.register import materialise, now
from transfer.zoo.loading import load_model
from transfer.zoo.record import ModelRecord

SHIFT_CODES = {"none": 0.0, "label": 1.0, "semantic": 2.0, "input-level": 3.0}


@dataclass
class ProbeReport:
    """Everything one probe measured, as recorded in the graph."""

    model_id: str
    dataset_id: str
    sample_size: int
    estimators: dict[str, float]
    skipped: dict[str, str]
    shift_type: str | None = None
    tests: dict[str, dict[str, Any]] = field(default_factory=dict)
    curve: list[dict[str, float]] = field(default_factory=list)
    freeze_cut: int | None = None
    notes: list[str] = field(default_factory=list)
    cached: bool = False
    plot: str | None = None


def _source_dataset(store: GraphStore, model_id: str) -> str | None:
    found = trained_on(store, model_id)
    return found[0] if found else None


def _class_prior(store: GraphStore, dataset_id: str) -> dict[str, int]:
    node = store.node(Label.DATASET, dataset_id) or {}
    return {str(k): int(v) for k, v in (node.get("class_counts") or {}).items()}


def probe(
    store: GraphStore,
    model_id: str,
    dataset_id: str,
    *,
    n: int = 1000,
    seed: int = 0,
    out_dir: Path | None = None,
    cache_dir: Path | None = DEFAULT_CACHE,
    target: ImageDataset | None = None,
) -> ProbeReport:
    """Probe ``model_id`` on ``dataset_id`` and record the measurements (one atomic write)."""
    node = store.node(Label.MODEL, model_id)
    if node is None:
        raise ProbeError(f"no model {model_id!r} in the graph.")
    record = ModelRecord.from_properties(node)
    model = load_model(record)
    target = target or materialise(store, dataset_id)
    if target.num_classes < 2:
        raise ProbeError(f"dataset {dataset_id!r} has a single class; transferability needs at least two.")
    feats, cached = extract_features(model, record, target, n=n, seed=seed, cache_dir=cache_dir)
    estimates = estimate_all(feats.penultimate, feats.labels, feats.logits, seed=seed)
    report = ProbeReport(
        model_id, dataset_id, len(feats.labels), dict(estimates), dict(estimates.skipped), cached=cached
    )
    source_id = _source_dataset(store, model_id)
    source = None
    if source_id is not None and source_id != dataset_id:
        try:
            source = materialise(store, source_id)
        except Exception as exc:  # the pretraining data may be external (not on this machine)
            report.notes.append(
                f"no shift tests: the source data {source_id!r} cannot be loaded here ({exc})"
            )
    elif source_id is None:
        report.notes.append("no shift tests: the model has no pretraining dataset in the graph")
    if source is not None:
        _shift_analysis(
            report,
            model,
            record,
            source,
            target,
            feats,
            seed,
            cache_dir,
            _class_prior(store, source_id),
            _class_prior(store, dataset_id),
        )
    if out_dir is not None and report.curve:
        report.plot = str(_plot_curve(report, Path(out_dir)))
    store.apply(_scored_on_batch(store, report, record, dataset_id))
    return report


def _class_matched_indices(
    source: ImageDataset, target: ImageDataset, target_labels: torch.Tensor, seed: int
) -> torch.Tensor | None:
    """Source samples drawn with the target sample's class names and counts, or None when the target
    has a class the source lacks. Comparing against them separates a change of class priors or label
    set (label shift: p(y) changes, p(x | y) does not) from a change of the images themselves."""
    names = {name: i for i, name in enumerate(source.class_names)}
    if not all(name in names for name in target.class_names):
        return None
    generator = torch.Generator().manual_seed(seed)
    chosen = []
    for t_class, count in zip(*torch.unique(target_labels, return_counts=True), strict=True):
        pool = torch.nonzero(source.labels == names[target.class_names[int(t_class)]]).flatten()
        if len(pool) < int(count):
            return None
        chosen.append(pool[torch.randperm(len(pool), generator=generator)[: int(count)]])
    return torch.cat(chosen).sort().values


def _shift_analysis(
    report: ProbeReport,
    model,
    record,
    source: ImageDataset,
    target: ImageDataset,
    target_feats,
    seed: int,
    cache_dir,
    prior_source: dict[str, int],
    prior_target: dict[str, int],
) -> None:
    n = len(target_feats.labels)
    source_feats, _ = extract_features(model, record, source, n=n, seed=seed, cache_dir=cache_dir)
    scores = []
    for g, (src, tgt) in enumerate(zip(source_feats.groups, target_feats.groups, strict=True)):
        shift = layer_shift_score(src, tgt, seed=seed)
        probe_acc = linear_probe_accuracy(tgt, target_feats.labels, seed=seed)
        scores.append(shift)
        report.curve.append(
            {"group": g, "layer_shift": shift, "generality": 1.0 - shift, "target_linear_probe": probe_acc}
        )
    report.freeze_cut = find_turning_point([c["generality"] for c in report.curve])
    mmd = mmd_test(source_feats.penultimate, target_feats.penultimate, n_permutations=200, seed=seed)
    ks = ks_test(torch.softmax(source_feats.logits, 1), torch.softmax(target_feats.logits, 1))
    auc = domain_classifier_auc(source_feats.penultimate, target_feats.penultimate, seed=seed)
    labels = label_shift(prior_source, prior_target)
    report.tests = {
        "mmd": {"value": mmd.statistic, "p_value": mmd.p_value},
        "ks_softmax": {"value": ks.statistic, "p_value": ks.p_value},
        "domain_auc": {"value": auc.statistic, "p_value": auc.p_value},
        "label_shift_tv": {"value": float(labels["total_variation"]), "p_value": None},
    }
    early, late = scores[0], scores[-1]
    matched = _class_matched_indices(source, target, target_feats.labels, seed)
    if matched is not None:
        matched_feats, _ = extract_features(model, record, source, cache_dir=cache_dir, indices=matched)
        early = layer_shift_score(matched_feats.groups[0], target_feats.groups[0], seed=seed)
        late = layer_shift_score(matched_feats.groups[-1], target_feats.groups[-1], seed=seed)
        report.tests["class_matched_early_shift"] = {"value": early, "p_value": None}
        report.tests["class_matched_late_shift"] = {"value": late, "p_value": None}
    report.shift_type = classify_shift(early, late, float(labels["total_variation"]))


def _scored_on_batch(
    store: GraphStore, report: ProbeReport, record: ModelRecord, dataset_id: str
) -> GraphBatch:
    b = GraphBatch()
    target = store.node(Label.DATASET, dataset_id) or {}
    common = {
        "sample_size": report.sample_size,
        "model_checksum": record.checksum,
        "dataset_checksum": target.get("checksum"),
        "time": now(),
    }
    ends = ((Label.MODEL, report.model_id), (Label.DATASET, dataset_id))

    def scored(kind: str, layer: str, value: float, p_value: float | None = None, **extra: Any) -> None:
        b.edge(
            Rel.SCORED_ON,
            *ends,
            kind=kind,
            layer=layer,
            value=float(value),
            p_value=p_value,
            extra=extra or None,
            **common,
        )

    for kind, value in report.estimators.items():
        scored(kind, "penultimate", value)
    for kind, test in report.tests.items():
        scored(kind, "penultimate", test["value"], test["p_value"])
    for point in report.curve:
        scored("layer_shift", f"group{point['group']}", point["layer_shift"])
        scored("group_linear_probe", f"group{point['group']}", point["target_linear_probe"])
    if report.shift_type is not None:
        scored(
            "shift_type",
            "",
            SHIFT_CODES[report.shift_type],
            type=report.shift_type,
            freeze_cut=report.freeze_cut,
        )
    return b


def _plot_curve(report: ProbeReport, out_dir: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    stem = f"generality-{report.model_id}-{report.dataset_id}".replace("/", "_")
    atomic_write_bytes(out_dir / f"{stem}.json", json.dumps(asdict(report), indent=2).encode())
    groups = [c["group"] for c in report.curve]
    fig, ax = plt.subplots(figsize=(5.5, 3.4), dpi=120)
    ax.plot(groups, [c["generality"] for c in report.curve], "o-", label="generality (1 - layer shift)")
    ax.plot(groups, [c["target_linear_probe"] for c in report.curve], "s--", label="target linear probe acc.")
    if report.freeze_cut is not None:
        ax.axvline(report.freeze_cut + 0.5, color="grey", linestyle=":", label="recommended freeze cut")
    ax.set_xticks(groups)
    ax.set_xlabel("layer group")
    ax.set_ylim(0, 1.05)
    ax.set_title(f"{report.model_id} on {report.dataset_id}", fontsize=8)
    ax.legend(fontsize=7, loc="lower left")
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    plt.close(fig)
    return atomic_write_bytes(out_dir / f"{stem}.png", buffer.getvalue())

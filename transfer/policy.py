"""The policy: from what the graph knows about a (source, target) pair to fine-tuning settings.

Plain rules over a report's fields, each returning the value it sets and the reason in one line, so a
report can say *why* ("freeze through group 2: the shift is semantic, generality turns after group 2").
``--settings auto`` uses them. The rules:

1. **Freeze cut from the shift type and the generality curve** (surgical fine-tuning, Lee et al. 2023:
   input-level shifts are best handled by tuning early layers, output-level ones by tuning late ones).
   input-level → train every group (cut 0); semantic or none → freeze the groups the generality curve
   calls general (cut = turning point + 1); label → train only the last body group and the head.
   Not measured → fastai's default (cut 0).
2. **Learning-rate spread and frozen epochs from compatibility.** High compatibility (≥ 0.7) means the
   early features already fit: spread rates 100× (early groups barely move) after one head-only
   epoch. Medium (0.4-0.7): 10×. Low (< 0.4), or uncertainty above 0.2 on a medium score: 3×, so early
   groups adapt too. Unknown → fastai's 100×.
3. **L2-SP when forgetting risk is high**: a compatible source (≥ 0.7) fine-tuned on a small target
   (< 5,000 training images) drifts far for little gain, so pull the weights towards the pretrained
   ones (strength 0.01).
4. **Progressive resizing only when it cannot hurt**: only when the target's images are larger than
   the source's pretraining resolution, and starting AT that resolution (never below it): training
   below it is the classic way to damage pretrained filters when the target is close to the source.
5. **Class-balanced loss when the target is imbalanced** (largest / smallest class ≥ 3), with
   effective-number weights (beta 0.999, Cui et al. 2019).
6. **Normalisation from the source's record**: always the mean/std the source was trained with.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from transfer.finetune.settings import FinetuneSettings, settings_for

HIGH_COMPATIBILITY = 0.7
LOW_COMPATIBILITY = 0.4
HIGH_UNCERTAINTY = 0.2
SMALL_TARGET = 5_000
IMBALANCED = 3.0


@dataclass(frozen=True)
class PolicyInputs:
    """The report fields the policy reads (``None``: not measured)."""

    n_groups: int
    shift_type: str | None = None
    curve_turning_point: int | None = None
    compatibility: float | None = None
    uncertainty: float | None = None
    target_imbalance: float | None = None
    target_train_size: int | None = None
    source_resolution: int | None = None
    target_resolution: int | None = None
    source_mean: tuple[float, ...] = ()
    source_std: tuple[float, ...] = ()
    epochs: int = 5


@dataclass(frozen=True)
class Decision:
    """One setting the policy chose and why."""

    setting: str
    value: Any
    reason: str


def freeze_rule(p: PolicyInputs) -> Decision:
    """Rule 1: the freeze cut from the shift type and the generality curve."""
    last_body = max(p.n_groups - 2, 0)
    if p.shift_type == "input-level":
        return Decision("freeze_cut", 0, "train every group: the shift is input-level (early layers differ)")
    if p.shift_type == "label":
        return Decision(
            "freeze_cut",
            last_body,
            f"freeze through group {last_body - 1}: the shift is in the labels, so only the last "
            "body group and the head need to change",
        )
    if p.shift_type in ("semantic", "none") and p.curve_turning_point is not None:
        cut = min(p.curve_turning_point + 1, last_body)
        return Decision(
            "freeze_cut",
            cut,
            f"freeze through group {cut - 1}: the shift is {p.shift_type} and the generality "
            f"curve turns after group {p.curve_turning_point}",
        )
    return Decision("freeze_cut", 0, "train every group (fastai default): no shift measurement for this pair")


def rate_rule(p: PolicyInputs) -> list[Decision]:
    """Rule 2: learning-rate spread and frozen epochs from compatibility."""
    c, u = p.compatibility, p.uncertainty
    if c is None:
        return [
            Decision("lr_mult", 100.0, "rates spread 100x (fastai default): no compatibility score"),
            Decision("frozen_epochs", 1, "one head-only epoch first (fastai default)"),
        ]
    if c >= HIGH_COMPATIBILITY and (u is None or u <= HIGH_UNCERTAINTY):
        return [
            Decision(
                "lr_mult", 100.0, f"rates spread 100x: compatibility {c:.2f} is high, early features fit"
            ),
            Decision("frozen_epochs", 1, "one head-only epoch first: the new head starts random"),
        ]
    if c >= LOW_COMPATIBILITY and (u is None or u <= HIGH_UNCERTAINTY):
        return [
            Decision("lr_mult", 10.0, f"rates spread 10x: compatibility {c:.2f} is medium"),
            Decision("frozen_epochs", 1, "one head-only epoch first: the new head starts random"),
        ]
    why = f"compatibility {c:.2f} is low" if c < LOW_COMPATIBILITY else f"the score is uncertain (±{u:.2f})"
    return [
        Decision("lr_mult", 3.0, f"rates spread only 3x: {why}, so early groups must adapt too"),
        Decision("frozen_epochs", 1, "one head-only epoch first: the new head starts random"),
    ]


def l2sp_rule(p: PolicyInputs) -> Decision:
    """Rule 3: L2-SP when forgetting risk is high."""
    if (
        (p.compatibility or 0) >= HIGH_COMPATIBILITY
        and (p.target_train_size or 0)
        and p.target_train_size < SMALL_TARGET
    ):
        return Decision(
            "l2sp",
            0.01,
            f"L2-SP 0.01: a compatible source on a small target "
            f"({p.target_train_size:,} images) risks forgetting for little gain",
        )
    return Decision("l2sp", 0.0, "no L2-SP: forgetting risk is not high")


def resize_rule(p: PolicyInputs) -> Decision:
    """Rule 4: progressive resizing only upward from the source's resolution."""
    if p.source_resolution and p.target_resolution and p.target_resolution > p.source_resolution:
        sizes = [p.source_resolution, p.target_resolution]
        return Decision(
            "resize_sizes",
            sizes,
            f"progressive resizing {sizes[0]} -> {sizes[1]} px: starts at the "
            "source's own resolution, never below it",
        )
    return Decision(
        "resize_sizes",
        [],
        "no progressive resizing: the target is not larger than the source's "
        "resolution, and training below it would damage the pretrained filters",
    )


def balance_rule(p: PolicyInputs) -> list[Decision]:
    """Rule 5: class-balanced loss for an imbalanced target."""
    if p.target_imbalance is not None and p.target_imbalance >= IMBALANCED:
        return [
            Decision(
                "class_balanced",
                True,
                f"class-balanced loss: the target's classes differ {p.target_imbalance:.1f}x in size",
            ),
            Decision("class_balance_beta", 0.999, "effective-number class weights (beta 0.999)"),
        ]
    return [Decision("class_balanced", False, "plain loss: the target's classes are balanced enough")]


def normalisation_rule(p: PolicyInputs) -> Decision:
    """Rule 6: the source's own normalisation (applied by the engine from the model record)."""
    return Decision(
        "normalisation",
        {"mean": list(p.source_mean), "std": list(p.source_std)},
        "normalise with the source model's own mean/std from its record",
    )


def recommend_settings(p: PolicyInputs) -> tuple[FinetuneSettings, list[Decision]]:
    """The ``auto`` settings for a pair, with every decision and its reason."""
    decisions = [
        freeze_rule(p),
        *rate_rule(p),
        l2sp_rule(p),
        resize_rule(p),
        *balance_rule(p),
        normalisation_rule(p),
    ]
    values = {d.setting: d.value for d in decisions if d.setting != "normalisation"}
    return settings_for("auto", epochs=p.epochs, **values), decisions


def inputs_from_graph(
    store: Any,
    source_id: str,
    target_id: str,
    epochs: int = 5,
    compatibility: float | None = None,
    uncertainty: float | None = None,
) -> PolicyInputs:
    """The policy's inputs for a pair, read from the graph: the source's record, the target's profile,
    and the latest probe (shift type and generality turning point); compatibility from the scorer when
    the caller has it."""
    from ontology.vocab import Label

    model = store.node(Label.MODEL, source_id) or {}
    data = store.node(Label.DATASET, target_id) or {}
    rows = store.query(
        "MATCH (:Model {id: $s})-[r:SCORED_ON]->(:Dataset {id: $t}) WHERE r.kind = $k "
        "RETURN r.extra AS extra",
        {"s": source_id, "t": target_id, "k": "shift_type"},
    )
    extra = json.loads(rows[0]["extra"]) if rows and rows[0]["extra"] else {}
    train = (data.get("split_counts") or {}).get("train", data.get("n_samples"))
    return PolicyInputs(
        n_groups=len(model.get("layer_groups") or []) or 2,
        shift_type=extra.get("type"),
        curve_turning_point=extra.get("freeze_cut"),
        compatibility=compatibility,
        uncertainty=uncertainty,
        target_imbalance=data.get("imbalance"),
        target_train_size=train,
        source_resolution=(model.get("input_size") or [None, None])[1],
        target_resolution=(data.get("image_size") or [None])[0],
        source_mean=tuple(model.get("mean") or ()),
        source_std=tuple(model.get("std") or ()),
        epochs=epochs,
    )

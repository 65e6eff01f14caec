"""Each policy rule, on the report fields it reads."""

from __future__ import annotations

from transfer.policy import (
    PolicyInputs,
    balance_rule,
    freeze_rule,
    l2sp_rule,
    normalisation_rule,
    rate_rule,
    recommend_settings,
    resize_rule,
)

FIVE = PolicyInputs(n_groups=5)  # four body groups and a head


def _with(**kw) -> PolicyInputs:
    return PolicyInputs(**{**FIVE.__dict__, **kw})


def test_freeze_cut_follows_shift_type_and_curve() -> None:
    assert freeze_rule(_with(shift_type="input-level", curve_turning_point=2)).value == 0
    assert freeze_rule(_with(shift_type="label")).value == 3  # last body group and head
    semantic = freeze_rule(_with(shift_type="semantic", curve_turning_point=1))
    assert semantic.value == 2 and "turns after group 1" in semantic.reason
    assert (
        freeze_rule(_with(shift_type="none", curve_turning_point=3)).value == 3
    )  # capped at the last body group
    assert freeze_rule(FIVE).value == 0 and "no shift measurement" in freeze_rule(FIVE).reason


def test_rate_spread_follows_compatibility() -> None:
    def mult(**kw):
        return rate_rule(_with(**kw))[0].value

    assert mult(compatibility=0.9, uncertainty=0.05) == 100.0
    assert mult(compatibility=0.5) == 10.0
    assert mult(compatibility=0.2) == 3.0
    assert mult(compatibility=0.5, uncertainty=0.3) == 3.0  # uncertain: let early groups adapt
    assert mult() == 100.0  # unknown: fastai's default
    assert all(d.value == 1 for d in rate_rule(_with(compatibility=0.9)) if d.setting == "frozen_epochs")


def test_l2sp_only_for_compatible_source_on_small_target() -> None:
    assert l2sp_rule(_with(compatibility=0.8, target_train_size=2_000)).value == 0.01
    assert l2sp_rule(_with(compatibility=0.8, target_train_size=50_000)).value == 0.0
    assert l2sp_rule(_with(compatibility=0.3, target_train_size=2_000)).value == 0.0


def test_resizing_never_goes_below_the_source_resolution() -> None:
    up = resize_rule(_with(source_resolution=28, target_resolution=64))
    assert up.value == [28, 64]
    assert resize_rule(_with(source_resolution=224, target_resolution=64)).value == []
    assert resize_rule(_with(source_resolution=28, target_resolution=28)).value == []


def test_class_balanced_loss_for_imbalanced_targets() -> None:
    assert balance_rule(_with(target_imbalance=10.0))[0].value is True
    assert balance_rule(_with(target_imbalance=1.2))[0].value is False


def test_normalisation_comes_from_the_source_record() -> None:
    d = normalisation_rule(_with(source_mean=(0.1307,), source_std=(0.3081,)))
    assert d.value == {"mean": [0.1307], "std": [0.3081]}


def test_recommend_settings_builds_valid_auto_settings() -> None:
    settings, decisions = recommend_settings(
        _with(
            shift_type="semantic",
            curve_turning_point=1,
            compatibility=0.8,
            target_imbalance=10.0,
            target_train_size=1_000,
            source_resolution=28,
            target_resolution=28,
            epochs=3,
        )
    )
    assert settings.preset == "auto" and settings.epochs == 3
    assert (settings.freeze_cut, settings.lr_mult, settings.l2sp, settings.class_balanced) == (
        2,
        100.0,
        0.01,
        True,
    )
    assert settings.resize_sizes == []
    assert {d.setting for d in decisions} >= {
        "freeze_cut",
        "lr_mult",
        "l2sp",
        "resize_sizes",
        "class_balanced",
    }
    assert all(d.reason for d in decisions)

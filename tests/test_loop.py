"""``transfer.loop``: ``plan`` ranks once and builds settings once; ``--probe K`` measures the most
promising unmeasured candidates on the target before ranking; ``run`` fine-tunes the plan's source.

On a real graph in both stores: scikit-learn digits, ccexam's USPS and MNIST models (real weights),
one registered model whose checkpoint went missing, and a small trained GNN scorer."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

import gnn.scores
import transfer.policy
from gnn.train import TrainConfig, train_scorer
from kg import GraphStore
from tests.cli import kgraft
from transfer.data.sources import load_dataset
from transfer.loop import estimator_kinds_on, plan, rank_target
from transfer.register import register_dataset, register_model
from transfer.zoo import build_model, save_checkpoint
from transfer.zoo.registration import record_from_spec

TARGET = "digits"
QUICK = TrainConfig(epochs=30, ensemble=2)


def build_graph(store: GraphStore, folder: Path) -> None:
    """digits, two loadable ccexam models, one model whose checkpoint is gone, and a scorer."""
    register_dataset(store, load_dataset(TARGET))
    for spec in ("ccexam:usps", "ccexam:mnist"):
        register_model(store, record_from_spec(spec))
    torch.manual_seed(0)
    weights = folder / "gone.safetensors"
    save_checkpoint(build_model("smallcnn", 10, in_channels=1, image_size=8), weights)
    gone = record_from_spec(
        str(weights), name="gone", architecture="smallcnn", input_size="1,8,8", mean="0.5", std="0.5"
    )
    register_model(store, gone)
    weights.unlink()
    train_scorer(store, folder / "scorers", train=QUICK)


class Calls:
    """Counts calls of the scorer's ranking, its one-pair score, and the settings policy."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.counts = {"recommend": 0, "pair_compatibility": 0, "recommend_settings": 0}
        for module, name in (
            (gnn.scores, "recommend"),
            (gnn.scores, "pair_compatibility"),
            (transfer.policy, "recommend_settings"),
        ):
            monkeypatch.setattr(module, name, self._counting(name, getattr(module, name)))

    def _counting(self, name: str, fn):
        def wrapped(*args, **kwargs):
            self.counts[name] += 1
            return fn(*args, **kwargs)

        return wrapped


def test_finetune_auto_ranks_once_and_builds_settings_once(store, tmp_path, monkeypatch) -> None:
    """``kgraft finetune --source auto --settings auto`` (in process, to count): one ranking, one
    settings build, no separate pair score; the chosen source is fine-tuned and recorded."""
    from transfer.cli import app

    build_graph(store, tmp_path)
    uri = store.uri
    if store.dialect == "ladybug":
        store.close()  # the command opens the file itself
    calls = Calls(monkeypatch)
    result = CliRunner().invoke(
        app,
        ["--store", uri, "finetune", "--source", "auto", "--target", TARGET, "--settings", "auto",
         "--epochs", "1", "--probe", "0", "--out", str(tmp_path / "run")],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert calls.counts == {"recommend": 1, "pair_compatibility": 0, "recommend_settings": 1}
    out = " ".join(result.output.split())
    chosen = out.split("source: ", 1)[1].split(":", 1)[0]
    assert chosen in {"ccexam.usps", "ccexam.mnist"}
    assert f"TRANSFERRED_TO {chosen} -> {TARGET}" in out and "auto: lr_mult" in out


def test_probe_k_measures_the_most_promising_then_ranks(store, tmp_path, monkeypatch) -> None:
    """``probe=K``: the unmeasured loadable candidates are probed (SCORED_ON recorded), the missing
    checkpoint is a note, the target is ranked again on the new evidence; a rerun probes nothing."""
    build_graph(store, tmp_path)
    assert estimator_kinds_on(store, TARGET) == {}
    calls = Calls(monkeypatch)
    seen: list[tuple[str, int, int]] = []
    ranking = rank_target(
        store, TARGET, probe=3, probe_samples=300, work_dir=None, probe_progress=lambda *a: seen.append(a)
    )
    assert sorted(r.model_id for r in ranking.probes) == ["ccexam.mnist", "ccexam.usps"]
    assert calls.counts["recommend"] == 2  # before probing (to pick the candidates) and after
    assert seen[-1][1:] == (2, 2) and seen[0][0].startswith("probing ccexam.")
    measured = estimator_kinds_on(store, TARGET)
    assert set(measured) == {"ccexam.usps", "ccexam.mnist"} and {"logme", "hscore"} <= measured["ccexam.usps"]
    assert any("1 better-ranked candidate(s)" in n and "not probed" in n for n in ranking.notes)
    # the scorer now reads the target's own estimator scores
    assert {r.basis for r in ranking.candidates if r.model_id != "gone"} == {"estimators"}

    calls.counts["recommend"] = 0
    again = plan(store, TARGET, "auto", "auto", probe=3)
    assert again.probed == () and calls.counts["recommend"] == 1
    assert again.source_id in {"ccexam.usps", "ccexam.mnist"} and again.how != "given"
    assert calls.counts["recommend_settings"] == 1 and again.decisions

    # a given source, not ranked: the policy gets the one pair's score
    calls.counts.update(recommend=0, pair_compatibility=0)
    given = plan(store, TARGET, "ccexam.usps", "auto", rank=False)
    assert given.how == "given" and given.ranking is None and given.choice.compatibility is not None
    assert calls.counts["recommend"] == 0 and calls.counts["pair_compatibility"] == 1
    assert given.source_dataset_id is None  # registered without its pretraining data: no forgetting


def test_cli_recommend_probe(tmp_path) -> None:
    """``kgraft recommend --probe K``: probes with a progress line on stderr, JSON rows on stdout;
    ``--probe 0`` opens the graph read-only and probes nothing."""
    from kg import open_store

    uri = f"embedded:{tmp_path / 'g.lbug'}"
    with open_store(uri) as store:
        build_graph(store, tmp_path)
    proc = kgraft("recommend", TARGET, "--probe", "0", "--json", store=uri)
    assert proc.returncode == 0, proc.stderr
    assert "probed" not in proc.stderr
    proc = kgraft("recommend", TARGET, "--probe", "1", "--json", store=uri)
    assert proc.returncode == 0, proc.stderr
    rows = json.loads(proc.stdout)
    assert len(rows) == 3 and "probed ccexam." in proc.stderr
    with open_store(uri, read_only=True) as store:
        assert len(estimator_kinds_on(store, TARGET)) == 1


def test_probe_models_every_checkpointed_classifier(store, tmp_path) -> None:
    """``probe_models`` (``kgraft probe``): named models, or every classifier with a checkpoint (the
    one whose file went missing included, so it fails as a user error); each probe is recorded."""
    from kg.errors import NotFound, is_user_error
    from transfer.loop import checkpointed_classifiers, probe_models

    register_dataset(store, load_dataset(TARGET))
    for spec in ("ccexam:usps", "ccexam:mnist"):
        register_model(store, record_from_spec(spec))
    assert checkpointed_classifiers(store) == ["ccexam.mnist", "ccexam.usps"]
    seen: list[tuple[str, int, int]] = []
    reports = probe_models(
        store, TARGET, None, samples=200, work_dir=None, progress=lambda *a: seen.append(a)
    )
    assert [r.model_id for r in reports] == ["ccexam.mnist", "ccexam.usps"]
    assert seen[0] == ("probing ccexam.mnist", 0, 2) and seen[-1][1:] == (2, 2)
    assert set(estimator_kinds_on(store, TARGET)) == {"ccexam.usps", "ccexam.mnist"}
    (one,) = probe_models(store, TARGET, ["ccexam.usps"], samples=200, work_dir=None)
    assert one.model_id == "ccexam.usps" and one.sample_size == 200
    with pytest.raises(NotFound):
        probe_models(store, TARGET, ["no-such-model"], work_dir=None)
    weights = tmp_path / "gone.safetensors"
    save_checkpoint(build_model("smallcnn", 10, in_channels=1, image_size=8), weights)
    register_model(
        store,
        record_from_spec(
            str(weights), name="gone", architecture="smallcnn", input_size="1,8,8", mean="0.5", std="0.5"
        ),
    )
    weights.unlink()
    with pytest.raises(Exception) as failed:
        probe_models(store, TARGET, None, samples=200, work_dir=None)
    assert is_user_error(failed.value)


def test_cli_probe_all_models(tmp_path) -> None:
    """``kgraft probe --all-models DATASET`` probes every classifier and prints one line per model."""
    from kg import open_store

    uri = f"embedded:{tmp_path / 'g.lbug'}"
    with open_store(uri) as store:
        register_dataset(store, load_dataset(TARGET))
        for spec in ("ccexam:usps", "ccexam:mnist"):
            register_model(store, record_from_spec(spec))
    proc = kgraft(
        "probe", "--all-models", TARGET, "--samples", "200", "--out", str(tmp_path / "p"), store=uri
    )
    assert proc.returncode == 0, proc.stderr
    out = " ".join(proc.stdout.split())
    assert "ccexam.mnist on digits (n=200): logme" in out and "ccexam.usps on digits (n=200)" in out
    bad = kgraft("probe", TARGET, store=uri)
    assert bad.returncode == 2 and "give MODEL DATASET, or --all-models DATASET." in bad.stderr

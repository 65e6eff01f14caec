"""``transfer.track``: runs made in your own loop recorded like ``kgraft finetune`` runs, on both stores."""

from __future__ import annotations

import pytest
import torch
from torch.utils.data import DataLoader

from kg import GraphStore
from kg.errors import NotFound
from kg.lineage import ancestors
from kg.outcomes import recorded_runs
from ontology.vocab import Label
from tests.tracking_fixture import (
    TRAIN_SIZE,
    accuracy,
    source_model,
    source_record,
    target_dataset,
    tensors,
)
from transfer import track
from transfer.finetune import settings_for
from transfer.zoo import ccexam_installed

pytestmark = pytest.mark.skipif(not ccexam_installed(), reason="needs the ccexam weights: pip install ccexam")


@pytest.fixture(scope="module")
def data():
    record, ds = source_record(), target_dataset()
    return record, ds, tensors(ds, record, "train"), tensors(ds, record, "test")


def outcomes(store: GraphStore) -> list[dict]:
    return store.query(
        "MATCH (s:Model)-[t:TRANSFERRED_TO]->(d:Dataset) RETURN s.id AS source, d.id AS target, "
        "t.activity AS activity, t.accuracy AS accuracy, t.train_size AS train_size, t.epochs AS epochs, "
        "t.batch_size AS batch_size, t.learning_rate AS learning_rate, t.preset AS preset, t.failed AS failed"
    )


def test_own_loop_records_activity_model_lineage_and_outcome(store: GraphStore, data) -> None:
    record, ds, train, test = data
    model = source_model(record)
    optimiser = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.05)
    before = accuracy(model, test)
    with track.run(
        store,
        source=record,
        target=ds,
        settings={"optimizer": "sgd", "trainable": "head"},
        train_size=len(train),
        epochs=2,
        batch_size=32,
        learning_rate=0.05,
        preset="head-only",
    ) as run:
        for epoch in (1, 2):
            model.train()
            for x, y in DataLoader(train, batch_size=32, shuffle=True):
                optimiser.zero_grad()
                loss = torch.nn.functional.cross_entropy(model(x), y)
                loss.backward()
                optimiser.step()
            run.log(epoch=epoch, accuracy=accuracy(model, test), loss=loss.item())
    final = accuracy(model, test)
    assert final > before + 0.1  # the run really trained

    activity = store.node(Label.ACTIVITY, run.run_id)
    assert activity["status"] == "finished" and activity["kind"] == "finetuning"
    assert [row["epoch"] for row in activity["metrics"]["epochs"]] == [1, 2]
    assert activity["metrics"]["accuracy"] == pytest.approx(final)
    assert activity["settings"] == {"optimizer": "sgd", "trainable": "head"}
    assert activity["extra"]["framework"] == "python"
    target_id = "digits-300"
    assert outcomes(store) == [
        {
            "source": record.id,
            "target": target_id,
            "activity": run.run_id,
            "accuracy": pytest.approx(final),
            "train_size": TRAIN_SIZE,
            "epochs": 2,
            "batch_size": 32,
            "learning_rate": pytest.approx(0.05),
            "preset": "head-only",
            "failed": False,
        }
    ]
    generated = store.query(
        "MATCH (m:Model)-[:GENERATED_BY]->(a:Activity {id: $id}) RETURN m.id AS id", {"id": run.run_id}
    )
    assert generated == [{"id": run.model_id}]
    up = {(r.id, r.path[-1].rel, r.distance) for r in ancestors(store, Label.MODEL, run.model_id, depth=2)}
    assert {(record.id, "FINETUNED_FROM", 1), (target_id, "TRAINED_ON", 1)} <= up
    # What the scorer reads: the outcome with its regime, not failed.
    (seen,) = recorded_runs(store, [record.id])
    assert (seen.dataset_id, seen.train_size, seen.failed) == (target_id, TRAIN_SIZE, False)


def test_crash_mid_run_marks_the_activity_failed_and_writes_no_outcome(store: GraphStore, data) -> None:
    record, ds, _, _ = data
    with pytest.raises(RuntimeError, match="out of memory"):  # noqa: SIM117
        with track.run(store, source=record, target=ds, epochs=3) as run:
            run.log(epoch=1, accuracy=0.5)
            raise RuntimeError("out of memory")
    activity = store.node(Label.ACTIVITY, run.run_id)
    assert activity["status"] == "failed" and activity["ended"]
    assert activity["extra"]["error"] == "RuntimeError: out of memory"
    assert activity["metrics"]["epochs"] == [{"epoch": 1.0, "accuracy": 0.5}]
    assert outcomes(store) == []
    assert store.node(Label.MODEL, run.model_id) is None


def test_settings_fill_the_regime_and_a_run_at_chance_is_failed(store: GraphStore, data) -> None:
    record, ds, _, _ = data
    settings = settings_for("linear-probe", epochs=3, batch_size=16, base_lr=0.01)
    with track.run(store, source=record, target=ds, settings=settings, train_size=TRAIN_SIZE) as run:
        run.set_outcome(accuracy=0.11)  # ten balanced-ish classes: chance is about 0.1
    (row,) = outcomes(store)
    assert (row["epochs"], row["batch_size"], row["preset"], row["failed"]) == (3, 16, "linear-probe", True)
    assert row["learning_rate"] == pytest.approx(0.01)
    assert store.node(Label.ACTIVITY, run.run_id)["settings"]["preset"] == "linear-probe"


def test_bad_input_is_one_sentence_and_writes_nothing_of_it(store: GraphStore, data) -> None:
    record, ds, _, _ = data
    with pytest.raises(NotFound, match="no model named 'no-such-model'"):
        track.start(store, source="no-such-model", target=ds)
    with pytest.raises(track.TrackError, match="batch_size must be a positive number"):
        track.start(store, source=record, target=ds, batch_size=0)
    with track.run(store, source=record, target=ds) as run:
        with pytest.raises(track.TrackError, match="metric 'loss' must be a number"):
            run.log(epoch=1, loss="high")
        with pytest.raises(track.TrackError, match=r"accuracy is a fraction in \[0, 1\]"):
            run.log(epoch=1, accuracy=87.5)
        run.log(epoch=1, accuracy=0.875)  # the rejected rows were not kept
    with (
        pytest.raises(track.TrackError, match="ended without an accuracy"),
        track.run(store, source=record.id, target=ds.name) as empty,
    ):
        empty.log(epoch=1, loss=0.3)
    assert store.node(Label.ACTIVITY, empty.run_id)["status"] == "failed"
    assert [(o["activity"], o["accuracy"]) for o in outcomes(store)] == [(run.run_id, 0.875)]
    assert store.node(Label.ACTIVITY, run.run_id)["metrics"]["epochs"] == [{"epoch": 1.0, "accuracy": 0.875}]

"""The Lightning and Hugging Face callbacks: a real fine-tuning run with each library on CPU (a few
seconds), then the outcome, lineage and regime found in the graph, on both stores."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset, TensorDataset

from gnn.builder import OUTCOME, build_hetero
from kg import GraphStore
from kg.lineage import ancestors
from ontology.vocab import Label
from tests.tracking_fixture import (
    TRAIN_SIZE,
    accuracy,
    source_model,
    source_record,
    target_dataset,
    tensors,
)
from transfer.zoo import ccexam_installed

pytestmark = [
    pytest.mark.skipif(not ccexam_installed(), reason="needs the ccexam weights: pip install ccexam"),
    pytest.mark.slow,
]
TARGET = f"digits-{TRAIN_SIZE}"


@pytest.fixture(scope="module")
def data():
    record, ds = source_record(), target_dataset()
    return record, ds, tensors(ds, record, "train"), tensors(ds, record, "test")


def recorded(store: GraphStore, run_id: str, model_id: str, source_id: str) -> dict:
    """The run's Activity, outcome, lineage, and whether the GNN's graph holds it as a training outcome."""
    activity = store.node(Label.ACTIVITY, run_id)
    (outcome,) = store.query(
        "MATCH (s:Model {id: $src})-[t:TRANSFERRED_TO]->(d:Dataset) WHERE t.activity = $run "
        "RETURN d.id AS target, t.accuracy AS accuracy, t.train_size AS train_size, t.epochs AS epochs, "
        "t.batch_size AS batch_size, t.learning_rate AS learning_rate, t.failed AS failed",
        {"src": source_id, "run": run_id},
    )
    up = {(r.id, r.path[-1].rel) for r in ancestors(store, Label.MODEL, model_id, depth=1)}
    data, maps = build_hetero(store)
    pair = (maps.index["model"][source_id], maps.index["dataset"][TARGET])
    pairs = set(zip(*data[OUTCOME].edge_index.tolist(), strict=True))
    return {"activity": activity, "outcome": outcome, "lineage": up, "scorer_sees_it": pair in pairs}


# ---------------------------------------------------------------- PyTorch Lightning


def test_lightning_fit_is_recorded(store: GraphStore, data) -> None:
    import lightning.pytorch as pl

    from transfer.integrations.lightning import KgraftCallback

    record, ds, train, test = data

    class Classifier(pl.LightningModule):
        def __init__(self) -> None:
            super().__init__()
            self.net = source_model(record)

        def training_step(self, batch, _):
            x, y = batch
            loss = nn.functional.cross_entropy(self.net(x), y)
            self.log("train_loss", loss)
            return loss

        def validation_step(self, batch, _):
            x, y = batch
            self.log("val_acc", (self.net(x).argmax(1) == y).float().mean())

        def configure_optimizers(self):
            return torch.optim.SGD([p for p in self.parameters() if p.requires_grad], lr=0.05)

    module = Classifier()
    before = accuracy(module.net, test)
    callback = KgraftCallback(store, source=record, target=ds, preset="head-only")
    trainer = pl.Trainer(
        max_epochs=2,
        accelerator="cpu",
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
        callbacks=[callback],
    )
    trainer.fit(module, DataLoader(train, batch_size=32, shuffle=True), DataLoader(test, batch_size=400))
    final = accuracy(module.net, test)
    assert final > before + 0.1

    run = callback.run
    got = recorded(store, run.run_id, run.model_id, record.id)
    assert got["activity"]["status"] == "finished" and got["activity"]["extra"]["framework"] == "lightning"
    assert [row["epoch"] for row in got["activity"]["metrics"]["epochs"]] == [1, 2]
    assert got["outcome"] == {
        "target": TARGET,
        "accuracy": pytest.approx(final, abs=1e-6),
        "train_size": TRAIN_SIZE,
        "epochs": 2,
        "batch_size": 32,
        "learning_rate": pytest.approx(0.05),
        "failed": False,
    }
    assert got["lineage"] == {(record.id, "FINETUNED_FROM"), (TARGET, "TRAINED_ON")}
    assert got["scorer_sees_it"]


def test_lightning_crash_marks_the_run_failed(store: GraphStore, data) -> None:
    import lightning.pytorch as pl

    from transfer.integrations.lightning import KgraftCallback

    record, ds, train, _ = data

    class Broken(pl.LightningModule):
        def __init__(self) -> None:
            super().__init__()
            self.net = source_model(record)

        def training_step(self, batch, index):
            if index == 2:
                raise ValueError("bad batch")
            return nn.functional.cross_entropy(self.net(batch[0]), batch[1])

        def configure_optimizers(self):
            return torch.optim.SGD([p for p in self.parameters() if p.requires_grad], lr=0.05)

    callback = KgraftCallback(store, source=record, target=ds)
    trainer = pl.Trainer(
        max_epochs=1,
        accelerator="cpu",
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        callbacks=[callback],
    )
    with pytest.raises(ValueError, match="bad batch"):
        trainer.fit(Broken(), DataLoader(train, batch_size=32))
    activity = store.node(Label.ACTIVITY, callback.run.run_id)
    assert activity["status"] == "failed" and activity["extra"]["error"] == "ValueError: bad batch"
    assert store.query("MATCH ()-[t:TRANSFERRED_TO]->() RETURN count(t) AS n") == [{"n": 0}]


# ---------------------------------------------------------------- Hugging Face Trainer


class PixelDataset(Dataset):
    """Rows as the Trainer's collator expects: ``pixel_values`` and ``labels``."""

    def __init__(self, data: TensorDataset) -> None:
        self.x, self.y = data.tensors

    def __len__(self) -> int:
        return len(self.y)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        return {"pixel_values": self.x[i], "labels": self.y[i]}


class HfClassifier(nn.Module):
    """The pretrained source behind the Trainer's model interface (loss and logits as a dict)."""

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net = net

    def forward(self, pixel_values: torch.Tensor, labels: torch.Tensor | None = None) -> dict:
        logits = self.net(pixel_values)
        out = {"logits": logits}
        if labels is not None:
            out["loss"] = nn.functional.cross_entropy(logits, labels)
        return out


def test_hf_trainer_run_is_recorded(store: GraphStore, data, tmp_path) -> None:
    from transformers import Trainer, TrainingArguments

    from transfer.integrations.hf import KgraftTrainerCallback

    record, ds, train, test = data
    model = HfClassifier(source_model(record))
    before = accuracy(model.net, test)
    args = TrainingArguments(
        output_dir=str(tmp_path / "hf"),
        num_train_epochs=2,
        per_device_train_batch_size=32,
        per_device_eval_batch_size=400,
        learning_rate=1e-2,
        eval_strategy="epoch",
        save_strategy="no",
        logging_strategy="no",
        report_to=[],
        use_cpu=True,
        disable_tqdm=True,
        seed=0,
    )

    def compute_metrics(prediction) -> dict[str, float]:
        logits, labels = prediction
        return {"accuracy": float((logits.argmax(-1) == labels).mean())}

    callback = KgraftTrainerCallback(store, source=record.id, target=ds.name, preset="head-only")
    trainer = Trainer(
        model=model,
        args=args,
        train_dataset=PixelDataset(train),
        eval_dataset=PixelDataset(test),
        compute_metrics=compute_metrics,
        callbacks=[callback],
    )
    # The source and target must already be in the graph when named by id or name.
    from transfer.finetune.record import ensure_dataset, ensure_source_model

    ensure_dataset(store, ds, None)
    ensure_source_model(store, record)
    with callback.failures_recorded():
        trainer.train()
    final = accuracy(model.net, test)
    assert final > before + 0.1

    run = callback.run
    got = recorded(store, run.run_id, run.model_id, record.id)
    activity = got["activity"]
    assert activity["status"] == "finished" and activity["extra"]["framework"] == "transformers"
    assert [row["epoch"] for row in activity["metrics"]["epochs"]] == [1.0, 2.0]
    assert activity["settings"]["learning_rate"] == pytest.approx(1e-2)
    assert got["outcome"] == {
        "target": TARGET,
        "accuracy": pytest.approx(final, abs=1e-6),
        "train_size": TRAIN_SIZE,
        "epochs": 2,
        "batch_size": 32,
        "learning_rate": pytest.approx(1e-2),
        "failed": False,
    }
    assert got["lineage"] == {(record.id, "FINETUNED_FROM"), (TARGET, "TRAINED_ON")}
    assert got["scorer_sees_it"]


def test_hf_failure_is_recorded_by_the_guard(store: GraphStore, data, tmp_path) -> None:
    from transformers import Trainer, TrainingArguments

    from transfer.integrations.hf import KgraftTrainerCallback

    record, ds, train, _ = data

    class Exploding(HfClassifier):
        def forward(self, pixel_values, labels=None):
            raise RuntimeError("CUDA error: device-side assert")

    args = TrainingArguments(
        output_dir=str(tmp_path / "hf"),
        num_train_epochs=1,
        report_to=[],
        use_cpu=True,
        disable_tqdm=True,
        save_strategy="no",
    )
    callback = KgraftTrainerCallback(store, source=record, target=ds)
    model = Exploding(source_model(record))
    trainer = Trainer(model=model, args=args, train_dataset=PixelDataset(train), callbacks=[callback])
    with pytest.raises(RuntimeError, match="device-side assert"), callback.failures_recorded():
        trainer.train()
    activity = store.node(Label.ACTIVITY, callback.run.run_id)
    assert activity["status"] == "failed" and "device-side assert" in activity["extra"]["error"]
    assert store.query("MATCH ()-[t:TRANSFERRED_TO]->() RETURN count(t) AS n") == [{"n": 0}]

"""A PyTorch Lightning ``Callback`` that records the fit as a kgraft run (``transfer.track``).

    trainer = L.Trainer(max_epochs=5, callbacks=[KgraftCallback(store, source="resnet18",
                                                                target="digits", accuracy="val_acc")])
    trainer.fit(module, train_loader, val_loader)

At the start of training it records the run as ``running`` with the regime read from the trainer:
train size (the train loader's dataset length), epochs (``max_epochs``), batch size (the loader's),
learning rate (the first optimiser's largest initial rate); arguments given to the callback win. After
every training epoch (which Lightning ends after that epoch's validation) it logs the trainer's scalar
``callback_metrics``, the ``accuracy`` metric as the run's accuracy. The end of ``fit`` records the
outcome; an exception (or Ctrl-C) marks the run failed. Only the global-zero process records.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import lightning.pytorch as pl

from kg import GraphStore
from transfer import track
from transfer.integrations import scalar_metrics


def _train_size(loader: Any) -> int | None:
    try:
        return len(loader.dataset)
    except (AttributeError, TypeError):
        return None


def _learning_rate(trainer: pl.Trainer) -> float | None:
    rates = [
        group.get("initial_lr", group.get("lr"))
        for optimizer in trainer.optimizers[:1]
        for group in optimizer.param_groups
    ]
    rates = [float(r) for r in rates if isinstance(r, int | float)]
    return max(rates) if rates else None


class KgraftCallback(pl.Callback):
    """Record a Lightning fit in ``store`` as a fine-tuning run of ``source`` (a Model id or name, or a
    ``ModelRecord``) on ``target`` (a Dataset id or name, or an ``ImageDataset``).

    ``accuracy`` names the logged metric that is the run's accuracy (its last value is the outcome's).
    The other keywords (``settings``, ``train_size``, ``epochs``, ``batch_size``, ``learning_rate``,
    ``preset``, ``name``, ``model_name``, ``checkpoint``) go to ``transfer.track.start`` and override what
    the callback reads from the trainer.
    """

    def __init__(
        self,
        store: GraphStore,
        *,
        source: Any,
        target: Any,
        accuracy: str = "val_acc",
        settings: Mapping[str, Any] | Any = None,
        **track_args: Any,
    ) -> None:
        self.store = store
        self.source = source
        self.target = target
        self.accuracy = accuracy
        self.settings = settings
        self.track_args = track_args
        self.run: track.TrackedRun | None = None

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if not trainer.is_global_zero:
            return
        loader = trainer.train_dataloader
        read = {
            "train_size": _train_size(loader),
            "epochs": trainer.max_epochs if trainer.max_epochs and trainer.max_epochs > 0 else None,
            "batch_size": getattr(loader, "batch_size", None),
            "learning_rate": _learning_rate(trainer),
        }
        args = {**read, **self.track_args}
        self.run = track.start(
            self.store,
            source=self.source,
            target=self.target,
            settings=self.settings,
            framework="lightning",
            device=str(pl_module.device),
            **args,
        )

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self.run is not None and self.run.status == "running":
            metrics = scalar_metrics(trainer.callback_metrics, self.accuracy)
            self.run.log(epoch=trainer.current_epoch + 1, **metrics)

    def on_fit_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self.run is None or self.run.status != "running":
            return
        if trainer.interrupted:
            self.run.fail("interrupted")
        else:
            self.run.finish()

    def on_exception(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, exception: BaseException
    ) -> None:
        if self.run is not None:
            self.run.fail(f"{type(exception).__name__}: {exception}")

"""The LightningModule every task trains: backbone, readout, objective, optimiser."""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

import lightning as L
import torch
from torch import nn

from seqnets.errors import ConfigError
from seqnets.models.backbone import RecurrentBackbone
from seqnets.models.objectives import Batch, BitSequence, Classification

Objective = Classification | BitSequence
STAGES = ("train", "val", "test")


class SequenceModule(L.LightningModule):
    """A recurrent backbone and a linear readout, trained for whichever objective a task names.

    ``optimizer`` and ``scheduler`` are partials (Hydra ``_partial_: true``) that still lack the
    parameters and, for one-cycle schedules, the step count, which only the Trainer knows.
    ``config`` is the run's resolved config: it travels in every checkpoint so that a checkpoint
    alone can rebuild its task, model and data.
    """

    def __init__(
        self,
        backbone: RecurrentBackbone,
        objective: Objective,
        optimizer: Callable[..., torch.optim.Optimizer],
        scheduler: Callable[..., Any] | None = None,
        l2: float = 0.0,
        config: dict | None = None,
    ) -> None:
        super().__init__()
        if l2 < 0:
            raise ConfigError(f"l2={l2!r} is not allowed: it must be >= 0")
        lr = getattr(optimizer, "keywords", {}).get("lr")
        if lr is not None and not lr > 0:
            # Checked here, before any data is read, rather than when the Trainer starts.
            raise ConfigError(f"optimizer.lr={lr!r} is not allowed: it must be a number > 0")
        self.save_hyperparameters(ignore=["backbone", "objective", "optimizer", "scheduler"])
        self.backbone = backbone
        self.objective = objective
        self.readout = nn.Linear(backbone.output_size, objective.num_outputs)
        self.optimizer_factory = optimizer
        self.scheduler_factory = scheduler
        self.l2 = float(l2)
        # One metric collection per stage: torchmetrics state must not mix across stages.
        # (Keys are suffixed because ModuleDict may not shadow nn.Module.train.)
        self.stage_metrics = nn.ModuleDict(
            {f"{stage}_": objective.metrics().clone(prefix=f"{stage}/") for stage in STAGES}
        )
        self.test_outputs: dict[str, torch.Tensor] = {}
        self._test_parts: list[tuple[torch.Tensor, torch.Tensor]] = []

    def forward(self, x: torch.Tensor, lengths: torch.Tensor | None = None) -> torch.Tensor:
        """Logits: (batch, outputs) for last-step readouts, (batch, steps, outputs) otherwise."""
        outputs, final = self.backbone(x, lengths)
        return self.readout(final if self.objective.readout == "last" else outputs)

    def l2_penalty(self) -> torch.Tensor:
        """Sum of squared weights, biases excluded, as in report A's L2 run."""
        return sum(p.pow(2).sum() for p in self.parameters() if p.ndim >= 2)

    def _step(self, batch: Batch, stage: str) -> torch.Tensor:
        logits = self(batch["x"], batch.get("lengths"))
        loss = self.objective.loss(logits, batch)
        preds = self.objective.predict(logits)
        metrics = self.stage_metrics[f"{stage}_"]
        self.objective.update(metrics, preds, batch)
        on_step = stage == "train"
        batch_size = batch["x"].shape[0]
        self.log(
            f"{stage}/loss",
            loss,
            on_step=on_step,
            on_epoch=True,
            batch_size=batch_size,
            sync_dist=not on_step,  # epoch means over every rank under DDP; free on one device
        )
        self.log_dict(metrics, on_step=False, on_epoch=True, batch_size=batch_size)
        if stage == "test" and self.objective.keeps_test_predictions:
            self._test_parts.append((preds.detach().cpu(), batch["y"].detach().cpu()))
        return loss

    def training_step(self, batch: Batch, batch_idx: int) -> torch.Tensor:
        loss = self._step(batch, "train")
        if self.l2:
            loss = loss + self.l2 * self.l2_penalty()
        return loss

    def validation_step(self, batch: Batch, batch_idx: int) -> None:
        self._step(batch, "val")

    def test_step(self, batch: Batch, batch_idx: int) -> None:
        self._step(batch, "test")

    def on_test_epoch_start(self) -> None:
        self._test_parts = []

    def on_test_epoch_end(self) -> None:
        """Keep the test predictions: confusion matrices and reports are built from them."""
        if self._test_parts:
            preds, targets = zip(*self._test_parts, strict=True)
            self.test_outputs = {"preds": torch.cat(preds), "targets": torch.cat(targets)}
        self._test_parts = []

    def configure_optimizers(self) -> Any:
        optimizer = self.optimizer_factory(params=self.parameters())
        if self.scheduler_factory is None:
            return optimizer
        target = getattr(self.scheduler_factory, "func", self.scheduler_factory)
        if "total_steps" in inspect.signature(target).parameters:
            # One-cycle style schedules need the run's length and step every batch.
            total = int(self.trainer.estimated_stepping_batches)
            scheduler = self.scheduler_factory(optimizer, total_steps=total)
            interval = "step"
        else:
            scheduler = self.scheduler_factory(optimizer)
            interval = "epoch"
        return {
            "optimizer": optimizer,
            "lr_scheduler": {"scheduler": scheduler, "interval": interval},
        }

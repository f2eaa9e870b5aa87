"""The LightningModule every task trains: backbone, readout, objective, optimiser."""

from __future__ import annotations

import inspect
import math
from collections.abc import Callable
from typing import Any

import lightning as L
import torch
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf
from torch import nn
from torchmetrics import MeanMetric, MetricCollection

from seqnets.errors import check_real
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
        self.l2 = check_real("l2", l2, 0.0)
        lr = getattr(optimizer, "keywords", {}).get("lr")
        if lr is not None:
            # Checked here, before any data is read, rather than when the Trainer starts.
            check_real("optimizer.lr", lr, 0.0, low_open=True)
        self.save_hyperparameters(ignore=["backbone", "objective", "optimizer", "scheduler"])
        self.backbone = backbone
        self.objective = objective
        self.readout = nn.Linear(backbone.output_size, objective.num_outputs)
        self.optimizer_factory = optimizer
        self.scheduler_factory = scheduler
        # One metric collection per stage: torchmetrics state must not mix across stages.
        # (Keys are suffixed because ModuleDict may not shadow nn.Module.train.)
        self.stage_metrics = nn.ModuleDict(
            {f"{stage}_": self._stage_metrics(stage) for stage in STAGES}
        )
        self.test_outputs: dict[str, torch.Tensor] = {}
        self._test_parts: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = []

    @classmethod
    def from_config(cls, cfg: DictConfig, input_size: int) -> SequenceModule:
        """The module a run's config names (training builds it so; a checkpoint's config
        rebuilds it so), for a DataModule whose sequences have ``input_size`` features."""
        return cls(
            backbone=instantiate(cfg.model, input_size=input_size),
            objective=instantiate(cfg.task.objective),
            optimizer=instantiate(cfg.optimizer),
            scheduler=instantiate(cfg.scheduler) if cfg.get("scheduler") else None,
            l2=cfg.l2,
            config=OmegaConf.to_container(cfg, resolve=True),
        )

    def _stage_metrics(self, stage: str) -> MetricCollection:
        metrics = self.objective.metrics()
        # NaN checks off: a diverged loss must show as NaN, not be dropped from the mean.
        metrics.add_metrics({"loss": MeanMetric(nan_strategy="disable")})
        if stage == "train":
            # Saved in checkpoints: a run resumed mid-epoch counts that epoch's earlier batches.
            metrics.persistent(True)
        return metrics.clone(prefix=f"{stage}/")

    def forward(self, x: torch.Tensor, lengths: torch.Tensor | None = None) -> torch.Tensor:
        """Logits: (batch, outputs) for last-step readouts, (batch, steps, outputs) otherwise."""
        outputs, final = self.backbone(x, lengths)
        return self.readout(final if self.objective.readout == "last" else outputs)

    def l2_penalty(self) -> torch.Tensor:
        """Sum of squared weights, biases excluded, as in report A's L2 run."""
        return sum(p.pow(2).sum() for p in self.parameters() if p.ndim >= 2)

    def _step(self, batch: Batch, stage: str) -> tuple[torch.Tensor, torch.Tensor]:
        """Loss and predictions of one batch; the stage's metrics are updated on the device.

        Nothing is logged per step here: Lightning's ``self.log`` costs about as much as a
        small model's whole step, so epoch values are computed once per epoch from the
        metrics (which also synchronise themselves across DDP ranks).
        """
        logits = self(batch["x"], batch.get("lengths"))
        loss = self.objective.loss(logits, batch)
        preds = self.objective.predict(logits)
        metrics = self.stage_metrics[f"{stage}_"]
        with torch.no_grad():
            self.objective.update(metrics, preds, batch)
            # Expanded to one value per sequence, so the epoch mean weights sequences equally
            # (MeanMetric drops its weight argument when NaN checks are off).
            metrics["loss"].update(loss.detach().expand(batch["x"].shape[0]))
        return loss, preds

    def training_step(self, batch: Batch, batch_idx: int) -> dict[str, torch.Tensor]:
        loss, _ = self._step(batch, "train")
        trainer = self._trainer
        if trainer is not None and (self.global_step + 1) % trainer.log_every_n_steps == 0:
            # Only on the steps the logger writes: TensorBoard's per-step curve.
            self.log("train/loss_step", loss.detach(), on_step=True, on_epoch=False)
        total = loss + self.l2 * self.l2_penalty() if self.l2 else loss
        # The objective's loss (without the L2 term) is what curves and history show.
        return {"loss": total, "objective_loss": loss.detach()}

    def validation_step(self, batch: Batch, batch_idx: int) -> None:
        self._step(batch, "val")

    def test_step(self, batch: Batch, batch_idx: int) -> None:
        _, preds = self._step(batch, "test")
        if self.objective.keeps_test_predictions:
            index = batch.get("index", torch.full_like(batch["y"], -1))
            self._test_parts.append((index.detach(), preds.detach(), batch["y"].detach()))

    def epoch_metrics(self, stage: str) -> dict[str, torch.Tensor]:
        """The stage's metrics over the epoch so far (synchronised across ranks; torchmetrics
        caches the value until the next update, so callbacks may ask too)."""
        return self.stage_metrics[f"{stage}_"].compute()

    def _log_epoch(self, stage: str) -> None:
        metrics = self.stage_metrics[f"{stage}_"]
        if metrics["loss"].update_called:
            self.log_dict(self.epoch_metrics(stage), on_step=False, on_epoch=True)
        metrics.reset()

    def on_train_epoch_end(self) -> None:
        self._log_epoch("train")

    def on_validation_epoch_end(self) -> None:
        self._log_epoch("val")

    def on_test_epoch_start(self) -> None:
        self._test_parts = []

    def on_test_epoch_end(self) -> None:
        """Log the test metrics and keep every test prediction, gathered from every rank and
        put back in test-set order: confusion matrices and reports are built from them."""
        self._log_epoch("test")
        if not self._test_parts:
            return
        index, preds, targets = (torch.cat(part) for part in zip(*self._test_parts, strict=True))
        self._test_parts = []
        if self.trainer.world_size > 1:
            index, preds, targets = (gather_ragged(self, t) for t in (index, preds, targets))
        order = torch.argsort(index)
        self.test_outputs = {
            "index": index[order].cpu(),
            "preds": preds[order].cpu(),
            "targets": targets[order].cpu(),
        }

    def configure_optimizers(self) -> Any:
        optimizer = self.optimizer_factory(params=self.parameters())
        if self.scheduler_factory is None:
            return optimizer
        parameters = inspect.signature(
            getattr(self.scheduler_factory, "func", self.scheduler_factory)
        ).parameters
        if "steps_per_epoch" in parameters:
            # One-cycle: planned over the task's epochs (the scheduler's ``epochs``), which may
            # exceed the epochs this invocation trains (a run stopped early and resumed later
            # follows the same schedule as one trained in one go).
            per_epoch = math.ceil(
                self.trainer.estimated_stepping_batches / max(1, self.trainer.max_epochs)
            )
            scheduler = self.scheduler_factory(optimizer, steps_per_epoch=per_epoch)
            interval = "step"
        else:
            scheduler = self.scheduler_factory(optimizer)
            interval = "epoch"
        return {
            "optimizer": optimizer,
            "lr_scheduler": {"scheduler": scheduler, "interval": interval},
        }


def gather_ragged(module: L.LightningModule, values: torch.Tensor) -> torch.Tensor:
    """Concatenate a 1-D tensor of a different length on each rank, on every rank.

    ``all_gather`` needs equal shapes, so each rank pads to the longest (with whatever the
    buffer held) and the padding is cut off again using the gathered lengths.
    """
    size = torch.tensor([values.shape[0]], device=module.device)
    sizes = module.all_gather(size).flatten().tolist()
    padded = torch.empty(max(sizes), dtype=values.dtype, device=module.device)
    padded[: values.shape[0]] = values
    gathered = module.all_gather(padded)  # (world, longest)
    return torch.cat([row[:n] for row, n in zip(gathered, sizes, strict=True)])

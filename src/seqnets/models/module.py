"""The LightningModule every task trains: backbone, readout, objective, optimiser."""

from __future__ import annotations

import inspect
import logging
import math
from collections.abc import Callable
from functools import partial
from typing import Any

import lightning as L
import torch
from hydra.utils import instantiate
from lightning.pytorch.plugins.precision import MixedPrecision
from omegaconf import DictConfig, OmegaConf
from torch import nn
from torchmetrics import MeanMetric, MetricCollection

from seqnets.errors import check_real
from seqnets.models.backbone import RecurrentBackbone
from seqnets.models.objectives import Batch, Objective
from seqnets.runtime import environment

log = logging.getLogger(__name__)

STAGES = ("train", "val", "test")


class SequenceModule(L.LightningModule):
    """A recurrent backbone and a linear readout, trained for whichever objective a task names.

    ``optimizer`` and ``scheduler`` are partials (Hydra ``_partial_: true``) that still lack the
    parameters and, for one-cycle schedules, the step count, which only the Trainer knows.
    ``config`` is the run's resolved config: it travels in every checkpoint so that a checkpoint
    alone can rebuild its task, model and data.

    It trains in Lightning's own loop (automatic optimisation): every Trainer flag and
    callback acts as Lightning documents. ``gradient_clip`` is the gradients' maximum norm
    (None: no clipping), applied after mixed precision unscales them, unless the user sets
    Lightning's ``trainer.gradient_clip_val``.
    """

    def __init__(
        self,
        backbone: RecurrentBackbone,
        objective: Objective,
        optimizer: Callable[..., torch.optim.Optimizer],
        scheduler: Callable[..., Any] | None = None,
        l2: float = 0.0,
        gradient_clip: float | None = None,
        config: dict | None = None,
    ) -> None:
        super().__init__()
        # The learning rate is checked here, before any data is read, not when the Trainer
        # starts.
        lr = getattr(optimizer, "keywords", {}).get("lr")
        self.l2, self.gradient_clip = self.check_arguments(l2, gradient_clip, lr)
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
        self._scheduler_interval: str | None = None  # "step" or "epoch", once configured

    @staticmethod
    def check_arguments(
        l2: float = 0.0, gradient_clip: float | None = None, lr: float | None = None
    ) -> tuple[float, float | None]:
        """The constructor's own numbers (``lr``: the optimiser partial's), checked without
        building anything: the config check calls it before any work. Returns (l2,
        gradient_clip)."""
        if lr is not None:
            check_real("optimizer.lr", lr, 0.0, low_open=True)
        if gradient_clip is not None:
            check_real("task.gradient_clip", gradient_clip, 0.0)
        return check_real("l2", l2, 0.0), gradient_clip

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
            gradient_clip=cfg.task.gradient_clip,
            config=OmegaConf.to_container(cfg, resolve=True),
        )

    @property
    def lr(self) -> float | None:
        """The optimiser's learning rate (under one-cycle, its peak). Lightning's
        learning-rate finder (``LearningRateFinder``, ``Tuner.lr_find``) reads it here and
        sets what it found."""
        return getattr(self.optimizer_factory, "keywords", {}).get("lr")

    @lr.setter
    def lr(self, value: float) -> None:
        old = self.lr
        self.optimizer_factory = partial(self.optimizer_factory, lr=value)
        if "max_lr" in getattr(self.scheduler_factory, "keywords", {}):
            self.scheduler_factory = partial(self.scheduler_factory, max_lr=value)
        try:
            optimizers = self.trainer.optimizers
        except RuntimeError:  # not attached to a Trainer: nothing made yet
            return
        # Made already (the finder runs when fitting starts): every rate of the schedule in
        # the same proportion (one-cycle keeps its start, peak and end in the param groups).
        for optimizer in optimizers if old else ():
            for group in optimizer.param_groups:
                for key in ("lr", "initial_lr", "max_lr", "min_lr"):
                    if key in group:
                        group[key] *= value / old

    def _stage_metrics(self, stage: str) -> MetricCollection:
        metrics = self.objective.metrics()
        # NaN checks off: a diverged loss must show as NaN, not be dropped from the mean.
        metrics.add_metrics({"loss": MeanMetric(nan_strategy="disable")})
        if stage == "train":
            # Saved in checkpoints: a run resumed mid-epoch counts that epoch's earlier batches.
            metrics.persistent(True)
        return metrics.clone(prefix=f"{stage}/")

    def forward(self, x: torch.Tensor, lengths: torch.Tensor | None = None) -> torch.Tensor:
        """Logits: (batch, outputs) for last-step readouts, (batch, steps, outputs) otherwise.

        The input takes the weights' dtype: Lightning's true-precision plugins (``bf16-true``,
        ``64-true``) convert the batches a loader yields, but a DataModule that makes floats
        after the transfer (MNIST normalises its bytes on the device) still makes float32."""
        return self.head(*self.backbone(x.to(self.dtype), lengths))

    def head(self, outputs: torch.Tensor, final: torch.Tensor) -> torch.Tensor:
        """The readout of the backbone's ``(outputs, final)``: a sweep's grouped models
        (``seqnets.grouping``) run their backbones together and each reads its own here."""
        return self.readout(final if self.objective.readout == "last" else outputs)

    def l2_penalty(self) -> torch.Tensor:
        """Sum of squared weights, biases excluded, as in report A's L2 run."""
        return sum(p.pow(2).sum() for p in self.parameters() if p.ndim >= 2)

    def _forward_step(
        self, batch: Batch, features: tuple[torch.Tensor, torch.Tensor] | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """The logits of one batch and the objective's loss. ``features``: the backbone's
        output for the batch, when it ran already (a sweep's group, ``seqnets.grouping``)."""
        if features is None:
            logits = self(batch["x"], batch.get("lengths"))
        else:
            logits = self.head(*features)
        return logits, self.objective.loss(logits, batch)

    def _update(
        self, stage: str, preds: torch.Tensor, batch: Batch, loss: torch.Tensor, size: int
    ) -> None:
        """The stage's metrics, updated on the device with the batch's predictions and loss.
        The loss is expanded to one value per sequence so that the epoch mean weights
        sequences equally (MeanMetric drops its weight argument when NaN checks are off, and
        they are off so that a diverged loss shows as NaN)."""
        metrics = self.stage_metrics[f"{stage}_"]
        with torch.no_grad():
            self.objective.update(metrics, preds, batch)
            metrics["loss"].update(loss.detach().expand(size))

    def training_losses(
        self, batch: Batch, features: tuple[torch.Tensor, torch.Tensor] | None = None
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """A training batch's logits, its objective loss (what curves and the history show)
        and the loss that is minimised (with the L2 penalty, when there is one).
        ``features``: as in ``_forward_step``."""
        logits, loss = self._forward_step(batch, features)
        total = loss + self.l2 * self.l2_penalty() if self.l2 else loss
        return logits, loss, total

    def count_training_batch(self, batch: Batch, logits: torch.Tensor, loss: torch.Tensor) -> None:
        """The epoch's training metrics, updated with a batch (no host read-back)."""
        self._update("train", self.objective.predict(logits.detach()), batch, loss, len(batch["x"]))

    def training_step(self, batch: Batch, batch_idx: int) -> dict[str, torch.Tensor]:
        """One optimiser step (automatic optimisation). ``objective`` is the objective's loss
        without the L2 penalty: what the curves, the History and the divergence guard show.
        Nothing here reads a value back to the host: Lightning logs ``train/loss_step`` at
        its ``log_every_n_steps`` cadence, and the learning rate is ``LearningRateMonitor``'s."""
        logits, loss, total = self.training_losses(batch)
        loss = loss.detach()
        self.count_training_batch(batch, logits, loss)
        self.log("train/loss_step", loss, on_step=True, on_epoch=False, batch_size=len(batch["x"]))
        return {"loss": total, "objective": loss}

    def _clips_under_mixed_precision(self) -> bool:
        clip = self.trainer.gradient_clip_val
        clips = (clip if clip is not None else self.gradient_clip) or 0
        return clips > 0 and isinstance(self.trainer.precision_plugin, MixedPrecision)

    def configure_gradient_clipping(
        self,
        optimizer: torch.optim.Optimizer,
        gradient_clip_val: float | None = None,
        gradient_clip_algorithm: str | None = None,
    ) -> None:
        """Lightning's ``trainer.gradient_clip_val`` when a user sets it, else the task's
        ``gradient_clip`` (by norm). Called after mixed precision unscales the gradients."""
        value = gradient_clip_val if gradient_clip_val is not None else self.gradient_clip
        if value:
            self.clip_gradients(optimizer, value, gradient_clip_algorithm or "norm")

    def evaluation_step(
        self, batch: Batch, stage: str, features: tuple[torch.Tensor, torch.Tensor] | None = None
    ) -> torch.Tensor:
        """A validation or test batch's predictions, counted in the stage's metrics
        (``features``: as in ``_forward_step``)."""
        logits, loss = self._forward_step(batch, features)
        preds = self.objective.predict(logits)
        self._update(stage, preds, batch, loss, batch["x"].shape[0])
        return preds

    def validation_step(self, batch: Batch, batch_idx: int) -> None:
        self.evaluation_step(batch, "val")

    def test_step(self, batch: Batch, batch_idx: int) -> None:
        preds = self.evaluation_step(batch, "test")
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
            # Logged once per epoch, already reduced: no batch size to weight by.
            values = self.epoch_metrics(stage)
            self.log_dict(values, on_step=False, on_epoch=True, batch_size=1)
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
        # What is trainable: a finetuning callback (BaseFinetuning) freezes parts before
        # this, and adds them to the optimiser as a group of their own when it thaws them.
        return self.optimization([p for p in self.parameters() if p.requires_grad])

    def optimization(self, params: list) -> Any:
        """The optimiser (and schedule) of ``params``, as ``configure_optimizers`` returns
        them; ``params`` may be parameter groups (a sweep's grouped models: one each)."""
        factory = self.optimizer_factory
        if getattr(factory, "keywords", {}).get("fused") and self._clips_under_mixed_precision():
            # A fused optimiser unscales inside its own step, so Lightning's mixed precision
            # cannot clip its gradients (it refuses): the unfused kernel, same arithmetic.
            log.info("optimizer.fused=false: mixed precision clips the gradients first")
            factory = partial(factory, fused=False)
        optimizer = factory(params=params)
        if self.scheduler_factory is None:
            return optimizer
        parameters = inspect.signature(
            getattr(self.scheduler_factory, "func", self.scheduler_factory)
        ).parameters
        if "steps_per_epoch" in parameters:
            # One-cycle: planned over the task's epochs (the scheduler's ``epochs``) of
            # full epochs' steps, which may exceed what this invocation trains: a run stopped
            # early (trainer.max_epochs, trainer.max_steps) and resumed later follows the same
            # schedule as one trained in one go. (estimated_stepping_batches sets up the
            # training data, so that the number of batches per epoch is known.)
            _ = self.trainer.estimated_stepping_batches
            batches = self.trainer.num_training_batches
            per_epoch = math.ceil(batches / self.trainer.accumulate_grad_batches)
            scheduler = self.scheduler_factory(optimizer, steps_per_epoch=per_epoch)
            self._scheduler_interval = "step"
        else:
            scheduler = self.scheduler_factory(optimizer)
            self._scheduler_interval = "epoch"
        config = {"scheduler": scheduler, "interval": self._scheduler_interval}
        return {"optimizer": optimizer, "lr_scheduler": config}


def logged_scores(results: dict[str, Any]) -> dict[str, float]:
    """What ``trainer.test`` returns, as plain numbers. (Runs made before 0.2 also logged
    the "step" and "epoch" axes: not scores.)"""
    return {key: float(value) for key, value in results.items() if key not in ("step", "epoch")}


def scored_record(
    module: SequenceModule, test: dict[str, Any], config: Any = None, **more: Any
) -> dict[str, Any]:
    """The run record (``metrics.json``) of a scored network, as training and ``evaluate``
    both write it, so that every reader (the report, ``summarize``, the demo) finds the same
    keys: what the network is (task, cell, size, seed, parameters, ``config``: the module's
    own unless given), its test scores, ``more``, and the machine that scored it."""
    config = module.hparams["config"] if config is None else config
    return {
        "task": config["task"]["name"],
        "cell": config["model"]["cell"],
        "hidden": config["model"]["hidden"],
        "seed": config["seed"],
        "test": logged_scores(test),
        "num_parameters": sum(p.numel() for p in module.parameters()),
        **more,
        **environment(),
        "config": config,
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

"""The LightningModule every task trains: backbone, readout, objective, optimiser."""

from __future__ import annotations

import inspect
import math
import warnings
from collections.abc import Callable, Iterator
from typing import Any

import lightning as L
import torch
from hydra.utils import instantiate
from lightning.pytorch.plugins.precision import Precision
from lightning.pytorch.strategies import Strategy
from lightning.pytorch.utilities.model_helpers import is_overridden
from lightning.pytorch.utilities.warnings import PossibleUserWarning
from omegaconf import DictConfig, OmegaConf
from torch import nn
from torchmetrics import MeanMetric, MetricCollection

from seqnets.data.base import prepare_batch
from seqnets.errors import check_int, check_real
from seqnets.models.backbone import RecurrentBackbone
from seqnets.models.objectives import Batch, Objective

STAGES = ("train", "val", "test")
# The training step draws its own batches, several per call. Lightning warns, every run,
# that this signature is experimental, that hooks then see the last batch's index, and that
# gradient accumulation would not work: hooks get the batch index they need, accumulation
# is refused up front (seqnets.checks), and tests/test_steps_per_call.py checks the rest.
warnings.filterwarnings(
    "ignore",
    message="You are using the `dataloader_iter` step flavor",
    category=PossibleUserWarning,
)
warnings.filterwarnings("ignore", message="Found `dataloader_iter` argument in the `training_step`")
# Logged with the epoch metrics: Lightning's loggers take "step" as their x value, and
# "epoch" is Lightning's usual companion curve. Neither is a score.
AXES = ("step", "epoch")


class SequenceModule(L.LightningModule):
    """A recurrent backbone and a linear readout, trained for whichever objective a task names.

    ``optimizer`` and ``scheduler`` are partials (Hydra ``_partial_: true``) that still lack the
    parameters and, for one-cycle schedules, the step count, which only the Trainer knows.
    ``config`` is the run's resolved config: it travels in every checkpoint so that a checkpoint
    alone can rebuild its task, model and data.

    Training takes up to ``steps_per_call`` optimiser steps per call of ``training_step``
    (Lightning's manual optimisation, batches drawn from ``dataloader_iter``): Lightning's
    per-call machinery (every callback's hooks, progress tracking, the fetcher) costs about a
    third of a small model's step on a CPU (``make bench``: the plain Lightning loop against
    the bare one), and is paid once per call. Each step is
    still a step of its own: ``global_step``, the schedule, the metrics and the loss history
    count every one, and ``limit_train_batches`` counts batches. ``gradient_clip`` is the
    gradients' maximum norm (None: no clipping), applied after mixed precision unscales them.
    """

    def __init__(
        self,
        backbone: RecurrentBackbone,
        objective: Objective,
        optimizer: Callable[..., torch.optim.Optimizer],
        scheduler: Callable[..., Any] | None = None,
        l2: float = 0.0,
        gradient_clip: float | None = None,
        steps_per_call: int = 1,
        config: dict | None = None,
    ) -> None:
        super().__init__()
        self.automatic_optimization = False
        self.l2 = check_real("l2", l2, 0.0)
        self.gradient_clip = (
            None if gradient_clip is None else check_real("task.gradient_clip", gradient_clip, 0.0)
        )
        self.steps_per_call = check_int("steps_per_call", steps_per_call, 1)
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
        self._scheduler_interval: str | None = None  # "step" or "epoch", once configured
        self._plain_backward = False  # see plain_backward(), decided when training starts

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
            steps_per_call=cfg.get("steps_per_call", 1),
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

    def _forward_step(self, batch: Batch) -> tuple[torch.Tensor, torch.Tensor]:
        """The logits of one batch and the objective's loss."""
        logits = self(batch["x"], batch.get("lengths"))
        return logits, self.objective.loss(logits, batch)

    def _update(
        self, stage: str, preds: torch.Tensor, batch: Batch, losses: torch.Tensor, sizes: list[int]
    ) -> None:
        """The stage's metrics, updated on the device with the predictions for ``batch``
        (one or several batches merged) and the batches' losses. Losses are expanded to one
        value per sequence so that the epoch mean weights sequences equally (MeanMetric
        drops its weight argument when NaN checks are off, and they are off so that a
        diverged loss shows as NaN)."""
        metrics = self.stage_metrics[f"{stage}_"]
        with torch.no_grad():
            self.objective.update(metrics, preds, batch)
            repeats = torch.as_tensor(sizes, device=losses.device)
            metrics["loss"].update(losses.detach().repeat_interleave(repeats))

    def training_losses(self, batch: Batch) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """A training batch's logits, its objective loss (what curves and the history show)
        and the loss that is minimised (with the L2 penalty, when there is one)."""
        logits, loss = self._forward_step(batch)
        total = loss + self.l2 * self.l2_penalty() if self.l2 else loss
        return logits, loss, total

    def training_step(self, dataloader_iter: Iterator) -> dict[str, torch.Tensor] | None:
        """Up to ``steps_per_call`` optimiser steps, one per batch drawn from the iterator
        (fewer at the end of an epoch, or of ``trainer.max_steps``). Returns the steps'
        objective losses, in order: the callbacks read each step's loss from them.

        The metrics are updated once per call, with every batch's predictions; epoch values
        are computed from them once per epoch (synchronised across DDP ranks). Nothing goes
        through ``self.log`` per step, which is slow for what it does and would put the
        value at Lightning's count of calls: the per-step curves are
        written to the loggers directly, at the steps ``log_every_n_steps`` names."""
        trainer = self.trainer
        optimizer = self.optimizers()
        scheduler = self.lr_schedulers() if self._scheduler_interval == "step" else None
        budget = self.steps_per_call
        if trainer.max_steps > 0:
            budget = min(budget, trainer.max_steps - self.global_step)
        every = trainer.log_every_n_steps if self.loggers else 0
        losses, sizes, scored, logged = [], [], [], []
        for _ in range(budget):
            try:
                batch, _, _ = next(dataloader_iter)
            except StopIteration:
                break
            batch = trainer.precision_plugin.convert_input(batch)
            batch = prepare_batch(trainer.datamodule, batch, self.device)
            logits, loss, total = self.training_losses(batch)
            step = self.global_step + 1  # the step this batch takes, as global_step counts
            logs = every and step % every == 0
            lr = optimizer.param_groups[0]["lr"] if logs else None  # the rate this step uses
            optimizer.zero_grad()
            if self._plain_backward:
                total.backward()
            else:
                self.manual_backward(total)
            optimizer.step()  # clipping: in on_before_optimizer_step
            if scheduler is not None:
                scheduler.step()
            loss = loss.detach()
            losses.append(loss)
            sizes.append(batch["x"].shape[0])
            scored.append((logits.detach(), {k: v for k, v in batch.items() if k != "x"}))
            if logs:
                logged.append((step, loss, lr))
            # A diverged step ends the call, so the divergence guard stops the run at that
            # step (reading the loss is free on a CPU; on a GPU the guard finds the step).
            if loss.device.type == "cpu" and not torch.isfinite(loss):
                break
        if not losses:
            return None
        stacked = torch.stack(losses)
        logits, batch = self.objective.merge(scored)
        self._update("train", self.objective.predict(logits), batch, stacked, sizes)
        for step, loss, lr in logged:  # TensorBoard's per-step curves, at the real step
            for logger in self.loggers:
                logger.log_metrics({"train/loss_step": float(loss), "train/lr": lr}, step=step)
        return {"losses": stacked}

    def on_train_start(self) -> None:
        self._plain_backward = plain_backward(self.trainer)

    def on_before_optimizer_step(self, optimizer: torch.optim.Optimizer) -> None:
        # Called inside optimizer.step(), after mixed precision has unscaled the gradients.
        if self.gradient_clip:
            self.clip_gradients(optimizer, self.gradient_clip, gradient_clip_algorithm="norm")

    def _evaluation_step(self, batch: Batch, stage: str) -> torch.Tensor:
        logits, loss = self._forward_step(batch)
        preds = self.objective.predict(logits)
        self._update(stage, preds, batch, loss.reshape(1), [batch["x"].shape[0]])
        return preds

    def validation_step(self, batch: Batch, batch_idx: int) -> None:
        self._evaluation_step(batch, "val")

    def test_step(self, batch: Batch, batch_idx: int) -> None:
        preds = self._evaluation_step(batch, "test")
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
            # The x-axis of these curves: the optimiser step (Lightning would use its count
            # of training-step calls, which is not the step when a call takes several).
            axes = {"step": float(self.global_step), "epoch": float(self.current_epoch)}
            self.log_dict(axes, on_step=False, on_epoch=True, batch_size=1)
        metrics.reset()

    def on_train_epoch_end(self) -> None:
        self._log_epoch("train")
        if self._scheduler_interval == "epoch":
            self.lr_schedulers().step()

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
            self._scheduler_interval = "step"
        else:
            scheduler = self.scheduler_factory(optimizer)
            self._scheduler_interval = "epoch"
        # Stepped by training_step (per step) or at the epoch's end: manual optimisation.
        return {"optimizer": optimizer, "lr_scheduler": scheduler}


def plain_backward(trainer: L.Trainer) -> bool:
    """Whether Lightning's ``manual_backward`` would do nothing but ``loss.backward()`` in
    this run: no strategy work around it (DDP prepares its gradient reducer there), the
    plain precision's backward (mixed precision scales the loss there), and no callback or
    module hook on either side of it. Then the training step calls ``backward`` itself and
    saves the hooks' cost at every step."""

    def changes(obj: object, parent: type, names: tuple[str, ...]) -> bool:
        return any(is_overridden(name, obj, parent) for name in names)

    around = ("pre_backward", "backward", "post_backward")
    hooks = ("on_before_backward", "on_after_backward")
    return not (
        changes(trainer.strategy, Strategy, around)
        or changes(trainer.precision_plugin, Precision, around)
        or any(changes(callback, L.Callback, hooks) for callback in trainer.callbacks)
        or changes(trainer.lightning_module, L.LightningModule, (*hooks, "backward"))
    )


def logged_scores(results: dict[str, Any]) -> dict[str, float]:
    """What ``trainer.test`` returns, as plain numbers, without the axes logged with them."""
    return {key: float(value) for key, value in results.items() if key not in AXES}


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

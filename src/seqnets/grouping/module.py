"""The group's network: the members' modules, one training step for all."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import lightning as L
import torch

from seqnets.models.fused import FusedBackbones
from seqnets.models.module import SequenceModule


class GroupedModule(L.LightningModule):
    """The members' modules, one training step for all: one batch, the same-cell members'
    backbones in one kernel call, each member's readout, loss and metrics its own. The
    minimised loss is the members' sum: their parameters are disjoint, so each gets exactly
    its own gradient."""

    def __init__(self, members: Sequence[SequenceModule]) -> None:
        super().__init__()
        self.members = torch.nn.ModuleList(members)
        self.active = list(range(len(members)))
        self.fused = FusedBackbones([m.backbone for m in members])
        self.epoch_values: dict[str, dict[int, dict[str, float]]] = {"train": {}, "val": {}}
        self.parameter_lists = [list(m.parameters()) for m in members]

    def leave(self, index: int) -> None:
        """A member stopped (early stopping, divergence): it trains no more, costs nothing."""
        if index in self.active:
            self.fused = self.fused.only([i for i, k in enumerate(self.active) if k != index])
            self.active.remove(index)
            for p in self.members[index].parameters():
                p.requires_grad_(False)

    def setup(self, stage: str) -> None:
        for member in self.members:  # what their optimiser and clipping settings read
            member.trainer = self.trainer

    def _features(self, batch: dict[str, torch.Tensor]) -> list[Any]:
        x = batch["x"].to(self.dtype)
        return self.fused(x, batch.get("lengths"))

    def training_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> dict[str, Any]:
        totals, objectives = [], []
        for k, features in zip(self.active, self._features(batch), strict=True):
            member = self.members[k]
            logits, loss, total = member.training_losses(batch, features)
            member.count_training_batch(batch, logits, loss.detach())
            totals.append(total)
            objectives.append(loss.detach())
        return {"loss": torch.stack(totals).sum(), "objectives": torch.stack(objectives)}

    def validation_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> None:
        for k, features in zip(self.active, self._features(batch), strict=True):
            self.members[k].evaluation_step(batch, "val", features)

    def _close_epoch(self, stage: str) -> None:
        """Each active member's metrics of the epoch, kept for the bookkeeping, and reset (as
        a solo module's epoch-end hook logs and resets them)."""
        values = {}
        for k in self.active:
            metrics = self.members[k].stage_metrics[f"{stage}_"]
            if metrics["loss"].update_called:
                values[k] = {key: float(v) for key, v in metrics.compute().items()}
            metrics.reset()
        if not self.trainer.sanity_checking:
            self.epoch_values[stage] = values

    def on_train_epoch_end(self) -> None:
        self._close_epoch("train")

    def on_validation_epoch_end(self) -> None:
        self._close_epoch("val")

    def configure_gradient_clipping(
        self,
        optimizer: torch.optim.Optimizer,
        gradient_clip_val: float | None = None,
        gradient_clip_algorithm: str | None = None,
    ) -> None:
        """Each member clipped by its own norm, as its solo run's ``clip_gradients`` clips all
        of its parameters (the same two steps of ``torch.nn.utils``: here, per member)."""
        for k in self.active:
            member = self.members[k]
            value = gradient_clip_val if gradient_clip_val is not None else member.gradient_clip
            if not value:
                continue
            params = self.parameter_lists[k]
            if (gradient_clip_algorithm or "norm") == "norm":
                grads = [p.grad for p in params if p.grad is not None]
                total = torch.nn.utils.get_total_norm(grads)
                torch.nn.utils.clip_grads_with_norm_(params, value, total)
            else:
                torch.nn.utils.clip_grad_value_(params, value)

    def configure_optimizers(self) -> Any:
        """The optimiser and schedule a solo run makes, over every member's parameters in
        member order (the checkpoint split reads them so). One parameter group: the members
        share every setting of it (the group key), an optimiser's state is per parameter,
        and one fused kernel call steps them all."""
        return self.members[0].optimization([p for ps in self.parameter_lists for p in ps])

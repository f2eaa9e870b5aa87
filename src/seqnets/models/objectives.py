"""What a task asks of the network: where to read it, how to score it, what to measure.

The backbone and the training loop are shared; an objective is the only task-specific part of
the model. Batches are dicts with ``x`` (batch, steps, features), ``y`` and, for ragged
batches, ``lengths``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torchmetrics import MeanMetric, MetricCollection
from torchmetrics.classification import BinaryAccuracy, MulticlassAccuracy

from seqnets.errors import check_choice, check_int

Batch = dict[str, torch.Tensor]


class Classification:
    """One label per sequence, read from the final state: MNIST rows, index memory."""

    readout = "last"

    def __init__(self, num_classes: int = 10, label_smoothing: float = 0.0) -> None:
        self.num_classes = check_int("task.objective.num_classes", num_classes, 2)
        self.num_outputs = self.num_classes
        self.label_smoothing = float(label_smoothing)

    def loss(self, logits: torch.Tensor, batch: Batch) -> torch.Tensor:
        return F.cross_entropy(logits, batch["y"], label_smoothing=self.label_smoothing)

    def predict(self, logits: torch.Tensor) -> torch.Tensor:
        return logits.argmax(dim=-1)

    def metrics(self) -> MetricCollection:
        return MetricCollection(
            {"acc": MulticlassAccuracy(self.num_classes, average="micro")}, compute_groups=False
        )

    def update(self, metrics: MetricCollection, preds: torch.Tensor, batch: Batch) -> None:
        metrics.update(preds, batch["y"])


class BitSequence:
    """One bit per step, read at every step through a sigmoid: binary addition.

    ``loss="ce"`` is binary cross-entropy on the logit; ``loss="mse"`` is the squared error
    of the sigmoid output, as in report A's comparison.
    """

    readout = "every"
    num_outputs = 1
    LOSSES = ("ce", "mse")

    def __init__(self, loss: str = "ce") -> None:
        self.loss_name = check_choice("task.loss", loss, self.LOSSES)

    @staticmethod
    def mask(batch: Batch) -> torch.Tensor:
        """True at real steps; all True unless the batch is ragged."""
        y = batch["y"]
        lengths = batch.get("lengths")
        if lengths is None:
            return torch.ones_like(y, dtype=torch.bool)
        steps = torch.arange(y.shape[1], device=y.device)
        return steps[None, :] < lengths.to(y.device)[:, None]

    def loss(self, logits: torch.Tensor, batch: Batch) -> torch.Tensor:
        logits = logits.squeeze(-1)
        target = batch["y"].to(logits.dtype)
        if self.loss_name == "ce":
            per_bit = F.binary_cross_entropy_with_logits(logits, target, reduction="none")
        else:
            per_bit = (torch.sigmoid(logits) - target).pow(2)
        mask = self.mask(batch)
        return per_bit[mask].mean()

    def predict(self, logits: torch.Tensor) -> torch.Tensor:
        return (logits.squeeze(-1) > 0).long()

    def metrics(self) -> MetricCollection:
        # bit_acc counts every real bit; exact_acc counts sums with every bit right.
        return MetricCollection(
            {"bit_acc": BinaryAccuracy(), "exact_acc": MeanMetric()}, compute_groups=False
        )

    def update(self, metrics: MetricCollection, preds: torch.Tensor, batch: Batch) -> None:
        mask = self.mask(batch)
        right = (preds == batch["y"]) | ~mask
        metrics["bit_acc"].update(preds[mask], batch["y"][mask])
        metrics["exact_acc"].update(right.all(dim=1).float())

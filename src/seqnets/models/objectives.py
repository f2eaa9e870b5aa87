"""What a task asks of the network: where to read it, how to score it, what to measure.

The backbone and the training loop are shared; an objective is the only task-specific part of
the model. Batches are dicts with ``x`` (batch, steps, features), ``y`` and, for ragged
batches, ``lengths``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torchmetrics import MeanMetric, MeanSquaredError, MetricCollection
from torchmetrics.classification import BinaryAccuracy, MulticlassAccuracy

from seqnets.errors import check_choice, check_int

Batch = dict[str, torch.Tensor]
PAD = -1  # target value of padded steps, ignored by the bit metrics


class Objective:
    """What every objective has: a loss, a prediction, and the metrics it is scored by."""

    def update(self, metrics: MetricCollection, preds: torch.Tensor, batch: Batch) -> None:
        raise NotImplementedError


class Classification(Objective):
    """One label per sequence, read from the final state: MNIST rows, index memory."""

    readout = "last"
    # The module keeps test predictions for the confusion matrix and classification report.
    keeps_test_predictions = True

    def __init__(self, num_classes: int = 10, label_smoothing: float = 0.0) -> None:
        self.num_classes = check_int("task.objective.num_classes", num_classes, 2)
        self.num_outputs = self.num_classes
        self.label_smoothing = float(label_smoothing)

    def loss(self, logits: torch.Tensor, batch: Batch) -> torch.Tensor:
        return F.cross_entropy(logits, batch["y"], label_smoothing=self.label_smoothing)

    def predict(self, logits: torch.Tensor) -> torch.Tensor:
        return logits.argmax(dim=-1)

    def metrics(self, sync: bool = True) -> MetricCollection:
        """``sync=False`` for one process scoring whole sets alone (rank zero's analysis)."""
        # Arguments are not validated per step: the module builds them, and validation costs
        # a host sync and about as much time as a small model's step.
        return MetricCollection(
            {
                "acc": MulticlassAccuracy(
                    self.num_classes, average="micro", validate_args=False, sync_on_compute=sync
                )
            },
            compute_groups=False,
        )

    def update(self, metrics: MetricCollection, preds: torch.Tensor, batch: Batch) -> None:
        metrics["acc"].update(preds, batch["y"])


class BitSequence(Objective):
    """One bit per step, read at every step through a sigmoid: binary addition.

    ``loss="ce"`` is binary cross-entropy on the logit; ``loss="mse"`` is the squared error
    of the sigmoid output, as in report A's comparison.
    """

    readout = "every"
    keeps_test_predictions = False
    num_outputs = 1
    LOSSES = ("ce", "mse")

    def __init__(self, loss: str = "ce") -> None:
        self.loss_name = check_choice("task.loss", loss, self.LOSSES)

    @staticmethod
    def mask(batch: Batch) -> torch.Tensor | None:
        """True at real steps of a ragged batch; None when every step is real."""
        lengths = batch.get("lengths")
        if lengths is None:
            return None
        y = batch["y"]
        steps = torch.arange(y.shape[1], device=y.device)
        return steps[None, :] < lengths.to(y.device, non_blocking=True)[:, None]

    def loss(self, logits: torch.Tensor, batch: Batch) -> torch.Tensor:
        logits = logits.squeeze(-1)
        target = batch["y"].to(logits.dtype)
        if self.loss_name == "ce":
            per_bit = F.binary_cross_entropy_with_logits(logits, target, reduction="none")
        else:
            per_bit = (torch.sigmoid(logits) - target).pow(2)
        mask = self.mask(batch)
        if mask is None:
            return per_bit.mean()
        # Weighted, not indexed: boolean indexing would sync a GPU every step.
        return (per_bit * mask).sum() / mask.sum()

    def predict(self, logits: torch.Tensor) -> torch.Tensor:
        return (logits.squeeze(-1) > 0).long()

    def metrics(self, sync: bool = True) -> MetricCollection:
        """``sync=False`` for one process scoring whole sets alone (rank zero's analysis)."""
        # bit_acc counts every real bit (padding is marked -1 and ignored); exact_acc counts
        # sums with every bit right.
        return MetricCollection(
            {
                "bit_acc": BinaryAccuracy(
                    ignore_index=PAD, validate_args=False, sync_on_compute=sync
                ),
                "exact_acc": MeanMetric(nan_strategy="disable", sync_on_compute=sync),
            },
            compute_groups=False,
        )

    def update(self, metrics: MetricCollection, preds: torch.Tensor, batch: Batch) -> None:
        target, mask = batch["y"], self.mask(batch)
        right = preds == target
        if mask is not None:
            target = target.masked_fill(~mask, PAD)
            right |= ~mask
        metrics["bit_acc"].update(preds, target)
        metrics["exact_acc"].update(right.all(dim=1).float())


class Regression(Objective):
    """One real number per sequence, read from the final state, scored by squared error:
    the adding problem. ``predict`` is the number itself."""

    readout = "last"
    keeps_test_predictions = False
    num_outputs = 1

    def loss(self, logits: torch.Tensor, batch: Batch) -> torch.Tensor:
        return F.mse_loss(logits.squeeze(-1), batch["y"].to(logits.dtype))

    def predict(self, logits: torch.Tensor) -> torch.Tensor:
        return logits.squeeze(-1)

    def metrics(self, sync: bool = True) -> MetricCollection:
        """``sync=False`` for one process scoring whole sets alone (rank zero's analysis)."""
        return MetricCollection(
            {"mse": MeanSquaredError(sync_on_compute=sync)}, compute_groups=False
        )

    def update(self, metrics: MetricCollection, preds: torch.Tensor, batch: Batch) -> None:
        metrics["mse"].update(preds, batch["y"].to(preds.dtype))

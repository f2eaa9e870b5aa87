"""Callbacks that leave in the run directory the numbers every report figure is drawn from."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import lightning as L
import torch
from lightning.pytorch.loggers import TensorBoardLogger
from torchmetrics.functional.classification import (
    multiclass_confusion_matrix,
    multiclass_f1_score,
    multiclass_precision,
    multiclass_recall,
)

from seqnets import plots
from seqnets.evaluate import accuracy_by_length, predict_batch
from seqnets.models.objectives import Classification

log = logging.getLogger(__name__)


def first_of_type(items: list, kind: type) -> Any | None:
    """The first of ``items`` (callbacks, loggers) that is a ``kind``, or None."""
    return next((item for item in items if isinstance(item, kind)), None)


def _tensorboard(trainer: L.Trainer) -> Any | None:
    """The SummaryWriter of the run's TensorBoard logger, if it has one."""
    logger = first_of_type(trainer.loggers, TensorBoardLogger)
    return logger.experiment if logger is not None else None


class History(L.Callback):
    """Training loss at every step and every epoch's train/validation metrics, kept in memory
    for ``metrics.json`` (TensorBoard keeps them too, but the report should not need it)."""

    def __init__(self) -> None:
        self._steps: list[tuple[int, torch.Tensor]] = []
        self.epochs: list[dict[str, float]] = []

    @property
    def steps(self) -> list[tuple[int, float]]:
        """(global step, training loss) pairs."""
        return [(step, float(loss)) for step, loss in self._steps]

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, *args) -> None:
        loss = trainer.callback_metrics.get("train/loss_step")
        if loss is not None:
            # Kept as a tensor: reading its value here would stall a GPU every step.
            self._steps.append((trainer.global_step, loss.detach().clone()))

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        row: dict[str, float] = {"epoch": trainer.current_epoch}
        for key, value in trainer.callback_metrics.items():
            if key.startswith(("train/", "val/")) and not key.endswith("_step"):
                row[key.removesuffix("_epoch")] = float(value)
        self.epochs.append(row)


class TestAnalysis(L.Callback):
    """After testing: fixed sample predictions, the classification report and confusion
    matrix (classification tasks), and accuracy against sequence length (tasks that can make
    sequences of any length). Results go to ``self.results``, TensorBoard and ``figures/``."""

    def __init__(self, figures_dir: str = "figures") -> None:
        self.figures_dir = figures_dir
        self.results: dict[str, Any] = {}

    def on_test_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        dm = trainer.datamodule
        out = Path(trainer.default_root_dir) / self.figures_dir
        out.mkdir(parents=True, exist_ok=True)
        writer = _tensorboard(trainer)
        figures: dict[str, Any] = {}
        self.results = {}

        batch = dm.sample_batch()
        preds = predict_batch(pl_module, dm, batch)
        self.results["samples"] = samples = dm.describe(batch, preds)
        for row in samples:
            log.info("sample: %s", row.get("text", row))
        if writer is not None:
            writer.add_text("test/samples", "\n\n".join(str(r.get("text", r)) for r in samples))
        sample_figure = dm.sample_figure(batch, preds)
        if sample_figure is not None:
            figures["samples"] = sample_figure

        outputs = getattr(pl_module, "test_outputs", {})
        if isinstance(pl_module.objective, Classification) and outputs:
            self.results.update(self._classification(outputs, pl_module.objective.num_classes))
            figures["confusion_matrix"] = plots.confusion_matrix(
                torch.tensor(self.results["confusion_matrix"]),
                f"{dm.name}, {pl_module.backbone.describe()}: test confusion matrix",
            )

        if hasattr(dm, "eval_lengths"):
            rows = accuracy_by_length(pl_module, dm)
            self.results["by_length"] = rows
            trained = (getattr(dm, "min_len", None), getattr(dm, "max_len", None))
            figures["accuracy_vs_length"] = plots.length_curve(
                rows,
                f"{dm.name}, {pl_module.backbone.describe()}: accuracy against length",
                trained if None not in trained else None,
            )
            if writer is not None:
                for row in rows:
                    for metric, value in row.items():
                        if metric not in ("length", "samples"):
                            writer.add_scalar(f"length/{metric}", value, global_step=row["length"])

        for name, fig in figures.items():
            fig.savefig(out / f"{name}.png", dpi=120)
            if writer is not None:
                writer.add_figure(f"test/{name}", fig, global_step=trainer.global_step)
        if writer is not None:
            writer.flush()

    @staticmethod
    def _classification(outputs: dict[str, torch.Tensor], num_classes: int) -> dict[str, Any]:
        """Confusion matrix and a per-class precision/recall/F1/support report."""
        preds, target = outputs["preds"], outputs["targets"]
        args = {"preds": preds, "target": target, "num_classes": num_classes}
        per_class = {
            "precision": multiclass_precision(**args, average=None),
            "recall": multiclass_recall(**args, average=None),
            "f1": multiclass_f1_score(**args, average=None),
        }
        support = torch.bincount(target, minlength=num_classes)
        report: dict[str, Any] = {
            str(c): {k: float(v[c]) for k, v in per_class.items()} | {"support": int(support[c])}
            for c in range(num_classes)
        }
        report["accuracy"] = float((preds == target).float().mean())
        weights = {
            "macro": torch.full((num_classes,), 1.0 / num_classes),
            "weighted": support / support.sum(),
        }
        for average, w in weights.items():
            report[f"{average} avg"] = {k: float((v * w).sum()) for k, v in per_class.items()}
            report[f"{average} avg"]["support"] = int(support.sum())
        return {
            "confusion_matrix": multiclass_confusion_matrix(**args).tolist(),
            "classification_report": report,
        }

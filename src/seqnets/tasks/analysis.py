"""After testing, what a run shows of itself: fixed samples, the classification report and
confusion matrix, scores against sequence length, and what the trained network keeps in its
state (``Task.inside``: accuracy says whether a network solves a task, the inside analyses say
*how*). This module holds what the tasks' analyses share, ``analyse`` and the callback that
runs it after testing. Analyses return plain numbers (``None`` where undefined) so that they
go into ``metrics.json`` as strict JSON; per-step readouts of a bidirectional backbone would
look meaningful but are not, so those analyses return ``BIDIRECTIONAL_NOTE`` instead.
"""

from __future__ import annotations

import logging
import math
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import torch
from matplotlib.figure import Figure
from PIL import Image
from torchmetrics.functional.classification import (
    multiclass_confusion_matrix,
    multiclass_f1_score,
    multiclass_precision,
    multiclass_recall,
)

from seqnets import plots
from seqnets.callbacks import Analysis, tensorboard_writer
from seqnets.models.module import SequenceModule
from seqnets.models.objectives import Classification
from seqnets.scoring import accuracy_by_length, predict_batch
from seqnets.tasks import task_of_run
from seqnets.tasks.base import Task

log = logging.getLogger(__name__)

# Below this standard deviation a unit counts as constant: its correlation is undefined
# (None), not the float32 rounding noise of a saturated unit.
CONSTANT_STD = 1e-6
BIDIRECTIONAL_NOTE = (
    "bidirectional backbone: at every step the backward direction has already read the "
    "whole sequence, so a per-step readout is not the answer for a shorter sequence; "
    "per-step numbers are left out"
)


def fixed_generator(generator: torch.Generator | None) -> torch.Generator:
    """A fixed seed when none is given, so that an analysis repeats exactly."""
    return generator if generator is not None else torch.Generator().manual_seed(0)


def json_number(value: float | torch.Tensor) -> float | None:
    """A strict-JSON number: NaN and infinities become None."""
    value = float(value)
    return value if math.isfinite(value) else None


def analyse(
    module: SequenceModule, datamodule: Any, seed: int = 0, task: Task | None = None
) -> tuple[dict, dict[str, Figure]]:
    """What the task measures inside the network (``Task.inside``), with a fixed seeded
    generator so that two calls give the same numbers, at sizes that take seconds on two CPU
    cores. Returns (numbers for ``metrics.json``, figures keyed by a short name); ``task``
    defaults to the module's own (from the config it was trained with).

    Figures whose numbers are undefined (per-step readouts of a bidirectional backbone) are
    left out of the figures dict; their numbers carry a ``note`` instead.
    """
    task = task or task_of_run(module, datamodule)
    generator = torch.Generator().manual_seed(seed)
    numbers, figures = task.inside(module, datamodule, generator)
    return {"task": task.name, "model": module.backbone.describe(), "seed": seed} | numbers, figures


class TestAnalysis(Analysis):
    """After testing: fixed sample predictions, the classification report and confusion
    matrix (classification tasks), and accuracy against sequence length (tasks that can make
    sequences of any length). Results go to ``self.results``, TensorBoard and ``figures/``."""

    def __init__(self, figures_dir: str = "figures", inside: bool = True) -> None:
        self.figures_dir = figures_dir
        # "Inside the networks": what the trained network keeps in its state (``Task.inside``).
        self.inside = inside
        self.results: dict[str, Any] = {}

    def on_test_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if not trainer.is_global_zero:  # every rank holds the gathered predictions
            return
        dm = trainer.datamodule
        out = Path(trainer.default_root_dir) / self.figures_dir
        out.mkdir(parents=True, exist_ok=True)
        writer = tensorboard_writer(trainer)
        figures: dict[str, Any] = {}
        self.results = {}

        batch = dm.sample_batch()
        preds = predict_batch(pl_module, dm, batch)
        self.results["samples"] = samples = dm.describe(batch, preds)
        for row in samples:
            log.info("sample: %s", row.get("text", row))
        if writer is not None:
            writer.add_text("test/samples", "\n\n".join(str(r.get("text", r)) for r in samples))
        task = task_of_run(pl_module, dm)
        sample_figure = task.sample_figure(batch, preds)
        if sample_figure is not None:
            figures["samples"] = sample_figure

        outputs = getattr(pl_module, "test_outputs", {})
        if isinstance(pl_module.objective, Classification) and outputs:
            self.results.update(self._classification(outputs, pl_module.objective.num_classes))
            figures["confusion_matrix"] = plots.confusion_matrix(
                torch.tensor(self.results["confusion_matrix"]),
                f"{dm.name}, {pl_module.backbone.describe()}: test confusion matrix",
            )
            self.results["confused_pairs"] = pairs = confused_pairs(outputs)
            errors_figure = task.errors_figure(dm, pairs)
            if errors_figure is not None:
                figures["confused_pairs"] = errors_figure

        if hasattr(dm, "eval_lengths"):
            rows = accuracy_by_length(pl_module, dm)
            self.results["by_length"] = rows
            trained = (getattr(dm, "min_len", None), getattr(dm, "max_len", None))
            figures["accuracy_vs_length"] = plots.length_curve(
                rows,
                f"{dm.name}, {pl_module.backbone.describe()}: scores against length",
                trained if None not in trained else None,
            )
            if writer is not None:
                for row in rows:
                    for metric, value in row.items():
                        if metric not in ("length", "samples"):
                            writer.add_scalar(f"length/{metric}", value, global_step=row["length"])

        if self.inside:
            numbers, inside_figures = analyse(pl_module, dm, task=task)
            self.results["inside"] = numbers
            figures |= {f"inside_{name}": fig for name, fig in inside_figures.items()}

        for name, fig in figures.items():
            fig.savefig(out / f"{name}.png", dpi=120)
            if writer is not None:  # the picture just drawn (add_figure would draw it again)
                with Image.open(out / f"{name}.png") as image:
                    pixels = np.asarray(image.convert("RGB"))
                writer.add_image(
                    f"test/{name}", pixels, global_step=trainer.global_step, dataformats="HWC"
                )
        if writer is not None:
            writer.flush()

    @staticmethod
    def _classification(outputs: dict[str, torch.Tensor], num_classes: int) -> dict[str, Any]:
        """Confusion matrix and a per-class precision/recall/F1/support report."""
        preds, target = outputs["preds"], outputs["targets"]
        args = {"preds": preds, "target": target, "num_classes": num_classes}
        scores = {
            "precision": multiclass_precision,
            "recall": multiclass_recall,
            "f1": multiclass_f1_score,
        }
        per_class = {k: f(**args, average=None) for k, f in scores.items()}
        support = torch.bincount(target, minlength=num_classes)
        report: dict[str, Any] = {
            str(c): {k: float(v[c]) for k, v in per_class.items()} | {"support": int(support[c])}
            for c in range(num_classes)
        }
        report["accuracy"] = float((preds == target).float().mean())
        for average in ("macro", "weighted"):
            report[f"{average} avg"] = {
                k: float(f(**args, average=average)) for k, f in scores.items()
            } | {"support": int(support.sum())}
        return {
            "confusion_matrix": multiclass_confusion_matrix(**args).tolist(),
            "classification_report": report,
        }


def confused_pairs(
    outputs: dict[str, torch.Tensor], top: int = 3, examples: int = 8
) -> list[dict[str, Any]]:
    """The ``top`` most frequent (true, predicted) mistakes, each with the test-set positions
    of its first ``examples`` cases, so a report can show the images themselves."""
    preds, targets, index = outputs["preds"], outputs["targets"], outputs["index"]
    wrong = preds != targets
    pairs: dict[tuple[int, int], list[int]] = {}
    mistakes = zip(
        targets[wrong].tolist(), preds[wrong].tolist(), index[wrong].tolist(), strict=True
    )
    for t, p, i in mistakes:
        pairs.setdefault((t, p), []).append(i)
    ranked = sorted(pairs.items(), key=lambda item: (-len(item[1]), item[0]))[:top]
    return [
        {"true": t, "pred": p, "count": len(found), "test_indices": found[:examples]}
        for (t, p), found in ranked
    ]

"""MNIST read row by row (data: ``seqnets.data.mnist``).

Inside a trained network: the answer the trained readout gives after every row, so from which
row on the network knows the digit. A user's own input is image files of handwritten digits,
brought to MNIST's form first (``seqnets.data.images``) as MNIST itself was made.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from seqnets import plots
from seqnets.data.images import prepare, redraw_as_user, save_user_image
from seqnets.data.remember import NUM_DIGITS
from seqnets.scoring import forward_batch, predict_batch, readout_by_step
from seqnets.tasks.analysis import BIDIRECTIONAL_NOTE
from seqnets.tasks.base import Task
from seqnets.tasks.inside_figures import mnist_rows_figure, mnist_settle_figure

if TYPE_CHECKING:
    from matplotlib.figure import Figure

    from seqnets.models.module import SequenceModule


class MNIST(Task):
    name = "mnist"
    title = "MNIST read row by row"
    report_module = "seqnets.tasks.mnist.report"
    demo_module = "seqnets.tasks.mnist.demo"

    def predict(self, module: Any, datamodule: Any, value: Any) -> dict[str, Any]:
        return predict_images(module, datamodule, value)

    def markdown(self, result: dict[str, Any]) -> str:
        """A table of files, predicted digits and confidences, and the accuracy on the
        images whose file names give the true digit."""
        lines = ["| file | predicted | confidence | true |", "|---|---|---|---|"]
        for r in result["rows"]:
            if "error" in r:
                lines.append(f"| {r['file']} | error: {r['error']} | | |")
            else:
                true = "" if r["true"] is None else r["true"]
                lines.append(f"| {r['file']} | {r['pred']} | {r['confidence']:.1%} | {true} |")
        if result["accuracy"] is not None:
            n, accuracy = result["labelled"], result["accuracy"]
            lines.append(f"\naccuracy on {n} labelled images: {accuracy:.1%}")
        return "\n".join(lines) + "\n"

    def inside(
        self, module: SequenceModule, datamodule: Any, generator: torch.Generator
    ) -> tuple[dict[str, Any], dict[str, Figure]]:
        """Accuracy and confidence after each row, on the first 2,000 test images."""
        model = module.backbone.describe()
        figures: dict[str, Figure] = {}
        datamodule.setup()
        test = datamodule.splits["test"]
        rows = row_by_row(module, test["x"][:2000], test["y"][:2000], datamodule.normalize)
        if rows["note"] is None:
            figures["mnist_rows"] = mnist_rows_figure(rows, f"{model}: reading row by row")
            figures["mnist_settle"] = mnist_settle_figure(
                rows, f"{model}: row from which the answer stays right"
            )
        return {"rows": rows}, figures

    def sample_figure(self, batch: dict[str, torch.Tensor], preds: torch.Tensor) -> Figure:
        return plots.digit_grid(
            batch["x"], batch["y"].tolist(), preds.tolist(), "fixed test images"
        )

    def errors_figure(self, datamodule: Any, pairs: list[dict]) -> Figure | None:
        if not pairs:
            return None
        images = datamodule.splits["test"]["x"]
        return plots.mistakes_grid(
            [images[pair["test_indices"]] for pair in pairs],
            [f"true {p['true']} -> {p['pred']} ({p['count']}x)" for p in pairs],
        )

    def user_style_accuracy(
        self, module: Any, datamodule: Any, n: int, workdir: Path
    ) -> dict[str, Any]:
        """``python -m seqnets.evaluate user_style=N``: see :func:`user_style_accuracy`."""
        return user_style_accuracy(module, datamodule, n, workdir)

    def demo_score(self) -> str:
        return "test/acc"


# -- a user's own images -----------------------------------------------------------------------
def digit_probabilities(module: Any, datamodule: Any, images: torch.Tensor) -> torch.Tensor:
    """uint8 (n, 28, 28) images in MNIST's form -> (n, 10) probabilities of each digit, on
    the CPU (the images normalised as in training)."""
    if not len(images):
        return torch.empty(0, NUM_DIGITS)
    logits, _ = forward_batch(module, datamodule, {"x": images})
    return logits.softmax(-1).cpu()


def predict_images(module: Any, datamodule: Any, path: Any) -> dict[str, Any]:
    """Every image file at ``path`` (a file or a folder): the digit, its confidence, the true
    one when the file name starts with a digit, and the grid of images as the network saw
    them."""
    images, results = prepare(path)
    rows: list[dict[str, Any]] = []
    probs = digit_probabilities(module, datamodule, images)
    for result in results:
        row: dict[str, Any] = {"file": result.path.name, "true": result.label}
        if result.ok:
            p = probs[result.row]
            row |= {"pred": int(p.argmax()), "confidence": float(p.max())}
        else:
            row["error"] = result.error
        rows.append(row)
    done = [r for r in rows if "pred" in r]
    labelled = [r for r in done if r["true"] is not None]
    accuracy = sum(r["pred"] == r["true"] for r in labelled) / len(labelled) if labelled else None
    figure = None
    if done:
        figure = plots.digit_grid(
            images,
            [r["true"] for r in done],
            [r["pred"] for r in done],
            "own images as the network saw them"
            + (f": {accuracy:.0%} right" if accuracy is not None else ""),
            notes=[f"{r['confidence']:.0%} {r['file'][:12]}" for r in done],
        )
    return {"rows": rows, "accuracy": accuracy, "labelled": len(labelled), "figure": figure}


# -- inside: when the network knows the digit ----------------------------------------------
def row_by_row(
    module: SequenceModule,
    images: torch.Tensor,
    labels: torch.Tensor,
    normalize: Callable[[torch.Tensor], torch.Tensor] | None = None,
) -> dict:
    """The trained readout applied after every row r = 1..28: accuracy and mean confidence
    (softmax probability of the predicted class) per row, overall and per digit class, and
    the settle row, the first row from which the prediction stays correct to the end.

    ``images`` are uint8 (batch, 28, 28), normalised here by ``normalize`` (the
    datamodule's), or floats already normalised as the model saw them in training.
    Unidirectional backbones only: a bidirectional one gets ``note`` and None.
    """
    if module.backbone.bidirectional:
        return {"note": BIDIRECTIONAL_NOTE, "rows": None, "acc": None}
    if images.dtype == torch.uint8:
        if normalize is None:
            raise ValueError("uint8 images need normalize= (the datamodule's normalize)")
        images = normalize(images)
    labels = labels.cpu().long()
    probs = readout_by_step(module, images)[1].softmax(-1).cpu()
    confidence, pred = probs.max(-1)  # (batch, rows)
    correct = pred == labels[:, None]
    rows = correct.shape[1]
    # Correct from row r to the end: a reversed running product of the correct flags.
    stays = correct.flip(1).long().cumprod(1).flip(1)
    settled_for = stays.sum(1)  # rows at the end that are all correct
    settle_row = (rows - settled_for + 1).double()
    settled = settled_for > 0

    def summary(mask: torch.Tensor) -> dict:
        count = int(mask.sum())
        if count == 0:
            return {"n": 0} | dict.fromkeys(("acc", "confidence", "settle_row", "never_settled"))
        mean_settle = settle_row[mask & settled]
        return {
            "n": count,
            "acc": correct[mask].float().mean(0).tolist(),
            "confidence": confidence[mask].mean(0).tolist(),
            "settle_row": float(mean_settle.mean()) if len(mean_settle) else None,
            "never_settled": float((~settled[mask]).float().mean()),
        }

    overall = summary(torch.ones_like(labels, dtype=torch.bool))
    return {
        "note": None,
        "rows": list(range(1, rows + 1)),
        **overall,
        "final_acc": overall["acc"][-1],
        "per_class": {str(d): summary(labels == d) for d in range(NUM_DIGITS)},
    }


# -- evaluate user_style=N ---------------------------------------------------------------------
def user_style_accuracy(module: Any, datamodule: Any, n: int, workdir: Path) -> dict[str, Any]:
    """Accuracy on the first ``n`` test digits as they are, and redrawn as a user would supply
    them (100-300 px, off centre; JPG black on white, transparent PNG) and brought back through
    the own-handwriting pipeline: how much the pipeline costs a model."""
    digits, labels = datamodule.splits["test"]["x"][:n], datamodule.splits["test"]["y"][:n]
    original = predict_batch(module, datamodule, {"x": digits, "y": labels})
    result: dict[str, Any] = {"n": n, "original_acc": float((original == labels).float().mean())}
    rng = np.random.default_rng(0)
    sheets = [redraw_as_user(d, rng) for d in digits]
    for fmt in ("jpg", "png"):
        folder = workdir / fmt
        folder.mkdir(parents=True, exist_ok=True)
        files = [save_user_image(s, fmt, folder / f"{i:05d}") for i, s in enumerate(sheets)]
        images, results = prepare(files)
        if not all(r.ok for r in results):
            raise RuntimeError(f"redrawn digits failed: {[r.error for r in results if not r.ok]}")
        preds = predict_batch(module, datamodule, {"x": images, "y": labels})
        result[f"{fmt}_acc"] = float((preds == labels).float().mean())
    return result

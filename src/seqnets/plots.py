"""Figures shared by the training callbacks and the report; all from plain numbers.

Built on ``matplotlib.figure.Figure`` (no pyplot), so plotting needs no display and holds no
global state between the jobs of a multirun.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from matplotlib.figure import Figure


def length_curve(
    rows: Sequence[dict], title: str, train_lengths: tuple[int, int] | None = None
) -> Figure:
    """Accuracy against sequence length, one line per metric, training lengths shaded."""
    fig = Figure(figsize=(7, 4), layout="constrained")
    ax = fig.add_subplot()
    lengths = [r["length"] for r in rows]
    for metric in [k for k in rows[0] if k not in ("length", "samples")]:
        ax.plot(lengths, [r[metric] for r in rows], marker=".", label=metric)
    if train_lengths is not None:
        ax.axvspan(train_lengths[0] - 0.5, train_lengths[1] + 0.5, alpha=0.15, label="trained")
    ax.set(xlabel="sequence length", ylabel="accuracy", ylim=(-0.02, 1.02), title=title)
    ax.grid(alpha=0.3)
    ax.legend()
    return fig


def confusion_matrix(matrix: torch.Tensor, title: str) -> Figure:
    """A count-annotated confusion matrix, rows true, columns predicted."""
    fig = Figure(figsize=(6, 5.5), layout="constrained")
    ax = fig.add_subplot()
    image = ax.imshow(matrix, cmap="Blues")
    fig.colorbar(image, ax=ax, shrink=0.8)
    n = matrix.shape[0]
    threshold = matrix.max().item() / 2
    for i in range(n):
        for j in range(n):
            count = int(matrix[i, j])
            ax.text(
                j,
                i,
                count,
                ha="center",
                va="center",
                fontsize=7,
                color="white" if count > threshold else "black",
            )
    ax.set(xticks=range(n), yticks=range(n), xlabel="predicted", ylabel="true", title=title)
    return fig


def digit_grid(
    images: torch.Tensor, true: Sequence[int], pred: Sequence[int], title: str
) -> Figure:
    """Images in a row with their true and predicted labels; wrong ones in red."""
    n = len(true)
    fig = Figure(figsize=(1.3 * n, 1.8), layout="constrained")
    fig.suptitle(title)
    for i, ax in enumerate(fig.subplots(1, n, squeeze=False)[0]):
        ax.imshow(images[i], cmap="gray")
        ax.set_axis_off()
        ax.set_title(
            f"true {true[i]}\npred {pred[i]}",
            fontsize=8,
            color="black" if true[i] == pred[i] else "red",
        )
    return fig

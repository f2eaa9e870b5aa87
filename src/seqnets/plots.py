"""Figures shared by the test analysis, the tasks and the report; all from plain numbers.

Built on ``matplotlib.figure.Figure`` (no pyplot), so plotting needs no display and holds no
global state between the jobs of a multirun.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator


def length_curve(
    rows: Sequence[dict], title: str, train_lengths: tuple[int, int] | None = None
) -> Figure:
    """The objective's metrics against sequence length, one line per metric, training lengths
    shaded. Accuracies on a fixed 0..1 scale; other scores (an error) on their own."""
    fig = Figure(figsize=(7, 4), layout="constrained")
    ax = fig.add_subplot()
    lengths = [r["length"] for r in rows]
    metrics = [k for k in rows[0] if k not in ("length", "samples")]
    for metric in metrics:
        ax.plot(lengths, [r[metric] for r in rows], marker=".", label=metric)
    if train_lengths is not None:
        ax.axvspan(train_lengths[0] - 0.5, train_lengths[1] + 0.5, alpha=0.15, label="trained")
    accuracies = all(m.endswith("acc") for m in metrics)
    ax.set(xlabel="sequence length", ylabel="accuracy" if accuracies else ", ".join(metrics))
    ax.set(title=title)
    if accuracies:
        ax.set_ylim(-0.02, 1.02)
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
    images: torch.Tensor,
    true: Sequence[int | None],
    pred: Sequence[int],
    title: str,
    notes: Sequence[str] | None = None,
    columns: int = 10,
) -> Figure:
    """Images with their true (when known) and predicted labels, ``columns`` to a row; wrong
    ones in red. ``notes`` add a line under each (e.g. a confidence or a file name)."""
    n = len(pred)
    rows = max(1, -(-n // columns))
    width = min(n, columns)
    fig = Figure(figsize=(1.3 * width + 0.2, 1.9 * rows + 0.3), layout="constrained")
    fig.suptitle(title)
    for i, ax in enumerate(fig.subplots(rows, width, squeeze=False).flatten()):
        ax.set_axis_off()
        if i >= n:
            continue
        ax.imshow(images[i], cmap="gray")
        label = f"pred {pred[i]}" if true[i] is None else f"true {true[i]}\npred {pred[i]}"
        if notes is not None:
            label += f"\n{notes[i]}"
        wrong = true[i] is not None and true[i] != pred[i]
        ax.set_title(label, fontsize=8, color="red" if wrong else "black")
    return fig


def mistakes_grid(groups: Sequence[torch.Tensor], titles: Sequence[str]) -> Figure:
    """One row of images per kind of mistake (e.g. every "4 read as 9"), titled."""
    columns = max(len(g) for g in groups)
    fig = Figure(figsize=(1.1 * columns, 1.3 * len(groups) + 0.3), layout="constrained")
    axes = fig.subplots(len(groups), columns, squeeze=False)
    for row, (images, title) in enumerate(zip(groups, titles, strict=True)):
        axes[row][0].set_title(title, fontsize=9, loc="left")
        for col, ax in enumerate(axes[row]):
            ax.set_axis_off()
            if col < len(images):
                ax.imshow(images[col], cmap="gray")
    return fig


# -- the report's figures, drawn from many runs' numbers -----------------------------------------
def _smooth(values: Sequence[float], weight: float = 0.98) -> list[float]:
    """Exponential moving average, as TensorBoard's smoothing: per-step losses are noisy."""
    out, level = [], None
    for v in values:
        level = v if level is None else weight * level + (1 - weight) * v
        out.append(level)
    return out


def _mean_series(series: Sequence[Sequence[float]]) -> list[float]:
    """Element-wise mean of equally long series (the shortest length)."""
    n = min(len(s) for s in series)
    return [sum(s[i] for s in series) / len(series) for i in range(n)]


def training_curves(runs: dict[str, Sequence[dict]], title: str) -> Figure:
    """Training loss per iteration (smoothed), and accuracy and loss per epoch for training
    and validation, one colour per run name (mean over its seeds): six small panels, so that
    nine runs stay readable."""
    fig = Figure(figsize=(13, 7), layout="constrained")
    fig.suptitle(title)
    axes = fig.subplots(2, 3)
    for i, (name, group) in enumerate(runs.items()):
        colour = f"C{i % 10}"
        steps = [
            [loss if loss is not None else float("nan") for _, loss in r["train_loss_steps"]]
            for r in group
        ]
        if steps and all(steps):
            axes[0][0].plot(_smooth(_mean_series(steps)), color=colour, label=name, lw=1)
        history = [r["history"] for r in group if r.get("history")]
        if not history:
            continue
        first = history[0][0]
        acc = "acc" if "train/acc" in first else "bit_acc"
        for ax, key in (
            (axes[0][1], f"train/{acc}"),
            (axes[0][2], f"val/{acc}"),
            (axes[1][1], "train/loss"),
            (axes[1][2], "val/loss"),
        ):
            curves = [[row.get(key, float("nan")) for row in h] for h in history]
            mean = _mean_series(curves)
            ax.plot(range(1, len(mean) + 1), mean, marker=".", color=colour, label=name, lw=1)
    axes[0][0].set(title="training loss per iteration (smoothed)", xlabel="step", yscale="log")
    for ax, what in (
        (axes[0][1], "training accuracy"),
        (axes[0][2], "validation accuracy"),
        (axes[1][1], "training loss"),
        (axes[1][2], "validation loss"),
    ):
        ax.set(title=f"{what} per epoch", xlabel="epoch")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(alpha=0.3)
    axes[0][0].grid(alpha=0.3)
    handles, labels = axes[0][0].get_legend_handles_labels()
    if not handles:
        handles, labels = axes[0][1].get_legend_handles_labels()
    axes[1][0].set_axis_off()
    axes[1][0].legend(handles, labels, loc="center", fontsize=9)
    return fig


def accuracy_by_length_lines(
    series: dict[str, Sequence[tuple[int, float]]],
    title: str,
    trained: tuple[int, int] | None = None,
    metric: str = "accuracy",
) -> Figure:
    """Accuracy (or another ``metric``, on its own scale) against sequence length, one line
    per run, training lengths shaded."""
    fig = Figure(figsize=(8, 4.5), layout="constrained")
    ax = fig.add_subplot()
    for i, (name, curve) in enumerate(series.items()):
        ax.plot(
            [n for n, _ in curve],
            [v for _, v in curve],
            marker=".",
            color=f"C{i % 10}",
            linestyle="-" if i < 10 else "--",
            label=name,
        )
    if trained is not None:
        ax.axvspan(trained[0] - 0.5, trained[1] + 0.5, alpha=0.12, color="grey", label="trained")
    ax.set(xlabel="sequence length", ylabel=metric, title=title)
    if metric.endswith("acc") or metric == "accuracy":
        ax.set_ylim(-0.02, 1.02)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, ncol=2)
    return fig


def bit_exact_by_length(
    series: dict[str, tuple[Sequence[tuple[int, float]], Sequence[tuple[int, float]]]],
    markers: dict[str, float],
    title: str,
    at: int = 20,
) -> Figure:
    """Bit accuracy (left) and exact accuracy (right) against length, one line per run;
    a cross marks a reference figure at length ``at`` in the run's colour."""
    fig = Figure(figsize=(13, 5), layout="constrained")
    fig.suptitle(title)
    left, right = fig.subplots(1, 2)
    for i, (name, (bit, exact)) in enumerate(series.items()):
        colour, style = f"C{i % 10}", "-" if i < 10 else "--"
        left.plot(
            [n for n, _ in bit], [v for _, v in bit], color=colour, ls=style, lw=1.2, label=name
        )
        right.plot(
            [n for n, _ in exact], [v for _, v in exact], color=colour, ls=style, lw=1.2, label=name
        )
        if name in markers:
            left.plot([at], [markers[name]], marker="x", markersize=10, mew=2, color=colour)
    left.set(
        xlabel="length (bits of the sum)",
        ylabel="bit accuracy",
        ylim=(0.4, 1.01),
        title="bit accuracy",
    )
    right.set(
        xlabel="length (bits of the sum)",
        ylabel="exact accuracy",
        ylim=(-0.02, 1.02),
        title="every bit right",
    )
    for ax in (left, right):
        ax.grid(alpha=0.3)
    right.legend(fontsize=8)
    return fig

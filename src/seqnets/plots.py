"""Figures shared by the training callbacks and the report; all from plain numbers.

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


# -- inside the networks (numbers from Task.inside) -------------------------------------
def carry_units_figure(correlation: dict, title: str) -> Figure:
    """|r| of every state unit with the true carry, h and c units in two colours, the best
    unit marked: one tall bar among short ones means one unit simply is the carry."""
    labels = list(correlation["r"])
    values = [abs(v) if v is not None else 0.0 for v in correlation["r"].values()]
    fig = Figure(figsize=(min(14.0, 4.0 + 0.14 * len(labels)), 3.8), layout="constrained")
    ax = fig.add_subplot()
    colours = ["C1" if label.startswith("c") else "C0" for label in labels]
    bars = ax.bar(range(len(labels)), values, color=colours, width=0.8)
    best = correlation.get("best_unit")
    if best in labels:
        index = labels.index(best)
        bars[index].set_edgecolor("black")
        bars[index].set_linewidth(1.5)
        ax.annotate(
            f"{best}: r = {correlation['best_r']:+.3f}",
            (index, values[index]),
            xytext=(0, 4),
            textcoords="offset points",
            ha="center",
            fontsize=8,
        )
    # Every label while they fit; a sparse axis for wide states.
    step = max(1, len(labels) // 32)
    ax.set_xticks(range(0, len(labels), step), labels[::step], rotation=90, fontsize=7)
    for kind, colour in (("h (hidden)", "C0"), ("c (cell)", "C1")):
        if any(c == colour for c in colours):
            ax.bar([0], [0], color=colour, label=kind)
    ax.set(ylabel="|Pearson r| with carry", ylim=(0, 1.1), title=title)
    ax.grid(axis="y", alpha=0.3)
    ax.legend(loc="upper right", fontsize=8)
    return fig


def carry_trace_figure(trace: dict, title: str) -> Figure:
    """One sum as the network reads it: the carry unit's value against the true carry out of
    each position, and the bits underneath (a, b, the true sum, the network's sum with
    wrong bits in red)."""
    steps = list(range(len(trace["value"])))
    fig = Figure(figsize=(10, 4.8), layout="constrained")
    top, bottom = fig.subplots(2, 1, sharex=True, height_ratios=[3, 1.4])
    r = trace.get("r")
    top.step(steps, trace["value"], where="mid", color="C0", label=f"unit {trace['unit']}")
    top.set_ylabel(f"unit {trace['unit']}", color="C0")
    twin = top.twinx()
    twin.step(steps, trace["carry"], where="mid", color="C3", linestyle="--", label="true carry")
    twin.set(ylim=(-0.1, 1.1), yticks=[0, 1])
    twin.set_ylabel("true carry out", color="C3")
    top.grid(alpha=0.3)
    top.set_title(title + (f" (r = {r:+.3f})" if r is not None else ""))
    handles = top.get_legend_handles_labels()[0] + twin.get_legend_handles_labels()[0]
    top.legend(handles=handles, loc="upper left", fontsize=8)
    rows = [("a", trace["a"]), ("b", trace["b"]), ("a+b", trace["sum"]), ("net", trace["pred"])]
    bottom.imshow([bits for _, bits in rows], cmap="Blues", vmin=-0.5, vmax=2.0, aspect="auto")
    for i, (_, bits) in enumerate(rows):
        for t, bit in enumerate(bits):
            wrong = i == 3 and bit != trace["sum"][t]
            bottom.text(
                t,
                i,
                bit,
                ha="center",
                va="center",
                fontsize=6,
                color="red" if wrong else "black",
                fontweight="bold" if wrong else "normal",
            )
    bottom.set_yticks(range(len(rows)), [name for name, _ in rows], fontsize=7)
    bottom.set_xlabel("bit position (least significant first)")
    return fig


def remember_pca_figure(states: dict, title: str) -> Figure:
    """The final states in their first two principal components, one colour per digit the
    network must report: ten clean clusters mean the state holds that digit and little else."""
    fig = Figure(figsize=(6.5, 5), layout="constrained")
    ax = fig.add_subplot()
    points = torch.tensor(states["points"]).reshape(-1, 2)
    digits = torch.tensor(states["digit"])
    for d in range(10):
        mine = points[digits == d]
        ax.scatter(mine[:, 0], mine[:, 1], s=5, alpha=0.6, color=f"C{d}", label=str(d))
    ratio = [v if v is not None else 0.0 for v in states["explained_variance_ratio"]]
    ax.set(
        xlabel=f"PC1 ({100 * ratio[0]:.0f}% of variance)",
        ylabel=f"PC2 ({100 * ratio[1]:.0f}% of variance)",
        title=title,
    )
    ax.legend(
        title="digit", loc="center left", bbox_to_anchor=(1.0, 0.5), markerscale=3, fontsize=8
    )
    ax.grid(alpha=0.3)
    return fig


def remember_hold_figure(hold: dict, title: str) -> Figure:
    """Accuracy on the digit at K when the sequence is cut after step t: the trained readout,
    and a linear probe that shows whether the digit is still in the state at all."""
    fig = Figure(figsize=(7, 4), layout="constrained")
    ax = fig.add_subplot()
    ax.plot(hold["steps"], hold["readout_acc"], marker=".", label="trained readout")
    if hold.get("probe_acc"):
        ax.plot(hold["steps"], hold["probe_acc"], marker=".", linestyle="--", label="linear probe")
    ax.axhline(0.1, color="grey", linestyle=":", label="chance")
    if hold.get("train_lengths"):
        low, high = hold["train_lengths"]
        ax.axvspan(low - 0.5, high + 0.5, alpha=0.15, label="trained lengths")
    ax.set(
        xlabel="step t (sequence cut after t digits)",
        ylabel=f"accuracy on digit at K={hold['K']}",
        ylim=(-0.02, 1.02),
        title=title,
    )
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return fig


def mnist_rows_figure(rows: dict, title: str) -> Figure:
    """Accuracy and mean confidence of the readout after each row, one line per digit and
    all digits in black: the row where a line climbs is where that digit becomes known."""
    fig = Figure(figsize=(11, 4), layout="constrained")
    fig.suptitle(title)
    axes = fig.subplots(1, 2, sharex=True)
    for ax, key, label in ((axes[0], "acc", "accuracy"), (axes[1], "confidence", "confidence")):
        for d, part in rows["per_class"].items():
            if part[key] is not None:
                ax.plot(rows["rows"], part[key], color=f"C{d}", linewidth=1, label=d)
        ax.plot(rows["rows"], rows[key], color="black", linewidth=2.2, label="all")
        ax.set(xlabel="rows read", ylabel=f"mean {label}", ylim=(-0.02, 1.02))
        ax.grid(alpha=0.3)
    axes[1].legend(title="digit", loc="center left", bbox_to_anchor=(1.0, 0.5), fontsize=8)
    return fig


def mnist_settle_figure(rows: dict, title: str) -> Figure:
    """Mean row from which each digit's answer stays right, and how many never settle."""
    fig = Figure(figsize=(6.5, 3.8), layout="constrained")
    ax = fig.add_subplot()
    digits = list(rows["per_class"])  # "0".."9": JSON keys
    means = [rows["per_class"][d]["settle_row"] or 0.0 for d in digits]
    positions = [int(d) for d in digits]
    bars = ax.bar(positions, means, color=[f"C{d}" for d in digits])
    ax.set_xticks(positions)
    for bar, d in zip(bars, digits, strict=True):
        never = rows["per_class"][d].get("never_settled")
        if never is not None:
            ax.annotate(
                f"{100 * never:.0f}%",
                (bar.get_x() + bar.get_width() / 2, bar.get_height()),
                xytext=(0, 2),
                textcoords="offset points",
                ha="center",
                fontsize=7,
            )
    if rows.get("settle_row") is not None:
        ax.axhline(rows["settle_row"], color="black", linestyle="--", label="all digits")
        ax.legend(fontsize=8, loc="lower right")
    ax.set(
        xlabel="digit (label above bar: % that never settle)",
        ylabel="mean settle row",
        ylim=(0, len(rows["rows"]) + 2),
        title=title,
    )
    ax.grid(axis="y", alpha=0.3)
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

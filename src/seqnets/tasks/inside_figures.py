"""The figures of "inside the networks", each drawn by its task (``Task.inside``) from the
numbers its analysis measured: the carry units of a binary adder, what a remember network
holds, how an MNIST reader settles row by row. Like :mod:`seqnets.plots`, plain
``matplotlib.figure.Figure`` objects, no pyplot.
"""

from __future__ import annotations

import torch
from matplotlib.figure import Figure


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

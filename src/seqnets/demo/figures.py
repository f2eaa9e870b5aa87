"""The demo's figures: one answer, step by step, drawn from the numbers of
:mod:`seqnets.demo.answers` (``matplotlib.figure.Figure``, no pyplot, as in
:mod:`seqnets.plots`). Small and at a low resolution: they are redrawn for every answer, and
drawing them is most of the time an answer takes."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from matplotlib.figure import Figure

DPI = 80
RIGHT, WRONG = "#2a7ab0", "#d62728"


def mnist_rows(image: np.ndarray, rows: Sequence[Sequence[float]], answer: int) -> Figure:
    """The image the network reads beside what it would answer after each row: the row read
    (rows below it not yet seen), the ten probabilities, and the answer with its confidence.
    Every panel shares the rows, so a person sees the answer change as the digit is drawn in
    row by row."""
    probs = np.asarray(rows)
    count = probs.shape[0]
    fig = Figure(figsize=(7.2, 4.4), dpi=DPI, layout="constrained")
    ax_image, ax_probs, ax_conf = fig.subplots(
        1, 3, sharey=True, gridspec_kw={"width_ratios": [28, 10, 12]}
    )
    ax_image.imshow(image, cmap="gray", vmin=0, vmax=255, extent=(-0.5, 27.5, count + 0.5, 0.5))
    ax_image.set(title="rows as read", ylabel="row", xticks=[])
    ax_probs.imshow(
        probs, cmap="Blues", vmin=0, vmax=1, aspect="auto", extent=(-0.5, 9.5, count + 0.5, 0.5)
    )
    ax_probs.set(title="P(digit) after row", xticks=range(10))
    answers = probs.argmax(1)
    confidence = probs.max(1)
    rows_axis = np.arange(1, count + 1)
    colours = [RIGHT if a == answer else "#999999" for a in answers]
    ax_conf.barh(rows_axis, confidence, color=colours, height=0.8)
    for row, (digit, p) in enumerate(zip(answers, confidence, strict=True), start=1):
        ax_conf.text(min(p, 0.82) + 0.03, row, str(digit), va="center", fontsize=7)
    ax_conf.set(title="answer, confidence", xlim=(0, 1), ylim=(count + 0.5, 0.5))
    return fig


def sum_bits(result: dict) -> Figure:
    """A sum as the network writes it, least significant bit first (the order it reads):
    each bit's probability of being 1 against the true bit, wrong bits in red; below, the
    carry unit's value at each step beside the true carry out of that position."""
    prob = np.asarray(result["prob"])
    true = np.asarray(result["true_lsb"])
    wrong = np.asarray(result["pred_lsb"]) != true
    steps = np.arange(len(prob))
    carry_shown = result["unit_values"] is not None
    fig = Figure(figsize=(8, 4.2 if carry_shown else 2.6), dpi=DPI, layout="constrained")
    axes = fig.subplots(2 if carry_shown else 1, 1, sharex=True, squeeze=False)[:, 0]
    ax = axes[0]
    ax.bar(steps, prob, color=np.where(wrong, WRONG, RIGHT), width=0.8, label="P(bit = 1)")
    ax.scatter(steps, true, marker="_", s=80, color="black", label="true bit", zorder=3)
    if wrong.any():
        ax.scatter(steps[wrong], true[wrong], marker="x", color=WRONG, label="wrong", zorder=4)
    ax.set(ylim=(-0.08, 1.08), ylabel="P(bit = 1)")
    ax.set_title(f"sum bits, least significant first: {int(wrong.sum())} wrong of {len(prob)}")
    ax.legend(loc="upper right", fontsize=7, ncols=3)
    if carry_shown:
        ax = axes[1]
        ax.step(steps, result["carry"], where="mid", color="black", label="true carry")
        ax.plot(steps, result["unit_values"], marker=".", color=RIGHT, label=result["unit"])
        ax.set(ylabel="state", title=f"carry unit {result['unit']} at each step")
        ax.legend(loc="upper right", fontsize=7, ncols=2)
    axes[-1].set_xlabel("step (bit position)")
    return fig


def remember_steps(result: dict) -> Figure:
    """Belief in each digit after every digit read (the answer had the list ended there),
    the digit at index K outlined: a network that holds it keeps its column dark to the
    end, whatever comes after."""
    probs = np.asarray(result["steps"]).T  # (10 digits, steps)
    sequence, k = result["sequence"], result["K"]
    steps = len(sequence)
    fig = Figure(figsize=(max(4.5, min(12, 1.5 + 0.32 * steps)), 3.6), dpi=DPI)
    fig.set_layout_engine("constrained")
    ax = fig.add_subplot()
    image = ax.imshow(probs, cmap="Blues", vmin=0, vmax=1, aspect="auto", origin="lower")
    fig.colorbar(image, ax=ax, label="P(answer)", shrink=0.9)
    ax.add_patch(_outline(k - 1, result["true"]))
    ticks = range(steps) if steps <= 40 else range(0, steps, max(1, steps // 20))
    ax.set_xticks(list(ticks), [str(sequence[t]) for t in ticks])
    ax.set(
        yticks=range(10),
        xlabel="digit read (step by step)",
        ylabel="answer",
        title=f"belief after each step; the digit at index K={k} is {result['true']}",
    )
    return fig


def _outline(column: int, digit: int):
    from matplotlib.patches import Rectangle

    return Rectangle((column - 0.5, digit - 0.5), 1, 1, fill=False, edgecolor=WRONG, lw=2)

"""The demo's figures: one answer, step by step, drawn from the numbers of
:mod:`seqnets.demo.answers` (``matplotlib.figure.Figure``, no pyplot, as in
:mod:`seqnets.plots`). Small and at a low resolution: they are redrawn for every answer, and
drawing them is most of the time an answer takes."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from matplotlib import colormaps
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator
from PIL import Image, ImageDraw, ImageFont

DPI = 80
RIGHT, WRONG = "#2a7ab0", "#d62728"


def mnist_rows(image: np.ndarray, rows: Sequence[Sequence[float]], answer: int) -> Image.Image:
    """The image the network reads beside what it would answer after each row: the row read,
    the ten probabilities after it (a heat map), and the answer with its confidence (a bar,
    blue where it is the final answer). Every panel shares the rows, so a person sees the
    answer change as the digit is drawn in row by row.

    Drawn with PIL, not matplotlib: this picture comes with every drawing, and matplotlib
    takes most of the half second an answer may take to draw it."""
    probs = np.asarray(rows, dtype=np.float32)
    count = probs.shape[0]
    cell, top, left, gap = 10, 26, 34, 16
    heat_w, bar_w = 18, 150
    heat_x = left + 28 * cell + gap
    bar_x = heat_x + 10 * heat_w + gap
    width, height = bar_x + bar_w + 30, top + count * cell + 24
    canvas = Image.new("RGB", (width, height), "white")
    ink = Image.fromarray(np.asarray(image, dtype=np.uint8))
    ink = ink.resize((28 * cell, count * cell), Image.NEAREST)
    canvas.paste(ink.convert("RGB"), (left, top))
    heat = (colormaps["Blues"](probs)[..., :3] * 255).astype(np.uint8)
    heat = Image.fromarray(heat).resize((10 * heat_w, count * cell), Image.NEAREST)
    canvas.paste(heat, (heat_x, top))
    draw = ImageDraw.Draw(canvas)
    font = ImageFont.load_default(size=11)
    draw.text((left, 6), "rows as read", fill="black", font=font)
    draw.text((heat_x, 6), "P(digit) after the row", fill="black", font=font)
    draw.text((bar_x, 6), "answer, confidence", fill="black", font=font)
    for row in range(count):
        y = top + row * cell
        if (row + 1) % 5 == 0 or row == 0:
            draw.text((4, y - 2), f"{row + 1:>2}", fill="black", font=font)
        digit, p = int(probs[row].argmax()), float(probs[row].max())
        colour = RIGHT if digit == answer else "#999999"
        draw.rectangle((bar_x, y + 1, bar_x + max(1, round(p * bar_w)), y + cell - 2), fill=colour)
        draw.text((bar_x + round(p * bar_w) + 4, y - 2), str(digit), fill="black", font=font)
    for digit in range(10):
        x = heat_x + digit * heat_w + heat_w // 2 - 3
        draw.text((x, top + count * cell + 4), str(digit), fill="black", font=font)
    draw.text((bar_x, top + count * cell + 4), "0", fill="black", font=font)
    draw.text((bar_x + bar_w - 6, top + count * cell + 4), "1", fill="black", font=font)
    return canvas


def sum_bits(result: dict) -> Figure:
    """A sum as the network writes it, least significant bit first (the order it reads):
    each bit's probability of being 1 against the true bit, wrong bits in red; below, the
    carry unit's value at each step beside the true carry out of that position."""
    prob = np.asarray(result["prob"])
    true = np.asarray(result["true_lsb"])
    wrong = np.asarray(result["pred_lsb"]) != true
    steps = np.arange(len(prob))
    carry_shown = result["unit_values"] is not None
    fig = Figure(figsize=(8, 4.4 if carry_shown else 2.6), dpi=DPI)
    fig.subplots_adjust(left=0.08, right=0.98, top=0.92, bottom=0.12, hspace=0.45)
    axes = fig.subplots(2 if carry_shown else 1, 1, sharex=True, squeeze=False)[:, 0]
    ax = axes[0]
    # One collection of lines, not one rectangle per bit: a 1,000-bit sum draws as fast.
    lw = max(0.5, min(6.0, 400 / len(prob)))
    ax.vlines(steps, 0, prob, colors=np.where(wrong, WRONG, RIGHT), lw=lw, label="P(bit = 1)")
    ax.plot(steps, true, ls="none", marker="_", color="black", label="true bit", zorder=3)
    if wrong.any():
        ax.plot(steps[wrong], true[wrong], "x", color=WRONG, label="wrong", zorder=4)
    ax.set(ylim=(-0.08, 1.3), ylabel="P(bit = 1)", yticks=[0, 0.5, 1])
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_title(f"sum bits, least significant first: {int(wrong.sum())} wrong of {len(prob)}")
    ax.legend(loc="upper right", fontsize=7, ncols=3)
    if carry_shown:
        ax = axes[1]
        ax.step(steps, result["carry"], where="mid", color="black", label="true carry")
        ax.plot(steps, result["unit_values"], color=RIGHT, label=result["unit"])
        ax.set(ylabel="state", title=f"carry unit {result['unit']} at each step")
        ax.set_ylim(min(-1.1, *result["unit_values"]), max(1.5, *result["unit_values"]))
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
    fig = Figure(figsize=(max(5.0, min(12, 1.5 + 0.32 * steps)), 3.6), dpi=DPI)
    fig.subplots_adjust(left=0.1, right=0.86, top=0.9, bottom=0.14)
    ax = fig.add_subplot()
    image = ax.imshow(probs, cmap="Blues", vmin=0, vmax=1, aspect="auto", origin="lower")
    fig.colorbar(image, ax=ax, label="P(answer)", fraction=0.05, pad=0.02)
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

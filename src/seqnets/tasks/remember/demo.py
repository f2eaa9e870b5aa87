"""Remember's tab on the demo page: a digit list typed, the digit at index K as the network
answers it, and its belief in each digit after every digit read."""

from __future__ import annotations

import re
from typing import Any

import numpy as np
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle

from seqnets.data.remember import encode_digits
from seqnets.errors import ConfigError
from seqnets.scoring import readout_by_step
from seqnets.tasks.base import DemoAnswer, DemoTab

DPI = 80
MARK = "#d62728"

TAB = DemoTab(
    title="Remember the digit at index K",
    prompt="a list of digits 0-9, e.g. 6,8,0,2,8,7 or 680287",
    example="6,8,0,2,8,7",
    steps_label="digit by digit: the network's belief after each digit read",
)


def digit_list(text: str) -> str:
    """What a person types (``6 8 0 2``, ``[6, 8, 0]``, ``6802``) -> the form ``predict``
    parses (``6,8,0,2`` or ``6802``)."""
    tokens = re.findall(r"[^,\s\[\]]+", str(text))
    return ",".join(tokens) if len(tokens) > 1 else (tokens[0] if tokens else "")


def remember(module: Any, datamodule: Any, text: str, max_len: int) -> dict:
    """The digit at index K of a digit list as the network answers it, the true one, and its
    belief in each digit after every step (the answer had the list ended there)."""
    from seqnets.tasks.remember import predict_digits

    value = digit_list(text)
    count = len(value.split(",")) if "," in value else len(value)
    if count > max_len:
        raise ConfigError(
            f"{value[:40]!r}... is not allowed: it has {count} digits, more than this page's "
            f"cap of {max_len} (max_input)"
        )
    (row,) = predict_digits(module, datamodule, value)["rows"]
    if "error" in row:
        raise ConfigError(row["error"])
    steps = None
    if not module.backbone.bidirectional:
        x = encode_digits([row["sequence"]])["x"]
        steps = readout_by_step(module, x)[1].softmax(-1)[0].cpu().tolist()
    probs = steps[-1] if steps else None
    return {**row, "steps": steps, "confidence": probs[row["pred"]] if probs else None}


def answer(module: Any, datamodule: Any, value: Any, state: Any, max_steps: int) -> DemoAnswer:
    """The page's answer: the digit at K, right or wrong, and the belief after each step."""
    result = remember(module, datamodule, value, max_steps)
    verdict = "right" if result["pred"] == result["true"] else "wrong"
    sure = f" ({result['confidence']:.1%} sure)" if result["confidence"] is not None else ""
    line = (
        f"The digit at index K={result['K']}: the network answers **{result['pred']}**"
        f"{sure}; the list has {result['true']} there ({verdict})."
    )
    if len(result["sequence"]) > datamodule.max_len:
        line += f" The list is longer than any it trained on ({datamodule.max_len})."
    figure = remember_steps(result) if result["steps"] is not None else None
    return DemoAnswer(line, steps=figure, numbers=result)


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
    ax.add_patch(Rectangle((k - 1.5, result["true"] - 0.5), 1, 1, fill=False, edgecolor=MARK, lw=2))
    ticks = range(steps) if steps <= 40 else range(0, steps, max(1, steps // 20))
    ax.set_xticks(list(ticks), [str(sequence[t]) for t in ticks])
    ax.set(
        yticks=range(10),
        xlabel="digit read (step by step)",
        ylabel="answer",
        title=f"belief after each step; the digit at index K={k} is {result['true']}",
    )
    return fig

"""Binary addition's tab on the demo page: a sum typed in decimal or ``0b`` bits, added by the
network bit by bit, each bit's probability beside the true bit, and the carry unit's value at
each step beside the true carry (the unit the run's inside analysis found, or one found when
the run is loaded)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from seqnets.data.binary_add import encode_sum
from seqnets.errors import ConfigError
from seqnets.tasks.base import DemoAnswer, DemoTab

DPI = 80
RIGHT, WRONG = "#2a7ab0", "#d62728"
# Sums whose carry unit is looked for when a run's metrics.json does not name one: long
# enough that a unit which only reacts to the current bits stands apart from the carry.
CARRY_SEARCH = {"length": (20, 60), "n": 200}

TAB = DemoTab(
    title="Add two numbers",
    prompt="two numbers, decimal or 0b bits, e.g. 263604+493034 or 0b1011+0b110",
    example="263604+493034",
    steps_label="bit by bit: each bit's probability, and the carry unit",
)


def carry_unit(module: Any, record: Mapping[str, Any]) -> str | None:
    """The unit shown beside the true carry: the run's inside analysis's, else the unit most
    correlated with the carry (a run trained with ``callbacks.analysis.inside=false``)."""
    from seqnets.tasks.binary_add import carry_correlation

    found = ((record.get("inside") or {}).get("carry") or {}).get("best_unit")
    if found is None:
        found = carry_correlation(module, CARRY_SEARCH["length"], CARRY_SEARCH["n"])["best_unit"]
    return found


def add(module: Any, datamodule: Any, text: str, max_bits: int, unit: str | None) -> dict:
    """``a+b`` added by the network bit by bit: each bit's probability, the wrong bits, and
    the carry unit's value at each step beside the true carry. Sums longer than ``max_bits``
    bits are refused (the page's cap)."""
    from seqnets.tasks.binary_add import carry_states, parse_sums, predict_sums, unit_labels

    text = str(text).strip()
    (pair,) = parse_sums(text)
    if isinstance(pair, str):
        raise ConfigError(pair)
    a, b = pair
    bits = max(a.bit_length(), b.bit_length(), 1) + 1
    if bits > max_bits:
        raise ConfigError(
            f"{text[:40]!r}{'...' if len(text) > 40 else ''} is not allowed: the sum has "
            f"{bits} bits, more than this page's cap of {max_bits} (max_input)"
        )
    (row,) = predict_sums(module, datamodule, text)["rows"]
    states = carry_states(module, encode_sum(a, b)["x"])
    values = None
    if unit is not None:
        index = unit_labels(module).index(unit)
        values = states["units"][0, :, index].tolist()
    return {
        **row,
        "a_bits": [(a >> i) & 1 for i in range(bits)],  # least significant first, as read
        "b_bits": [(b >> i) & 1 for i in range(bits)],
        "prob": states["prob"][0].tolist(),
        "pred_lsb": states["pred"][0].tolist(),
        "true_lsb": [((a + b) >> i) & 1 for i in range(bits)],
        "carry": states["carry"][0].tolist(),
        "unit": unit,
        "unit_values": values,
    }


def answer(
    module: Any, datamodule: Any, value: Any, state: Mapping[str, Any], max_steps: int
) -> DemoAnswer:
    """The page's answer: the sum, the network's bits against the true ones, the picture."""
    result = add(module, datamodule, value, max_steps, state.get("carry_unit"))
    verdict = "right" if result["pred"] == result["true"] else "wrong"
    lines = [
        f"{result['a']} + {result['b']} = **{result['pred']}** "
        f"(the network's answer; the true sum is {result['true']}: {verdict}, "
        f"{result['wrong_bits']} wrong bit(s) of {result['bits']})",
        "",
        "```",
        f"network  {result['pred_bits']}",
        f"true     {result['true_bits']}",
        *([f"wrong    {result['marks']}"] if result["wrong_bits"] else []),
        "```",
    ]
    if result["unit"] is None:
        lines.append("No state unit follows the carry in this network.")
    return DemoAnswer("\n".join(lines), steps=sum_bits(result), numbers=result)


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

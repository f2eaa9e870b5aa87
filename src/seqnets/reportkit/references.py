"""The reference reports' published numbers (../shared/docs/SPEC.md), each keyed by the
settings it was measured with (``seqnets.reportkit.settings``: ``model.cell``, ``model.hidden``,
``l2``, ``task.loss`` ...) and matched against every row's config: the bar every seqnets figure
is set against, whatever the experiment is called."""

from __future__ import annotations

from typing import Any


def model(cell: str, hidden: int, layers: int = 1, bidirectional: bool = False) -> dict[str, Any]:
    return {
        "model.cell": cell,
        "model.hidden": hidden,
        "model.num_layers": layers,
        "model.bidirectional": bidirectional,
    }


def mnist(cell: str, hidden: int, layers: int = 1, bi: bool = False, l2: float = 0.0) -> dict:
    return {"task.name": "mnist"} | model(cell, hidden, layers, bi) | {"l2": l2}


# Section 1: test accuracy (%). Report A: batch 64, 5 epochs (its RNN row: 10 epochs);
# report B: batch 500, 10 epochs.
MNIST = [
    (mnist("rnn", 128), {"A": 97.19, "B": 94.42}),
    (mnist("rnn", 256), {"A": None, "B": 94.86}),
    (mnist("rnn", 128, layers=2), {"A": None, "B": 96.83}),
    (mnist("lstm", 64), {"A": 97.80, "B": None}),
    (mnist("lstm", 128), {"A": 98.58, "B": 97.38}),
    (mnist("gru", 128), {"A": 98.52, "B": 97.06}),
    (mnist("rnn", 128, bi=True), {"A": None, "B": 95.60}),
    (mnist("lstm", 128, bi=True), {"A": 98.60, "B": 97.82}),
    (mnist("lstm", 128, l2=0.001), {"A": 98.52, "B": None}),
]
# Section 2: report A reached 100 % with LSTM at hidden 10 and GRU at hidden 5 and 10; RNN
# lower (no figure given).
REMEMBER_100 = [
    {"task.name": "remember"} | model("lstm", 10),
    {"task.name": "remember"} | model("gru", 5),
    {"task.name": "remember"} | model("gru", 10),
]


def adder(hidden: int, loss: str, train_len: int) -> dict[str, Any]:
    """Report A's lengths are keyed at seqnets' sum-bits reading (``task.train_len`` = report
    A's length); its operand-bits reading is one bit longer (``binary_add.report``)."""
    task = {"task.loss": loss, "task.train_len": train_len}
    return {"task.name": "binary_add"} | model("lstm", hidden) | task


# Section 3: report A's bit accuracy at length 20 (one run, 100 sums per length).
BINARY_ADD_A_BIT_AT_20 = [
    (adder(3, "ce", 3), 0.61),
    (adder(3, "mse", 3), 0.48),
    (adder(5, "ce", 3), 0.97),
    (adder(5, "mse", 3), 0.94),
    (adder(5, "ce", 7), 0.99),
]
A_AT = 20  # the length report A's figures above are read at
# Report B: accuracy averaged over lengths 1..20, %.
BINARY_ADD_B_MEAN_1_20 = [
    (adder(3, "ce", 3), 92.3),
    (adder(10, "ce", 3), 100.0),
    (adder(5, "ce", 3), 81.3),
    (adder(5, "ce", 5), 99.8),
    (adder(5, "ce", 10), 100.0),
]
B_OVER = (1, 20)  # the lengths report B's figures above average over

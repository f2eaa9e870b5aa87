"""The adding problem (data: ``seqnets.data.adding``): sum the two marked values.

Inside a trained network: the answer its readout would give after every step, against the
sum of the marked values read so far. A network that has learned the task answers about 0
before the first marker, the first value after it, and the sum after the second; one that
only fitted the average sits near 1.0 throughout. A user's own input is a sequence of values
with the two to add starred: ``input="0.3 *0.5 0.1 *0.9 0.2"``.
"""

from __future__ import annotations

import math
import re
from typing import TYPE_CHECKING, Any

import torch
from matplotlib.figure import Figure
from omegaconf import OmegaConf

from seqnets.data.adding import encode_sequence, make_adding_batch
from seqnets.errors import ConfigError
from seqnets.scoring import forward_batch, readout_by_step
from seqnets.tasks.analysis import BIDIRECTIONAL_NOTE
from seqnets.tasks.base import DemoTab, Task

if TYPE_CHECKING:
    from seqnets.models.module import SequenceModule

# Always answering the mean sum, 1.0, scores the variance of a sum of two U(0, 1) values.
CONSTANT_MSE = 2 / 12


class Adding(Task):
    name = "adding"
    title = "The adding problem"
    report_module = "seqnets.tasks.adding.report"
    setting_keys = ("train_len",)

    def predict(self, module: Any, datamodule: Any, value: Any) -> dict[str, Any]:
        rows = []
        for item in parse_sequences(value):
            if isinstance(item, str):
                rows.append({"error": item})
                continue
            values, marked = item
            batch = encode_sequence(values, marked)
            logits, _ = forward_batch(module, datamodule, batch)
            pred, true = float(module.objective.predict(logits)[0]), float(batch["y"][0])
            text = f"{len(values)} values, marked {values[marked[0]]} and {values[marked[1]]}"
            text += f": {pred:.3f} (true {true:.3f}, error {pred - true:+.3f})"
            if not datamodule.min_len <= len(values) <= datamodule.max_len:
                text += (
                    f"; outside the training lengths ({datamodule.min_len}..{datamodule.max_len})"
                )
            rows.append(
                {"values": values, "marked": marked, "pred": pred, "true": true, "text": text}
            )
        return {"rows": rows}

    def inside(
        self, module: SequenceModule, datamodule: Any, generator: torch.Generator
    ) -> tuple[dict[str, Any], dict[str, Figure]]:
        """The readout after every step against the running sum of the marked values, on
        1,000 sequences of the longest training length."""
        numbers = running_sum(module, datamodule.max_len, 1000, generator)
        numbers["train_lengths"] = [datamodule.min_len, datamodule.max_len]
        figures = {}
        if numbers["note"] is None:
            title = f"{module.backbone.describe()}: answer after each step"
            figures["adding_running_sum"] = running_sum_figure(numbers, title)
        return {"running_sum": numbers}, figures

    def demo_tab(self) -> DemoTab:
        """Numbers typed, two of them starred; answered by the default (``predict``, then
        the readout after each step: the running sum as the network keeps it)."""
        return DemoTab(
            title=self.title,
            input="numbers",
            prompt="values in [0, 1], the two to add starred, e.g. 0.3 *0.5 0.1 *0.9 0.2",
            example="0.3 *0.5 0.1 0.7 *0.9 0.2",
            steps_label="step by step: the network's answer after each value read",
        )


# -- a user's own sequences ----------------------------------------------------------------------
def parse_sequences(value: Any) -> list[Any]:
    """``"0.3 *0.5 0.1 *0.9"`` (or a list of such strings, or of numbers and starred strings)
    -> (values, the two marked positions); a bad one becomes its error message."""
    if OmegaConf.is_list(value):
        value = OmegaConf.to_container(value)
    if isinstance(value, list) and not any(isinstance(v, list | str) for v in value):
        value = [value]  # one list of plain numbers: no marks, refused below
    if isinstance(value, list) and all(isinstance(v, int | float) or _starred(v) for v in value):
        value = [" ".join(map(str, value))]  # one sequence given as a list
    items = value if isinstance(value, list) else [value]
    if not items or items == [""]:
        raise ConfigError(
            f"input={value!r} is not allowed: give values with two starred, e.g. "
            f'input="0.3 *0.5 0.1 *0.9 0.2"'
        )
    parsed: list[Any] = []
    for item in items:
        tokens = item if isinstance(item, list) else re.findall(r"[^,\s\[\]]+", str(item))
        values, marked = [], []
        for token in map(str, tokens):
            if token.startswith("*"):
                marked.append(len(values))
                token = token[1:]
            try:
                values.append(float(token))
                if not math.isfinite(values[-1]):
                    raise ValueError(token)
            except ValueError:
                values = None
                parsed.append(f"{item!r} is not allowed: {token!r} is not a finite number")
                break
        if values is None:
            continue
        if len(marked) != 2:
            parsed.append(
                f"{item!r} is not allowed: mark exactly two values with *, e.g. "
                f'"0.3 *0.5 0.1 *0.9 0.2" ({len(marked)} marked)'
            )
            continue
        parsed.append((values, marked))
    return parsed


def _starred(token: Any) -> bool:
    return isinstance(token, str) and token.startswith("*")


# -- inside: the running sum -----------------------------------------------------------------------
def running_sum(
    module: SequenceModule, length: int, n: int = 1000, generator: torch.Generator | None = None
) -> dict[str, Any]:
    """Mean squared error of the readout after each step against the sum of the marked values
    read so far (unidirectional backbones only: per-step answers of a bidirectional one have
    seen the future), and one sequence's answers and running sum for the figure."""
    if module.backbone.bidirectional:
        return {"note": BIDIRECTIONAL_NOTE, "steps": None, "mse": None}
    generator = generator if generator is not None else torch.Generator().manual_seed(0)
    batch = make_adding_batch(n, torch.full((n,), length), generator)
    _, logits = readout_by_step(module, batch["x"])
    answers = module.objective.predict(logits).float().cpu()  # (n, steps)
    values, markers = batch["x"].unbind(-1)
    so_far = (values * markers).cumsum(dim=1)
    errors = (answers - so_far).pow(2)
    return {
        "note": None,
        "n": n,
        "length": length,
        "steps": list(range(1, length + 1)),
        "mse": errors.mean(0).tolist(),
        "final_mse": float(errors[:, -1].mean()),
        "constant_mse": CONSTANT_MSE,
        "example": {
            "answer": answers[0].tolist(),
            "so_far": so_far[0].tolist(),
            "marked": markers[0].nonzero().flatten().tolist(),
        },
    }


def running_sum_figure(numbers: dict[str, Any], title: str) -> Figure:
    """Left: one sequence's answer after each step and the running sum of its marked values.
    Right: the squared error against that running sum, averaged over the sequences."""
    fig = Figure(figsize=(10, 3.8), layout="constrained")
    left, right = fig.subplots(1, 2)
    steps, example = numbers["steps"], numbers["example"]
    left.plot(steps, example["so_far"], color="C1", label="sum of marked values so far")
    left.plot(steps, example["answer"], color="C0", label="the network's answer")
    for j in example["marked"]:
        left.axvline(j + 1, color="grey", linestyle=":", linewidth=1)
    left.set(xlabel="step", ylabel="value", title="one sequence (dotted: the markers)")
    left.legend(fontsize=8)
    right.plot(steps, numbers["mse"], color="C0")
    right.axhline(numbers["constant_mse"], color="grey", linestyle="--", label="always 1.0")
    right.set(xlabel="step", ylabel="squared error", yscale="log", title="mean over sequences")
    right.legend(fontsize=8)
    fig.suptitle(title)
    return fig

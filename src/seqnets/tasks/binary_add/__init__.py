"""Binary addition (data: ``seqnets.data.binary_add``): two numbers read least significant
bit first, one sum bit out per step.

Inside a trained adder: whether one unit of its state simply *is* the carry (its correlation
with the true carry over long sums), and that unit traced along one sum. A user's own input is
sums such as ``263604+493034``, answered bit by bit with the wrong bits marked.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

import torch
from omegaconf import OmegaConf

from seqnets.data.binary_add import (
    bits_to_int,
    carries,
    encode_sum,
    make_binary_add_batch,
    make_mixed_binary_add_batch,
)
from seqnets.data.synthetic import length_range
from seqnets.errors import ConfigError
from seqnets.scoring import evaluating, forward_batch
from seqnets.tasks.analysis import CONSTANT_STD, fixed_generator, json_number
from seqnets.tasks.base import Task
from seqnets.tasks.inside_figures import carry_trace_figure, carry_units_figure

if TYPE_CHECKING:
    from matplotlib.figure import Figure

    from seqnets.models.module import SequenceModule


class BinaryAdd(Task):
    name = "binary_add"
    title = "Binary addition"
    report_module = "seqnets.tasks.binary_add.report"
    demo_module = "seqnets.tasks.binary_add.demo"
    setting_keys = ("train_len", "loss")

    def predict(self, module: Any, datamodule: Any, value: Any) -> dict[str, Any]:
        return predict_sums(module, datamodule, value)

    def markdown(self, result: dict[str, Any]) -> str:
        """Each sum, then its bits predicted and true, most significant first, with ^ under
        each wrong bit."""
        lines = []
        for r in result["rows"]:
            if "error" in r:
                lines.append(f"- error: {r['error']}")
                continue
            lines += [
                f"- {r['text']}",
                f"  ```\n  predicted {r['pred_bits']}\n  true      {r['true_bits']}\n"
                f"            {r['marks']}\n  ```",
            ]
        return "\n".join(lines) + "\n"

    def inside(
        self, module: SequenceModule, datamodule: Any, generator: torch.Generator
    ) -> tuple[dict[str, Any], dict[str, Figure]]:
        """The carry: each unit's correlation with it over 1,000 sums of 40..100 bits (far
        beyond most training lengths), and the best unit along one 40-bit sum."""
        model = module.backbone.describe()
        numbers: dict[str, Any] = {}
        figures: dict[str, Figure] = {}
        correlation = carry_correlation(module, (40, 100), 1000, generator)
        correlation["train_lengths"] = [datamodule.min_len, datamodule.max_len]
        numbers["carry"] = correlation
        figures["carry_units"] = carry_units_figure(correlation, f"{model}: carry units")
        if correlation["best_unit"] is not None:
            trace = carry_trace(module, correlation["best_unit"], 40, generator)
            trace["r"] = correlation["best_r"]
            numbers["carry_trace"] = trace
            figures["carry_trace"] = carry_trace_figure(trace, f"{model}: carry trace")
        return numbers, figures

    def demo_score(self) -> str:
        return "test/exact_acc"

    def demo_rank(self, record: Any) -> tuple[float, ...]:
        """How often the whole sum is right, then how often on the longest sums scored."""
        exact = (record.get("test") or {}).get("test/exact_acc")
        by_length = record.get("by_length") or []
        longest = by_length[-1].get("exact_acc") if by_length else None
        return (-1.0 if exact is None else exact, longest or 0.0)

    def demo_state(self, module: Any, datamodule: Any, record: Any) -> dict[str, Any]:
        """The carry unit shown beside the true carry."""
        from seqnets.tasks.binary_add.demo import carry_unit

        return {"carry_unit": carry_unit(module, record)}


# -- a user's own sums -----------------------------------------------------------------------
def parse_number(text: Any) -> int:
    """A non-negative decimal number or a ``0b`` bit string (most significant bit first)."""
    token = str(text).strip().replace("_", "")
    if re.fullmatch(r"0[bB][01]+", token):
        return int(token, 2)
    if re.fullmatch(r"[0-9]+", token):
        return int(token)
    raise ConfigError(
        f"{text!r} is not allowed: give a non-negative decimal number or a bit string such as "
        f"0b1011 (digits 0 and 1 only after 0b)"
    )


def parse_sums(value: Any) -> list[Any]:
    """``"a+b"``, ``[a, b]`` or several ``["a+b", "c+d"]`` -> (a, b) pairs; a bad one becomes
    its error message."""
    if OmegaConf.is_list(value):
        value = OmegaConf.to_container(value)
    if isinstance(value, list) and len(value) == 2 and not any("+" in str(v) for v in value):
        value = [f"{value[0]}+{value[1]}"]
    items = value if isinstance(value, list) else [value]
    pairs: list[Any] = []
    for item in items:
        parts = str(item).split("+")
        if len(parts) != 2:
            pairs.append(f"{item!r} is not allowed: give two numbers as a+b, e.g. 263604+493034")
            continue
        try:
            pairs.append(tuple(parse_number(p) for p in parts))
        except ConfigError as error:
            pairs.append(f"{item!r}: {error}")
    return pairs


def predict_sums(module: Any, datamodule: Any, value: Any) -> dict[str, Any]:
    """Each sum bit by bit, with the true sum and the wrong bits marked."""
    rows = []
    for pair in parse_sums(value):
        if isinstance(pair, str):
            rows.append({"error": pair})
            continue
        a, b = pair
        batch = encode_sum(a, b)
        logits, _ = forward_batch(module, datamodule, batch)
        bits = module.objective.predict(logits).cpu()[0].tolist()
        true_bits = batch["y"][0].tolist()
        pred = bits_to_int(bits)
        # Most significant bit first, as numbers are written; ^ under each wrong bit.
        shown, truth = "".join(map(str, bits[::-1])), "".join(map(str, true_bits[::-1]))
        marks = "".join("^" if p != t else " " for p, t in zip(shown, truth, strict=True))
        rows.append(
            {
                "a": a,
                "b": b,
                "pred": pred,
                "true": a + b,
                "bits": len(bits),
                "wrong_bits": marks.count("^"),
                "text": f"{a} + {b} = {pred} (true {a + b})",
                "pred_bits": shown,
                "true_bits": truth,
                "marks": marks.rstrip(),
            }
        )
    return {"rows": rows}


# -- inside: the carry ---------------------------------------------------------------------
# Sums read at once by the carry analysis: bounds memory at about CHUNK * 100 steps * units.
CHUNK = 250


def unit_labels(module: SequenceModule) -> list[str]:
    """Names of the state units the carry analysis looks at, in feature order: ``h0``..
    for the outputs (hidden units), then each further state the cell keeps (its
    ``extra_states``: ``c0``.. for an LSTM's cell units), with an ``r`` (``hr0``) for the
    backward direction of a bidirectional backbone."""
    backbone = module.backbone
    directions = ["", "r"][: backbone.num_directions]
    kinds = ["h", *backbone.rnn.extra_states]
    return [f"{k}{d}{i}" for k in kinds for d in directions for i in range(backbone.hidden)]


def carry_states(
    module: SequenceModule, x: torch.Tensor, lengths: torch.Tensor | None = None
) -> dict[str, torch.Tensor]:
    """Per-step states of the top layer over sums ``x`` (batch, steps, 2), zero-padded past
    ``lengths`` when given (ragged sums are packed, as in training).

    Returns CPU tensors: ``h`` (batch, steps, output_size), the cell's further states
    likewise (``c`` for an LSTM; see ``Cell.states``), ``units``, all of them side by side
    in the order of :func:`unit_labels`, ``carry`` (batch, steps), the true carry out of
    each position (what the state after reading that position must hold), ``pred``, the
    network's sum bits, ``prob``, each bit's probability of being 1, and ``real`` (batch,
    steps), True at the positions inside each sum.
    """
    steps = x.shape[1]
    real = torch.ones(x.shape[:2], dtype=torch.bool)
    if lengths is not None:
        lengths = lengths.cpu()
        real = torch.arange(steps) < lengths[:, None]
    with evaluating(module):
        x = x.to(module.device, torch.float32)
        outputs, _ = module.backbone(x, lengths)
        states = {"h": outputs.float().cpu()}
        extra = module.backbone.rnn.states(x, lengths)
        states |= {name: extra[name].float().cpu() for name in module.backbone.rnn.extra_states}
        states["units"] = torch.cat(
            [states[k] for k in ("h", *module.backbone.rnn.extra_states)], dim=-1
        )
        logits = module.readout(outputs)
        states["pred"] = module.objective.predict(logits).cpu()
        states["prob"] = torch.sigmoid(logits.squeeze(-1)).float().cpu()  # each bit's P(1)
    states["carry"] = carries(x).cpu()
    states["real"] = real
    return states


def carry_correlation(
    module: SequenceModule,
    length: int | tuple[int, int] = (40, 100),
    n: int = 1000,
    generator: torch.Generator | None = None,
) -> dict:
    """Pearson correlation of every state unit with the true carry, pooled over every
    position of ``n`` sums spread evenly over ``length`` bits (an int or a (min, max) range).

    Long sums on purpose: a network that only fitted short training sums may hold the carry
    well at first and drift later, and pooling long sums shows it. Returns ``r`` (unit label
    -> r, None for a constant unit), the best unit by |r|, and the network's bit and exact
    accuracy on the same sums, so a strong carry unit can be read against how well it adds.
    """
    low, high = length_range("length", length)
    labels = unit_labels(module)
    # One zero-padded batch, read in chunks of packed sums: a few long tensor operations
    # instead of one pass per length.
    batch = make_mixed_binary_add_batch(n, low, high, fixed_generator(generator))
    x, y, sizes = batch["x"], batch["y"], batch["lengths"]
    # Running sums in float64: the pooled positions never need to be held at once.
    sums = torch.zeros(5, len(labels), dtype=torch.float64)  # x, x^2, x*y, y, y^2
    positions = right_bits = right_sums = 0
    for first in range(0, len(sizes), CHUNK):
        part = slice(first, first + CHUNK)
        steps = int(sizes[part].max())  # sorted by length: short chunks stay short
        states = carry_states(module, x[part, :steps], sizes[part])
        real = states["real"]
        values = states["units"][real].double()
        carry = states["carry"][real].double()[:, None]
        sums += torch.stack(
            [
                values.sum(0),
                values.pow(2).sum(0),
                (values * carry).sum(0),
                carry.sum(0).expand(len(labels)),
                carry.pow(2).sum(0).expand(len(labels)),
            ]
        )
        positions += values.shape[0]
        right = states["pred"] == y[part, :steps]
        right_bits += int(right[real].sum())
        right_sums += int((right | ~real).all(dim=1).sum())
    mean_x, mean_x2, mean_xy, mean_y, mean_y2 = sums / max(positions, 1)
    std_x = (mean_x2 - mean_x**2).clamp(min=0).sqrt()
    std_y = (mean_y2 - mean_y**2).clamp(min=0).sqrt()
    cov = mean_xy - mean_x * mean_y
    r: dict[str, float | None] = {}
    for j, label in enumerate(labels):
        defined = std_x[j] > CONSTANT_STD and std_y[j] > 0
        r[label] = json_number((cov[j] / (std_x[j] * std_y[j])).clamp(-1, 1)) if defined else None
    scored = {k: abs(v) for k, v in r.items() if v is not None}
    best = max(scored, key=scored.get) if scored else None
    return {
        "r": r,
        "best_unit": best,
        "best_r": r[best] if best else None,
        "best_abs_r": scored[best] if best else None,
        "sums": n,
        "lengths": [low, high],
        "positions": positions,
        "bit_acc": right_bits / positions if positions else None,
        "exact_acc": right_sums / n if n else None,
    }


def carry_trace(
    module: SequenceModule,
    unit: str,
    length: int = 40,
    generator: torch.Generator | None = None,
    candidates: int = 64,
) -> dict:
    """One ``length``-bit sum as the network reads it: the value of ``unit`` at each step
    next to the true carry, the input bits, the true sum and the network's sum.

    Of ``candidates`` random sums, the one where the carry most often has to be *held*
    through a position whose bits differ (carry in 1, a xor b = 1, carry out 1) is shown:
    those long carry chains are where a unit that merely reacts to the current bits and a
    unit that remembers the carry part ways.
    """
    labels = unit_labels(module)
    if unit not in labels:
        raise ValueError(f"unit={unit!r} is not one of {labels[0]}..{labels[-1]}")
    batch = make_binary_add_batch(candidates, length, fixed_generator(generator))
    bits = batch["x"].long()
    carry = carries(batch["x"])
    held = ((bits[..., 0] ^ bits[..., 1]) == 1) & (carry == 1)
    pick = int(held.sum(1).argmax())
    states = carry_states(module, batch["x"][pick : pick + 1])
    value = states["units"][0, :, labels.index(unit)]
    return {
        "unit": unit,
        "length": length,
        "value": [float(v) for v in value],
        "carry": states["carry"][0].tolist(),
        "a": bits[pick, :, 0].tolist(),
        "b": bits[pick, :, 1].tolist(),
        "sum": batch["y"][pick].tolist(),
        "pred": states["pred"][0].tolist(),
    }

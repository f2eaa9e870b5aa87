"""What the demo's page shows, computed without the page: a trained network's answer to a
user's input and how it got there, as plain numbers.

Each answer goes through the code the command line uses, so the page and ``predict`` agree
on every answer and every refusal: the tasks' parsing of digit lists and sums (their
``Task.predict`` and its one-line messages), the own-handwriting pipeline of
:mod:`seqnets.data.images`, the per-step readouts (``scoring.readout_by_step``) and the carry
states of the binary-add task (``seqnets.tasks.binary_add``). A bad input raises
``ConfigError`` with the same line ``predict`` prints; the page shows it as it is.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from PIL import Image

from seqnets.checkpoints import load_checkpoint, rebuild
from seqnets.data.binary_add import encode_sum
from seqnets.data.images import ImageError, image_ink, prepare, to_mnist
from seqnets.data.remember import encode_digits
from seqnets.demo.catalog import Run
from seqnets.errors import ConfigError
from seqnets.models.module import SequenceModule
from seqnets.scoring import readout_by_step
from seqnets.tasks.binary_add import (
    carry_correlation,
    carry_states,
    parse_sums,
    predict_sums,
    unit_labels,
    unit_values,
)
from seqnets.tasks.mnist import digit_probabilities
from seqnets.tasks.remember import predict_digits

# Sums whose carry unit is looked for when a run's metrics.json does not name one: long
# enough that a unit which only reacts to the current bits stands apart from the carry.
CARRY_SEARCH = {"length": (20, 60), "n": 200}


@dataclass
class Loaded:
    """A run's network, ready to answer."""

    run: Run
    datamodule: Any
    module: SequenceModule
    carry_unit: str | None = None  # binary_add: the unit shown beside the true carry

    @property
    def per_step(self) -> bool:
        """Whether answers after each step mean anything: a bidirectional backbone's
        backward half has read the whole input at every step."""
        return not self.module.backbone.bidirectional


class Models:
    """Checkpoints loaded on first use and kept, so that switching runs in the picker (an RNN
    against an LSTM on the same drawing) costs a load only once per run."""

    def __init__(self, runs: list[Run], data_dir: str | None = None) -> None:
        self.runs = {str(run.checkpoint): run for run in runs}
        self.data_dir = data_dir
        self._loaded: dict[str, Loaded] = {}

    def get(self, checkpoint: str) -> Loaded:
        """The loaded network of the run whose checkpoint is ``checkpoint``."""
        if checkpoint not in self._loaded:
            run = self.runs.get(checkpoint)
            if run is None:
                raise ConfigError(f"{checkpoint} is not one of the runs this page offers")
            _, stored = load_checkpoint(run.checkpoint)
            _, datamodule, module = rebuild(stored, data_dir=self.data_dir)
            loaded = Loaded(run, datamodule, module)
            if run.task == "binary_add":
                loaded.carry_unit = run.carry_unit or _find_carry_unit(module)
            self._loaded[checkpoint] = loaded
        return self._loaded[checkpoint]


def _find_carry_unit(module: SequenceModule) -> str | None:
    """The unit most correlated with the true carry, for a run trained without the inside
    analysis (``callbacks.analysis.inside=false``)."""
    found = carry_correlation(module, CARRY_SEARCH["length"], CARRY_SEARCH["n"])
    return found["best_unit"]


# -- MNIST -------------------------------------------------------------------------------
def read_digit(loaded: Loaded, drawing: Image.Image | None, upload: str | None) -> dict:
    """The digit in an uploaded file (when given) or a drawing: the 28x28 image the network
    reads, its ten probabilities, and the answer and probabilities after each row read."""
    if upload:
        images, (result,) = prepare([upload])
        if not result.ok:  # the message names the server's copy: name the user's file
            raise ImageError(str(result.error).replace(str(upload), Path(upload).name))
    elif drawing is not None:
        images = to_mnist(image_ink(drawing, "the drawing"))[None]
    else:
        raise ImageError("nothing to read: draw a digit or upload a photo of one")
    probs = digit_probabilities(loaded.module, loaded.datamodule, images)[0]
    rows = None
    if loaded.per_step:
        x = loaded.datamodule.normalize(images)
        rows = readout_by_step(loaded.module, x)[1].softmax(-1)[0].cpu()
    return {
        "image": images[0],
        "probs": probs.tolist(),
        "answer": int(probs.argmax()),
        "confidence": float(probs.max()),
        "rows": rows.tolist() if rows is not None else None,
    }


# -- binary addition ---------------------------------------------------------------------
def add(loaded: Loaded, text: str, max_bits: int) -> dict:
    """``a+b`` (decimal or ``0b`` bits) added by the network bit by bit: each bit's
    probability, the wrong bits, and the carry unit's value at each step beside the true
    carry. Sums longer than ``max_bits`` bits are refused (the page's cap)."""
    text = str(text).strip()
    (pair,) = parse_sums(text)
    if isinstance(pair, str):
        raise ConfigError(pair)
    a, b = pair
    bits = max(a.bit_length(), b.bit_length(), 1) + 1
    if bits > max_bits:
        raise ConfigError(
            f"{text[:40]!r}{'...' if len(text) > 40 else ''} is not allowed: the sum has "
            f"{bits} bits, more than this page's cap of {max_bits} (max_bits)"
        )
    (row,) = predict_sums(loaded.module, loaded.datamodule, text)["rows"]
    states = carry_states(loaded.module, encode_sum(a, b)["x"])
    unit = loaded.carry_unit
    values = None
    if unit is not None:
        index = unit_labels(loaded.module).index(unit)
        values = unit_values(states)[0, :, index].tolist()
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


# -- remember ----------------------------------------------------------------------------
def digit_list(text: str) -> str:
    """What a person types (``6 8 0 2``, ``[6, 8, 0]``, ``6802``) -> the form ``predict``
    parses (``6,8,0,2`` or ``6802``)."""
    tokens = re.findall(r"[^,\s\[\]]+", str(text))
    return ",".join(tokens) if len(tokens) > 1 else (tokens[0] if tokens else "")


def remember(loaded: Loaded, text: str, max_len: int) -> dict:
    """The digit at index K of a digit list as the network answers it, the true one, and its
    belief in each digit after every step (the answer had the list ended there)."""
    value = digit_list(text)
    count = len(value.split(",")) if "," in value else len(value)
    if count > max_len:
        raise ConfigError(
            f"{value[:40]!r}... is not allowed: it has {count} digits, more than this page's "
            f"cap of {max_len} (max_len)"
        )
    (row,) = predict_digits(loaded.module, loaded.datamodule, value)["rows"]
    if "error" in row:
        raise ConfigError(row["error"])
    steps = None
    if loaded.per_step:
        x = encode_digits([row["sequence"]])["x"]
        steps = readout_by_step(loaded.module, x)[1].softmax(-1)[0].cpu().tolist()
    probs = steps[-1] if steps else None
    return {**row, "steps": steps, "confidence": probs[row["pred"]] if probs else None}


def bad_input_line(error: BaseException) -> str:
    """One line for the page: the message of a refused input as it is, anything else (a bug)
    as its type and first line, never a traceback."""
    text = str(error).strip().splitlines()[0] if str(error).strip() else ""
    if isinstance(error, ConfigError):
        return text
    return f"{type(error).__name__}: {text}" if text else type(error).__name__

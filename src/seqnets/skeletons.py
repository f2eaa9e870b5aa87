"""The files ``python -m seqnets.new`` writes (``seqnets.new``), as templates: text only, so
the command's logic reads apart from what it writes. ``{name}``, ``{camel}``, ``{title}`` and
``{module}`` are filled in; other braces are doubled."""

TASK_MODULE = '''"""The {name} task: {title}.

Written by ``python -m seqnets.new task {name}``: a toy to start from. Each sequence is a
string of bits and the label says whether it holds more ones than zeros. Change ``make``
(the data), ``num_classes`` in ``conf/task/{name}.yaml`` and ``predict`` (a person's input).
"""

from __future__ import annotations

from typing import Any

import torch

from seqnets.data.batching import Batch
from seqnets.data.synthetic import SyntheticDataModule
from seqnets.scoring import predict_batch
from seqnets.tasks.base import Task


class {camel}DataModule(SyntheticDataModule):
    """Bit strings of lengths ``min_len..max_len``; the label: more ones than zeros."""

    name = "{name}"
    num_features = 1

    def __init__(
        self,
        min_len: int = 3,
        max_len: int = 9,
        min_eval_len: int = 3,
        max_eval_len: int = 15,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.min_len, self.max_len = min_len, max_len
        self.min_eval_len, self.max_eval_len = min_eval_len, max_eval_len

    def make(self, n: int, generator: torch.Generator, length: int | None = None) -> Batch:
        """``n`` sequences: x (n, steps, 1) padded with zeros, y (n,), lengths (n,)."""
        low, high = (length, length) if length else (self.min_len, self.max_len)
        lengths = torch.randint(low, high + 1, (n,), generator=generator)
        bits = torch.randint(0, 2, (n, high), generator=generator)
        bits *= torch.arange(high) < lengths[:, None]
        label = (2 * bits.sum(1) > lengths).long()
        return {{"x": bits[..., None].float(), "y": label, "lengths": lengths}}

    def eval_lengths(self) -> list[int]:
        """The lengths of the accuracy-against-length study (``evaluate lengths=[a,b]``)."""
        return list(range(self.min_eval_len, self.max_eval_len + 1))

    def describe(self, batch: Batch, preds: torch.Tensor) -> list[dict]:
        """One line per sequence, for the run's sample predictions."""
        out = []
        for x, n, p, y in zip(batch["x"], batch["lengths"], preds, batch["y"], strict=True):
            bits = "".join(str(int(b)) for b in x[:n, 0])
            out.append({{"text": f"{{bits}} -> {{int(p)}} (true {{int(y)}})"}})
        return out


class {camel}(Task):
    """What the {name} task is outside training: its title, the settings that tell its runs
    apart, and how a person's input is read (``predict``; the demo's tab uses it too)."""

    name = "{name}"
    title = "{title}"
    setting_keys = ("max_len",)

    def predict(self, module: Any, datamodule: Any, value: Any) -> dict[str, Any]:
        """Bit strings (``input=0110`` or ``input=[0110,101]``) -> one row each."""
        rows = []
        for text in value if isinstance(value, list | tuple) else [value]:
            text = str(text).strip()
            if not text or set(text) - {{"0", "1"}}:
                rows.append({{"error": f"{{text!r}} is not allowed: give a bit string like 0110"}})
                continue
            bits = torch.tensor([[[float(b)] for b in text]])
            batch = {{"x": bits, "y": torch.tensor([int(2 * text.count("1") > len(text))])}}
            pred = int(predict_batch(module, datamodule, batch)[0])
            rows.append({{"bits": text, "pred": pred, "text": f"{{text}} -> {{pred}}"}})
        return {{"rows": rows}}
'''

TASK_CONFIG = """# The {name} task ({module}.py), found through hydra.searchpath.
_target_: {module}.{camel}
name: {name}
max_len: 9
eval_samples: 200
max_epochs: 3
batch_size: 32
train_batches: 50
lr: 1.0e-2
weight_decay: 0.0
gradient_clip: 1.0
monitor: val/acc
monitor_mode: max
datamodule:
  _target_: {module}.{camel}DataModule
  max_len: ${{task.max_len}}
  batch_size: ${{task.batch_size}}
  train_batches: ${{task.train_batches}}
  val_size: 500
  test_size: 500
  eval_samples: ${{task.eval_samples}}
  seed: ${{seed}}
objective:
  _target_: seqnets.models.objectives.Classification
  num_classes: 2
"""

EXPERIMENT = """# @package _global_
# One run of the report's {name} section: python -m seqnets.report sections=[{name}]
defaults:
  - override /task: {name}
  - override /model: gru
model:
  hidden: 8
"""

TASK_TEST = '''"""The {name} task trains through the real command, with this folder's configs."""

import os
import subprocess
import sys
from pathlib import Path

import torch

from {module} import {camel}DataModule

HERE = Path(__file__).resolve().parents[1]


def test_batches_have_the_promised_shapes():
    batch = {camel}DataModule().make(8, torch.Generator().manual_seed(0))
    assert batch["x"].shape[0] == batch["y"].shape[0] == batch["lengths"].shape[0] == 8
    assert batch["x"].shape[-1] == {camel}DataModule.num_features


def test_trains(tmp_path):
    command = [
        sys.executable, "-m", "seqnets.train", "task={name}", "debug=fast",
        f"hydra.searchpath=[file://{{HERE / 'conf'}}]", f"hydra.run.dir={{tmp_path / 'run'}}",
    ]  # fmt: skip
    path = os.pathsep.join(filter(None, [str(HERE), os.environ.get("PYTHONPATH")]))
    env = {{**os.environ, "PYTHONPATH": path}}
    done = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]
    assert (tmp_path / "run" / "metrics.json").exists()
'''

CELL_MODULE = '''"""The {name} cell: a recurrent cell under seqnets' cell contract.

Written by ``python -m seqnets.new cell {name}``: an Elman cell, h_t = tanh(W x_t + U h_(t-1) +
b), computed step by step, stacked and optionally bidirectional. Change ``_step`` (and the
parameters) to make it yours; ``tests/test_{name}_cell.py`` runs the contract's checks
(``seqnets.testing.check_cell``) on it.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.rnn import PackedSequence, pad_packed_sequence

from seqnets.models.cells import Cell, repack


class {camel}(nn.Module, Cell):
    """The contract's constructor; ``forward`` returns ``(output, h_n)`` as ``nn.RNN`` does."""

    gates = 1  # weight blocks stacked per matrix (an LSTM has 4)

    def __init__(
        self,
        input_size: int,
        hidden: int,
        num_layers: int = 1,
        bidirectional: bool = False,
        dropout: float = 0.0,
        batch_first: bool = True,
    ) -> None:
        super().__init__()
        self.hidden_size, self.num_layers = hidden, num_layers
        self.bidirectional, self.dropout, self.batch_first = bidirectional, dropout, batch_first
        directions = 2 if bidirectional else 1
        self.inputs = nn.ModuleList()
        self.recurrent = nn.ModuleList()
        for layer in range(num_layers):
            for _ in range(directions):
                width = input_size if layer == 0 else hidden * directions
                self.inputs.append(nn.Linear(width, hidden))
                self.recurrent.append(nn.Linear(hidden, hidden, bias=False))

    @torch.no_grad()
    def init_weights(self, forget_bias: float = 1.0, orthogonal: bool = True) -> None:
        """Orthogonal recurrent weights keep gradients alive over long sequences; zero
        biases. ``forget_bias`` has no gate to act on here."""
        for linear in self.recurrent:
            if orthogonal:
                nn.init.orthogonal_(linear.weight)
        for linear in self.inputs:
            linear.bias.zero_()

    def _step(self, k: int, drive: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
        """One step of layer-direction ``k``: the cell's equation."""
        return torch.tanh(drive + self.recurrent[k](h))

    def forward(self, input, hx=None):
        packed = isinstance(input, PackedSequence)
        if packed:
            x, lengths = pad_packed_sequence(input, batch_first=True)
            real = torch.arange(x.shape[1]) < lengths[:, None]
        else:
            x = input if self.batch_first else input.transpose(0, 1)
            real = torch.ones(x.shape[:2], dtype=torch.bool)
        real = real.to(x.device)
        directions = 2 if self.bidirectional else 1
        finals, layer_input = [], x
        for layer in range(self.num_layers):
            if layer and self.dropout:
                layer_input = F.dropout(layer_input, self.dropout, self.training)
            outs = []
            for d in range(directions):
                k = layer * directions + d
                drive = self.inputs[k](layer_input)
                h = drive.new_zeros(drive.shape[0], self.hidden_size)
                if hx is not None:
                    h = hx[k]
                seq = [h] * drive.shape[1]
                steps = range(drive.shape[1])
                # Padding never changes a state; the backward direction starts at each
                # sequence's own last step.
                for t in reversed(steps) if d else steps:
                    h = torch.where(real[:, t, None], self._step(k, drive[:, t], h), h)
                    seq[t] = h * real[:, t, None]
                outs.append(torch.stack(seq, 1))
                finals.append(h)
            layer_input = torch.cat(outs, -1)
        h_n = torch.stack(finals)
        if packed:
            return repack(layer_input, input), h_n
        return (layer_input if self.batch_first else layer_input.transpose(0, 1)), h_n
'''

CELL_CONFIG = """# The {name} cell ({module}.py): python -m seqnets.train model={name} ...
_target_: seqnets.models.backbone.RecurrentBackbone
cell: {module}.{camel}
hidden: 128
num_layers: 1
bidirectional: false
# Between stacked layers only.
dropout: 0.0
forget_bias: 0.0
orthogonal: true
"""

CELL_TEST = '''"""The {name} cell meets seqnets' cell contract (check_cell)."""

from seqnets.testing import check_cell


def test_{name}_meets_the_cell_contract():
    check_cell("{module}.{camel}")
'''

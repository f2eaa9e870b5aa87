"""A cell written outside the package, as a user would write one (docs/extending.md, "Adding
a cell"): IndRNN (Li et al., 2018), h_t = relu(W x_t + u * h_{t-1} + b), each unit with its
own scalar recurrent weight. It uses only seqnets' public API (``Cell`` and ``repack``), and
``model.cell=tests.outside_cell.IndRNN`` names it; nothing in ``src/seqnets/`` knows it."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.rnn import PackedSequence, pad_packed_sequence

from seqnets.models.cells import Cell, repack


class IndRNN(nn.Module, Cell):
    """IndRNN, stacked and optionally bidirectional, under the cell contract."""

    gates = 1

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
        self.recurrent = nn.ParameterList()
        for layer in range(num_layers):
            for _ in range(directions):
                width = input_size if layer == 0 else hidden * directions
                self.inputs.append(nn.Linear(width, hidden))
                self.recurrent.append(nn.Parameter(torch.empty(hidden).uniform_(0, 1)))

    @torch.no_grad()
    def init_weights(self, forget_bias: float = 1.0, orthogonal: bool = True) -> None:
        """Recurrent weights in (0, 1) keep the state from exploding; zero biases."""
        for u in self.recurrent:
            u.uniform_(0, 1)
        for linear in self.inputs:
            linear.bias.zero_()

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
                seq = [h] * drive.shape[1]
                steps = range(drive.shape[1])
                for t in reversed(steps) if d else steps:
                    new = torch.relu(drive[:, t] + self.recurrent[k] * h)
                    h = torch.where(real[:, t, None], new, h)
                    seq[t] = h * real[:, t, None]
                outs.append(torch.stack(seq, 1))
                finals.append(h)
            layer_input = torch.cat(outs, -1)
        h_n = torch.stack(finals)
        if packed:
            return repack(layer_input, input), h_n
        return (layer_input if self.batch_first else layer_input.transpose(0, 1)), h_n

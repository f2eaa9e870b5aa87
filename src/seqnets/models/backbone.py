"""One recurrent backbone for every task, cell type, size, depth and direction."""

from __future__ import annotations

import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from seqnets.errors import check_bool, check_choice, check_int, check_real

CELLS: dict[str, type[nn.RNNBase]] = {"rnn": nn.RNN, "lstm": nn.LSTM, "gru": nn.GRU}
# Gates stacked in each weight matrix, in PyTorch's order (LSTM: i, f, g, o; GRU: r, z, n).
GATES = {"rnn": 1, "lstm": 4, "gru": 3}


def describe_model(cell: str, hidden: int, num_layers: int = 1, bidirectional: bool = False) -> str:
    """A short name for a backbone, shared by figures and tables: ``bilstm h=128 x2``."""
    layers = f" x{num_layers}" if num_layers > 1 else ""
    return f"{'bi' if bidirectional else ''}{cell} h={hidden}{layers}"


def parameter_count(
    input_size: int, cell: str, hidden: int, num_layers: int = 1, bidirectional: bool = False
) -> int:
    """Parameters of a backbone, computed without building it: a size check must not try to
    allocate the 160 GB that ``model.hidden=1000000000`` asks for."""
    directions = 2 if bidirectional else 1
    total = 0
    for layer in range(num_layers):
        inputs = input_size if layer == 0 else hidden * directions
        total += directions * GATES[cell] * hidden * (inputs + hidden + 2)
    return total


class RecurrentBackbone(nn.Module):
    """A stack of RNN, LSTM or GRU layers that reads a batch of (possibly ragged) sequences.

    It returns the per-step outputs (for per-step readouts such as binary addition) and the
    final features: each sequence's state at its *true* last step, both directions'
    final states concatenated when bidirectional (for last-step readouts such as MNIST rows
    and index memory). Ragged batches are packed, so padding never reaches a state.
    """

    def __init__(
        self,
        input_size: int,
        cell: str = "lstm",
        hidden: int = 128,
        num_layers: int = 1,
        bidirectional: bool = False,
        dropout: float = 0.0,
        forget_bias: float = 1.0,
        orthogonal: bool = True,
    ) -> None:
        super().__init__()
        self.cell = check_choice("model.cell", cell, tuple(CELLS))
        self.hidden = check_int("model.hidden", hidden, 1)
        self.num_layers = check_int("model.num_layers", num_layers, 1)
        check_int("input_size", input_size, 1)
        dropout = check_real("model.dropout", dropout, 0.0, 1.0, high_open=True)
        forget_bias = check_real("model.forget_bias", forget_bias)
        check_bool("model.orthogonal", orthogonal)
        self.bidirectional = check_bool("model.bidirectional", bidirectional)
        self.num_directions = 2 if self.bidirectional else 1
        self.output_size = self.hidden * self.num_directions
        self.rnn = CELLS[cell](
            input_size,
            hidden,
            num_layers=num_layers,
            bidirectional=self.bidirectional,
            # PyTorch applies dropout between layers only; with one layer it would only warn.
            dropout=dropout if num_layers > 1 else 0.0,
            batch_first=True,
        )
        self.reset_parameters(forget_bias=forget_bias, orthogonal=orthogonal)

    def describe(self) -> str:
        """A short name for titles, e.g. ``bilstm h=128 x2``."""
        return describe_model(self.cell, self.hidden, self.num_layers, self.bidirectional)

    @torch.no_grad()
    def reset_parameters(self, forget_bias: float = 1.0, orthogonal: bool = True) -> None:
        """Orthogonal recurrent weights keep gradients from vanishing or exploding over the
        28..100 steps these tasks span; a positive LSTM forget-gate bias makes the cell
        remember by default early in training (Jozefowicz et al., 2015)."""
        for name, param in self.rnn.named_parameters():
            if name.startswith("weight_hh") and orthogonal:
                for block in param.chunk(GATES[self.cell], dim=0):
                    nn.init.orthogonal_(block)
            elif name.startswith("bias"):
                param.zero_()
                if self.cell == "lstm" and name.startswith("bias_ih"):
                    param[self.hidden : 2 * self.hidden] = forget_bias

    def forward(
        self, x: torch.Tensor, lengths: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Read ``x`` of shape (batch, steps, features); ``lengths`` marks ragged sequences.

        Returns ``(outputs, final)``: outputs of shape (batch, steps, output_size), zero past
        each sequence's end, and final of shape (batch, output_size).
        """
        steps = x.shape[1]
        if lengths is not None:
            # pack_padded_sequence wants the lengths on the CPU.
            packed = pack_padded_sequence(x, lengths.cpu(), batch_first=True, enforce_sorted=False)
            packed_out, state = self.rnn(packed)
            outputs, _ = pad_packed_sequence(packed_out, batch_first=True, total_length=steps)
        else:
            outputs, state = self.rnn(x)
        h_n = state[0] if isinstance(state, tuple) else state
        # h_n: (layers * directions, batch, hidden); the last layer's directions come last.
        final = torch.cat(list(h_n[-self.num_directions :]), dim=-1)
        return outputs, final

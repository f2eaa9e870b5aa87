"""One recurrent backbone for every task, cell type, size, depth and direction."""

from __future__ import annotations

import os

import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from seqnets.errors import ConfigError, check_bool, check_int, check_real
from seqnets.models.cells import CELLS, Cell, cell_class, cell_name

__all__ = ["CELLS", "RecurrentBackbone", "cell_class", "describe_model", "parameter_count"]

# Parameters, gradients and Adam's two moments, in float32.
BYTES_PER_PARAMETER = 16


def describe_model(cell: str, hidden: int, num_layers: int = 1, bidirectional: bool = False) -> str:
    """A short name for a backbone, shared by figures and tables: ``bilstm h=128 x2`` (a cell
    named by import path by its class name: ``IndRNN h=8``)."""
    layers = f" x{num_layers}" if num_layers > 1 else ""
    return f"{'bi' if bidirectional else ''}{cell_name(cell)} h={hidden}{layers}"


def parameter_count(
    input_size: int, cell: str, hidden: int, num_layers: int = 1, bidirectional: bool = False
) -> int:
    """Parameters of a backbone, counted on its cell built on the meta device (shapes, no
    storage): true for any cell, and a size check never tries to allocate the 160 GB that
    ``model.hidden=1000000000`` asks for.

    Shapes so large that PyTorch's own size arithmetic overflows (a GRU with hidden 10**9
    has a 3e9 x 1e9 recurrent weight, 1.2e19 bytes) are counted by building the cell with
    hidden 1, 2 and 3 and extending the quadratic through those counts: a recurrent cell's
    weights are at most hidden x hidden, so its count is a polynomial of degree 2 in hidden.
    """
    try:
        return _meta_count(input_size, cell, hidden, num_layers, bidirectional)
    except RuntimeError:
        if hidden <= 3:
            raise
    return _extrapolated_count(input_size, cell, hidden, num_layers, bidirectional)


def _extrapolated_count(
    input_size: int, cell: str, hidden: int, num_layers: int, bidirectional: bool
) -> int:
    """The count at ``hidden`` from the counts at hidden 1, 2 and 3 (Newton's forward
    differences through a quadratic), exact in Python integers."""
    p1, p2, p3 = (_meta_count(input_size, cell, h, num_layers, bidirectional) for h in (1, 2, 3))
    n = hidden - 1
    return p1 + n * (p2 - p1) + n * (n - 1) // 2 * (p3 - 2 * p2 + p1)


def _meta_count(
    input_size: int, cell: str, hidden: int, num_layers: int, bidirectional: bool
) -> int:
    with torch.device("meta"):
        rnn = cell_class(cell)(
            input_size, hidden, num_layers=num_layers, bidirectional=bidirectional
        )
    return sum(p.numel() for p in rnn.parameters())


class RecurrentBackbone(nn.Module):
    """A stack of recurrent layers (a cell of :data:`CELLS`, or any class under the cell
    contract named by import path) that reads a batch of
    (possibly ragged) sequences.

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
        self.cell, self.hidden, self.num_layers, self.bidirectional = self.check_arguments(
            input_size, cell, hidden, num_layers, bidirectional, dropout, forget_bias, orthogonal
        )
        cls = cell_class(cell)
        self.num_directions = 2 if self.bidirectional else 1
        self.output_size = self.hidden * self.num_directions
        self.rnn: Cell = cls(
            input_size,
            hidden,
            num_layers=num_layers,
            bidirectional=self.bidirectional,
            # Dropout acts between layers only; with one layer PyTorch's cells would only warn.
            dropout=dropout if num_layers > 1 else 0.0,
            batch_first=True,
        )
        # The cell's own initialisation: see each cell's init_weights.
        self.rnn.init_weights(forget_bias=forget_bias, orthogonal=orthogonal)

    @staticmethod
    def check_arguments(
        input_size: int,
        cell: str = "lstm",
        hidden: int = 128,
        num_layers: int = 1,
        bidirectional: bool = False,
        dropout: float = 0.0,
        forget_bias: float = 1.0,
        orthogonal: bool = True,
    ) -> tuple[str, int, int, bool]:
        """The constructor's arguments checked, without building anything: the config check
        calls it before any work, the constructor again. A network too large for this
        machine's memory (parameters, gradients and Adam's state over half of it) is refused
        here rather than by the kernel's out-of-memory killer. Returns (cell, hidden, layers,
        bidirectional)."""
        cell_class(cell)  # a built-in name, or a class under the cell contract
        hidden = check_int("model.hidden", hidden, 1)
        num_layers = check_int("model.num_layers", num_layers, 1)
        check_int("input_size", input_size, 1)
        check_real("model.dropout", dropout, 0.0, 1.0, high_open=True)
        check_real("model.forget_bias", forget_bias)
        check_bool("model.orthogonal", orthogonal)
        bidirectional = check_bool("model.bidirectional", bidirectional)
        params = parameter_count(input_size, cell, hidden, num_layers, bidirectional)
        need = params * BYTES_PER_PARAMETER
        have = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
        if need > have / 2:
            raise ConfigError(
                f"model.hidden={hidden} (x{num_layers} layers) is not allowed here: {params:,} "
                f"parameters need about {need / 2**30:,.1f} GiB with their gradients and "
                f"Adam's state, more than half of this machine's {have / 2**30:.0f} GiB"
            )
        return cell, hidden, num_layers, bidirectional

    def describe(self) -> str:
        """A short name for titles, e.g. ``bilstm h=128 x2``."""
        return describe_model(self.cell, self.hidden, self.num_layers, self.bidirectional)

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

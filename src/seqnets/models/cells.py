"""The built-in recurrent cells (RNN, LSTM, GRU, minGRU), each under the cell contract
(:mod:`seqnets.models.cell_contract`), and :func:`cell_class`, the one lookup from a
``model.cell`` name to a class.

:data:`CELLS` is the only place that names the built-in cells; :func:`cell_class` also takes a
class by import path (``model.cell=mycells.IndRNN``), so a cell written in a user's own folder
needs no change here.
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.rnn import PackedSequence, pad_packed_sequence

from seqnets.errors import ConfigError, import_by_path
from seqnets.models.cell_contract import Cell, check_cell_class, repack


def _pytorch_init(module: nn.RNNBase, gates: int, orthogonal: bool) -> None:
    """Orthogonal blocks (one per gate) for each ``weight_hh`` and zero biases, in the order
    of ``named_parameters`` (the random draws of a seeded run depend on that order)."""
    for name, param in module.named_parameters():
        if name.startswith("weight_hh") and orthogonal:
            for block in param.chunk(gates, dim=0):
                nn.init.orthogonal_(block)
        elif name.startswith("bias"):
            param.zero_()


class PyTorchCell(Cell):
    """What the wrappers of PyTorch's own layers share: the contract's constructor (passed on
    to ``nn.RNN``/``nn.LSTM``/``nn.GRU``, which come after this class in each wrapper's
    bases) and their initialisation."""

    def __init__(self, input_size: int, hidden: int, batch_first: bool = True, **options: Any):
        # ``options``: the contract's num_layers, bidirectional and dropout, PyTorch's names.
        super().__init__(input_size, hidden, batch_first=batch_first, **options)

    @torch.no_grad()
    def init_weights(self, forget_bias: float = 1.0, orthogonal: bool = True) -> None:
        """Orthogonal recurrent weights, one block per gate, keep gradients from vanishing or
        exploding over the 28..100 steps these tasks span; biases start at zero."""
        _pytorch_init(self, self.gates, orthogonal)


class RNN(PyTorchCell, nn.RNN):
    """``nn.RNN`` (tanh) under the cell contract. ``forget_bias`` does not apply (no gate)."""

    gates = 1


class GRU(PyTorchCell, nn.GRU):
    """``nn.GRU`` (gates r, z, n) under the cell contract. ``forget_bias`` is not used:
    PyTorch's GRU has no forget gate, and its zero-bias update gate starts half open."""

    gates = 3


class LSTM(PyTorchCell, nn.LSTM):
    """``nn.LSTM`` (gates i, f, g, o) under the cell contract; ``states`` adds the per-step
    cell states ``c``."""

    gates = 4
    extra_states = ("c",)

    @torch.no_grad()
    def init_weights(self, forget_bias: float = 1.0, orthogonal: bool = True) -> None:
        """Orthogonal blocks per gate for the recurrent weights, zero biases but a forget-gate
        bias of ``forget_bias`` in ``bias_ih``: a positive one makes the cell remember by
        default early in training (Jozefowicz et al., 2015)."""
        super().init_weights(forget_bias, orthogonal)
        hidden = self.hidden_size
        for name, param in self.named_parameters():
            if name.startswith("bias_ih"):
                param[hidden : 2 * hidden] = forget_bias

    def states(
        self, x: torch.Tensor, lengths: torch.Tensor | None = None
    ) -> dict[str, torch.Tensor]:
        """``{"c": ...}``: the top layer's per-step cell states, (batch, steps, hidden *
        directions), forward direction first and zero past each sequence's end."""
        return {"c": self.replay(x, lengths)[1]}

    def replay(
        self, x: torch.Tensor, lengths: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Per-step hidden and cell states of the top layer, laid out as the backbone's
        outputs. ``nn.LSTM`` returns the cell state only after the last step, and the cell
        state is where an LSTM may keep e.g. a carry, so the equations are replayed here from
        the module's own weights (no inter-layer dropout: an eval-mode analysis)."""
        if self.proj_size:
            raise ValueError("LSTM.states does not handle LSTMs with proj_size > 0")
        if not self.batch_first:
            raise ValueError("LSTM.states reads batch-first input")
        steps = x.shape[1]
        if lengths is None:
            real = torch.ones(x.shape[:2], dtype=torch.bool, device=x.device)
        else:
            real = torch.arange(steps, device=x.device) < lengths.to(x.device)[:, None]
        directions = 2 if self.bidirectional else 1
        layer_input = x
        cells = x
        for layer in range(self.num_layers):
            hs, cs = [], []
            for direction in range(directions):
                suffix = f"l{layer}{'_reverse' if direction else ''}"
                w_ih = getattr(self, f"weight_ih_{suffix}")
                w_hh = getattr(self, f"weight_hh_{suffix}")
                gates_in = layer_input @ w_ih.T
                if self.bias:
                    gates_in = gates_in + getattr(self, f"bias_ih_{suffix}")
                    gates_in = gates_in + getattr(self, f"bias_hh_{suffix}")
                h_seq, c_seq = _lstm_direction(gates_in, w_hh, real, reverse=bool(direction))
                hs.append(h_seq)
                cs.append(c_seq)
            layer_input, cells = torch.cat(hs, dim=-1), torch.cat(cs, dim=-1)
        return layer_input, cells


def _lstm_direction(
    gates_in: torch.Tensor, w_hh: torch.Tensor, real: torch.Tensor, reverse: bool
) -> tuple[torch.Tensor, torch.Tensor]:
    """One LSTM layer in one direction, from its input-side gate pre-activations.

    The state changes only at real steps, so that reading right to left each sequence starts
    from a zero state at its own last step, as a packed sequence does."""
    batch, steps, _ = gates_in.shape
    hidden = w_hh.shape[1]
    h = gates_in.new_zeros(batch, hidden)
    c = gates_in.new_zeros(batch, hidden)
    h_seq = gates_in.new_zeros(batch, steps, hidden)
    c_seq = gates_in.new_zeros(batch, steps, hidden)
    for t in reversed(range(steps)) if reverse else range(steps):
        i, f, g, o = (gates_in[:, t] + h @ w_hh.T).chunk(4, dim=-1)
        c_new = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
        h_new = torch.sigmoid(o) * torch.tanh(c_new)
        step_real = real[:, t, None]
        h = torch.where(step_real, h_new, h)
        c = torch.where(step_real, c_new, c)
        h_seq[:, t], c_seq[:, t] = h * step_real, c * step_real
    return h_seq, c_seq


class MinGRU(nn.Module, Cell):
    """minGRU (Feng et al., 2024, "Were RNNs All We Needed?"): both gates read the current
    input only, so the state enters linearly:

        z_t = sigmoid(W_z x_t + b_z),  h~_t = W_h x_t + b_h,  h_t = (1 - z_t) * h_{t-1} + z_t * h~_t

    computed here in its sequential form (a loop over steps). Parameters per layer and
    direction: ``weight_ih_l{k}`` and ``bias_ih_l{k}`` (``_reverse`` for the backward one),
    the z and h~ blocks stacked (``gates = 2``); no recurrent weights.
    """

    gates = 2

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
        self.input_size = input_size
        self.hidden_size = hidden
        self.num_layers = num_layers
        self.bidirectional = bidirectional
        self.dropout = float(dropout)
        self.batch_first = batch_first
        directions = 2 if bidirectional else 1
        self._names: list[list[str]] = []
        for layer in range(num_layers):
            inputs = input_size if layer == 0 else hidden * directions
            names = []
            for direction in range(directions):
                suffix = f"l{layer}{'_reverse' if direction else ''}"
                weight = nn.Parameter(torch.empty(self.gates * hidden, inputs))
                bias = nn.Parameter(torch.empty(self.gates * hidden))
                self.register_parameter(f"weight_ih_{suffix}", weight)
                self.register_parameter(f"bias_ih_{suffix}", bias)
                names.append(suffix)
            self._names.append(names)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """PyTorch's default for its recurrent layers: uniform in +-1/sqrt(hidden)."""
        bound = 1.0 / math.sqrt(self.hidden_size)
        for param in self.parameters():
            nn.init.uniform_(param, -bound, bound)

    @torch.no_grad()
    def init_weights(self, forget_bias: float = 1.0, orthogonal: bool = True) -> None:
        """Zero biases, but the z-gate bias at ``-forget_bias``: a positive ``forget_bias``
        keeps the update gate mostly shut, so the cell remembers by default early in
        training. ``orthogonal`` has nothing to act on: minGRU has no recurrent weights (its
        input weights keep PyTorch's uniform initialisation)."""
        hidden = self.hidden_size
        for name, param in self.named_parameters():
            if name.startswith("bias"):
                param.zero_()
                param[:hidden] = -forget_bias

    def extra_repr(self) -> str:
        text = f"{self.input_size}, {self.hidden_size}, num_layers={self.num_layers}"
        if self.bidirectional:
            text += ", bidirectional=True"
        if self.dropout:
            text += f", dropout={self.dropout}"
        return text + f", batch_first={self.batch_first}"

    def forward(
        self, input: torch.Tensor | PackedSequence, hx: torch.Tensor | None = None
    ) -> tuple[torch.Tensor | PackedSequence, torch.Tensor]:
        """Read ``input`` (a tensor, batch first when ``batch_first``, or a PackedSequence);
        ``hx`` (num_layers * directions, batch, hidden) is the initial state, zero if None.
        Returns ``(output, h_n)`` as ``nn.GRU`` does; with packed input ``hx`` and ``h_n``
        are in the caller's batch order (as ``nn.GRU``'s)."""
        packed = isinstance(input, PackedSequence)
        if packed:
            x, lengths = pad_packed_sequence(input, batch_first=True)
            real = torch.arange(x.shape[1], device=x.device) < lengths.to(x.device)[:, None]
        else:
            x = input if self.batch_first else input.transpose(0, 1)
            real = torch.ones(x.shape[:2], dtype=torch.bool, device=x.device)
        batch = x.shape[0]
        directions = 2 if self.bidirectional else 1
        if hx is None:
            hx = x.new_zeros(self.num_layers * directions, batch, self.hidden_size)
        finals = []
        layer_input = x
        for layer, suffixes in enumerate(self._names):
            if layer > 0 and self.dropout:
                layer_input = F.dropout(layer_input, self.dropout, self.training)
            outs = []
            for direction, suffix in enumerate(suffixes):
                gates = F.linear(
                    layer_input,
                    getattr(self, f"weight_ih_{suffix}"),
                    getattr(self, f"bias_ih_{suffix}"),
                )
                h0 = hx[layer * directions + direction]
                out, h_n = _mingru_direction(gates, h0, real, reverse=bool(direction))
                outs.append(out)
                finals.append(h_n)
            layer_input = torch.cat(outs, dim=-1)
        h_n = torch.stack(finals)
        if packed:
            return repack(layer_input, input), h_n
        return (layer_input if self.batch_first else layer_input.transpose(0, 1)), h_n


def _mingru_direction(
    gates: torch.Tensor, h: torch.Tensor, real: torch.Tensor, reverse: bool
) -> tuple[torch.Tensor, torch.Tensor]:
    """One minGRU layer in one direction from its gate pre-activations (batch, steps,
    2 * hidden). The state changes only at real steps and the outputs are zero elsewhere.
    Returns the per-step outputs (batch, steps, hidden) and the final state (batch, hidden)."""
    z_logit, candidate = gates.chunk(2, dim=-1)
    z = torch.sigmoid(z_logit)
    steps = gates.shape[1]
    outs: list[torch.Tensor] = [h] * steps
    for t in reversed(range(steps)) if reverse else range(steps):
        step_real = real[:, t, None]
        h = torch.where(step_real, (1 - z[:, t]) * h + z[:, t] * candidate[:, t], h)
        outs[t] = h * step_real
    return torch.stack(outs, dim=1), h


CELLS: dict[str, type[Cell]] = {
    "rnn": RNN,
    "lstm": LSTM,
    "gru": GRU,
    "mingru": MinGRU,
}


def cell_class(name: str) -> type[Cell]:
    """The cell class ``model.cell`` names: a built-in cell by its :data:`CELLS` name, or any
    class by import path (``mycells.IndRNN``, importable from ``PYTHONPATH``), checked against
    the contract's declarations before anything is built, so that a class that is not a cell
    fails here in one line instead of deep inside the first training step."""
    if isinstance(name, str) and name in CELLS:
        return CELLS[name]
    if not isinstance(name, str) or "." not in name:
        raise ConfigError(
            f"model.cell={name!r} is not allowed: choose one of {', '.join(CELLS)} or give a "
            f"class by import path (e.g. mycells.IndRNN)"
        )
    cls = import_by_path("model.cell", name)
    check_cell_class(cls, name)
    return cls


def cell_name(name: str) -> str:
    """The short name of a cell in titles and tables: ``lstm``, or ``IndRNN`` for
    ``mycells.IndRNN``."""
    return str(name).rsplit(".", 1)[-1]

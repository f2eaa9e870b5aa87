"""Several small backbones of the same PyTorch cell run as one call of that cell's kernel.

A sweep of tiny models (hidden 2..20) on the same batches spends its time in per-call
overhead, not in arithmetic: one LSTM of hidden ``sum(H_k)`` whose weights are block-diagonal
(each member's block, gate by gate) computes every member's recurrence in one kernel call,
as the members would alone, since the zero blocks keep the members apart. The results agree
to rounding, not bit for bit: the fused matrix products sum in another order.

On the CPU a ragged batch runs unpacked: every sequence steps on to the batch's longest
length, and what lies past its end is dropped (its outputs zeroed, as ``pad_packed_sequence``
leaves them; its final state read at its own last step). The recurrence is causal, so the
steps up to a sequence's end compute what its packed call computes. PyTorch runs an
unpacked LSTM through oneDNN, about twice as fast as its packed loop at these sizes, forward
and backward (``benchmarks/fused_kernel.py``), which buys more than the padded steps cost;
GRU and RNN cells run a little faster unpacked. On a GPU the batch is
packed (cuDNN).

The fused weights are rebuilt from the members' own parameters at every forward, with
differentiable ops (``torch.cat``, ``torch.block_diag``, ``index_select``), so that each
member keeps its parameters, its state_dict and its optimiser state, and autograd hands each
parameter exactly its own gradient.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence

import torch
from torch import nn
from torch.nn.utils.rnn import PackedSequence, pack_padded_sequence, pad_packed_sequence

from seqnets.models.backbone import RecurrentBackbone
from seqnets.models.cells import GRU, LSTM, RNN

__all__ = ["FusedBackbones", "fusable"]

Result = tuple[torch.Tensor, torch.Tensor]


def fusable(backbone: RecurrentBackbone) -> bool:
    """Whether ``backbone`` can join a fused call and give exactly its own results.

    Exact classes only (a subclass may change ``forward``, which the fused call would skip);
    a bidirectional layer, a projection or missing biases change the kernel's weight layout,
    and inter-layer dropout would draw other masks than the member's own.
    """
    rnn = backbone.rnn
    return (
        type(backbone) is RecurrentBackbone
        and type(rnn) in (RNN, LSTM, GRU)
        and not rnn.bidirectional
        and rnn.bias
        and rnn.batch_first
        and not getattr(rnn, "proj_size", 0)
        and (rnn.num_layers == 1 or rnn.dropout == 0)
    )


def _kernel(rnn: nn.RNNBase) -> Callable[..., tuple[torch.Tensor, ...]]:
    """The functional kernel ``rnn``'s own forward calls (``torch.lstm`` is ``_VF.lstm``)."""
    if isinstance(rnn, nn.LSTM):
        return torch.lstm
    if isinstance(rnn, nn.GRU):
        return torch.gru
    return torch.rnn_tanh if rnn.nonlinearity == "tanh" else torch.rnn_relu


def _gate_order(hiddens: Sequence[int], gates: int) -> torch.Tensor:
    """Rows of the members' weights stacked member after member, in the order the fused
    kernel wants them: gate by gate, each gate's rows member after member."""
    order = []
    for gate in range(gates):
        offset = 0
        for hidden in hiddens:
            order.extend(
                range(gates * offset + gate * hidden, gates * offset + (gate + 1) * hidden)
            )
            offset += hidden
    return torch.tensor(order)


class _Group:
    """Members with the same cell class, depth, nonlinearity and input size: one kernel
    call."""

    def __init__(self, indices: Sequence[int], rnns: Sequence[nn.RNNBase]) -> None:
        self.indices = tuple(indices)
        self.rnns = tuple(rnns)
        first = rnns[0]
        self.kernel = _kernel(first)
        self.num_layers = first.num_layers
        self.hiddens = [rnn.hidden_size for rnn in rnns]
        self.lstm = isinstance(first, nn.LSTM)
        self._order_cpu = _gate_order(self.hiddens, type(first).gates)
        self._orders: dict[torch.device, torch.Tensor] = {}

    def order(self, device: torch.device) -> torch.Tensor:
        """The row order on ``device``, moved there once."""
        if device not in self._orders:
            self._orders[device] = self._order_cpu.to(device)
        return self._orders[device]

    def weights(self, device: torch.device) -> list[torch.Tensor]:
        """The fused layers' weights, in the kernel's order (per layer: w_ih, w_hh, b_ih,
        b_hh). Layer 0's input weights are stacked (every member reads the same input);
        a higher layer's are block-diagonal (each member reads its own layer below)."""
        order = self.order(device)
        flat = []
        for layer in range(self.num_layers):
            w_ih, w_hh, b_ih, b_hh = (
                [getattr(rnn, f"{name}_l{layer}") for rnn in self.rnns]
                for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh")
            )
            stacked_ih = torch.cat(w_ih) if layer == 0 else torch.block_diag(*w_ih)
            flat += [
                stacked_ih.index_select(0, order),
                torch.block_diag(*w_hh).index_select(0, order),
                torch.cat(b_ih).index_select(0, order),
                torch.cat(b_hh).index_select(0, order),
            ]
        return flat

    def run(self, x: torch.Tensor | PackedSequence) -> tuple[torch.Tensor, torch.Tensor]:
        """The fused kernel on ``x`` (batch first, or packed): (output data, h_n), h_n in the
        caller's batch order."""
        data = x.data if isinstance(x, PackedSequence) else x
        batch = int(x.batch_sizes[0]) if isinstance(x, PackedSequence) else data.shape[0]
        h0 = data.new_zeros(self.num_layers, batch, sum(self.hiddens))
        hx: torch.Tensor | tuple[torch.Tensor, torch.Tensor] = (h0, h0) if self.lstm else h0
        flat = self.weights(data.device)
        # ``train`` only tells cuDNN to keep what its backward needs, as the members would.
        train = any(rnn.training for rnn in self.rnns)
        with warnings.catch_warnings():
            # cuDNN copies weights that are not one flat buffer into one, and warns at each
            # call; these are built anew at each call, so the copy is the point.
            warnings.filterwarnings("ignore", "RNN module weights are not part of single")
            if isinstance(x, PackedSequence):
                result = self.kernel(
                    data, x.batch_sizes, hx, flat, True, self.num_layers, 0.0, train, False
                )
            else:
                result = self.kernel(data, hx, flat, True, self.num_layers, 0.0, train, False, True)
        output, h_n = result[0], result[1]
        if isinstance(x, PackedSequence) and x.unsorted_indices is not None:
            h_n = h_n.index_select(1, x.unsorted_indices)
        return output, h_n


class FusedBackbones(nn.Module):
    """Runs ``backbones`` on the same batch, those that share a PyTorch cell (see
    :func:`fusable`) as one kernel call per group, the others each on its own.

    Holds no parameters: the members belong to their own models (kept in a tuple, not
    registered here), so their state_dicts and optimisers are untouched. A member's forward
    hooks are not called when it runs fused. Drop members with :meth:`only`.
    """

    def __init__(self, backbones: Sequence[RecurrentBackbone]) -> None:
        super().__init__()
        self.members: tuple[RecurrentBackbone, ...] = tuple(backbones)
        by_key: dict[tuple, list[int]] = {}
        for index, member in enumerate(self.members):
            rnn = member.rnn
            key = (
                (type(rnn), rnn.num_layers, getattr(rnn, "nonlinearity", None), rnn.input_size)
                if fusable(member)
                else ("alone", index)
            )
            by_key.setdefault(key, []).append(index)
        # A lone fusable member runs as a group of one: the same kernel, on the fused path's
        # layout (unpacked on the CPU), as its fellows.
        self._groups = [
            _Group(indices, [self.members[i].rnn for i in indices])
            for key, indices in by_key.items()
            if key[0] != "alone"
        ]
        self._alone = tuple(
            i for key, indices in by_key.items() if key[0] == "alone" for i in indices
        )

    def __len__(self) -> int:
        return len(self.members)

    def only(self, keep: Sequence[int]) -> FusedBackbones:
        """A new fusion over the members at ``keep`` (in that order): a member that stopped
        training leaves, and its block no longer costs anything."""
        return FusedBackbones([self.members[i] for i in keep])

    def forward(self, x: torch.Tensor, lengths: torch.Tensor | None = None) -> list[Result]:
        """Each member's ``(outputs, final)`` as ``member(x, lengths)`` returns it, in the
        order given. A ragged batch is packed once for every group."""
        results: list[Result | None] = [None] * len(self.members)
        for index in self._alone:
            results[index] = self.members[index](x, lengths)
        if not self._groups:
            return results  # type: ignore[return-value]
        steps = x.shape[1]
        packed, valid, last = None, None, None
        if lengths is not None and x.device.type == "cpu":  # unpacked (module docstring)
            lengths = lengths.to(x.device)
            valid = (torch.arange(steps, device=x.device) < lengths[:, None]).unsqueeze(-1)
            last = (torch.arange(x.shape[0], device=x.device), lengths - 1)
        elif lengths is not None:
            # pack_padded_sequence wants the lengths on the CPU.
            packed = pack_padded_sequence(x, lengths.cpu(), batch_first=True, enforce_sorted=False)
        for group in self._groups:
            if packed is not None:
                data, h_n = group.run(packed)
                repacked = PackedSequence(
                    data, packed.batch_sizes, packed.sorted_indices, packed.unsorted_indices
                )
                outputs, _ = pad_packed_sequence(repacked, batch_first=True, total_length=steps)
                top = h_n[-1]
            else:
                outputs, h_n = group.run(x)
                top = h_n[-1]
                if valid is not None:
                    outputs = outputs.masked_fill(~valid, 0.0)
                    top = outputs[last]
            finals = top.split(group.hiddens, dim=-1)
            for index, out, final in zip(
                group.indices, outputs.split(group.hiddens, dim=-1), finals, strict=True
            ):
                results[index] = (out, final)
        return results  # type: ignore[return-value]

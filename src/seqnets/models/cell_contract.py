"""The cell contract (:class:`Cell`): what the backbone relies on from any cell, built-in or
a user's. A class named by ``model.cell`` is checked against its declarations
(:func:`check_cell_class`); ``seqnets.testing``'s ``check_cell`` runs the full contract test on
it. :func:`repack` is for cells that compute on a padded batch and must return a
``PackedSequence`` packed as their input was.
"""

from __future__ import annotations

import inspect
from abc import ABC, abstractmethod
from typing import ClassVar

import torch
from torch import nn
from torch.nn.utils.rnn import PackedSequence, pack_padded_sequence

from seqnets.errors import ConfigError

# The constructor arguments the backbone passes to every cell (the contract's constructor).
CELL_ARGUMENTS = ("input_size", "hidden", "num_layers", "bidirectional", "dropout", "batch_first")


class Cell(ABC):
    """The cell contract: what :class:`~seqnets.models.backbone.RecurrentBackbone` relies on.

    A cell is an ``nn.Module`` (this class is a mixin beside it) with

    - a constructor ``(input_size, hidden, num_layers=1, bidirectional=False, dropout=0.0,
      batch_first=True)``; ``dropout`` acts between stacked layers only, in training;
    - ``forward(input)``, ``input`` a (batch, steps, features) tensor (with
      ``batch_first=True``) or a ``PackedSequence``, returning ``(output, state)``: ``output``
      of the same kind as ``input`` (packed exactly as the input was), with features
      ``hidden * directions`` (forward direction first) for the top layer at every step, zero
      past each sequence's end once padded; ``state`` either ``h_n`` of shape
      (num_layers * directions, batch, hidden) (layer by layer, forward before backward,
      each sequence's state at its true last step, the backward direction's after the first
      step) or a tuple whose first element is ``h_n`` (as ``nn.LSTM`` returns ``(h_n, c_n)``).
      A ragged batch never lets padding change a state; the backward direction starts from
      a zero state at each sequence's own last real step;
    - ``init_weights(forget_bias, orthogonal)``: the cell's own initialisation, called once
      after construction (``forget_bias``: a remember-by-default bias where the cell has a
      gate for it; ``orthogonal``: orthogonal recurrent weights, one block per gate, where
      the cell has recurrent weights);
    - ``states(x, lengths)``: the top layer's per-step states besides its outputs, a dict
      name -> (batch, steps, hidden * directions) tensor laid out as the outputs (zero past
      each end); ``{}`` when the outputs are the whole state (RNN, GRU, minGRU);
      ``extra_states`` names its keys, in order (the units an inside analysis lists);
    - ``gates``: how many gate blocks are stacked in each weight matrix.

    Parameter names are the cell's own; the ``nn.RNN``/``nn.LSTM``/``nn.GRU`` wrappers keep
    PyTorch's names so that their checkpoints load unchanged.
    """

    gates: ClassVar[int] = 1
    extra_states: ClassVar[tuple[str, ...]] = ()

    @abstractmethod
    def init_weights(self, forget_bias: float, orthogonal: bool) -> None:
        """The cell's initialisation (see the class docstring)."""

    def states(
        self, x: torch.Tensor, lengths: torch.Tensor | None = None
    ) -> dict[str, torch.Tensor]:
        """Per-step states of the top layer besides the outputs; none by default."""
        return {}


def repack(padded: torch.Tensor, like: PackedSequence) -> PackedSequence:
    """Pack ``padded`` (batch, steps, features), in the caller's batch order, exactly as
    ``like`` was packed: same batch sizes and the same sorting.

    A cell that computes on a padded batch (``pad_packed_sequence(input, batch_first=True)``,
    then a loop over steps) hands back its outputs through this, because the contract wants
    the output packed exactly as the input was (the backbone unpacks it with the input's
    sorting)."""
    order = like.sorted_indices
    if order is not None:
        padded = padded.index_select(0, order.to(padded.device))
    batch_sizes = like.batch_sizes
    # Sorted by length, sequence b is longer than step t exactly when b < batch_sizes[t].
    lengths = (batch_sizes[None, :] > torch.arange(padded.shape[0])[:, None]).sum(1)
    data = pack_padded_sequence(padded, lengths, batch_first=True, enforce_sorted=True).data
    return PackedSequence(data, batch_sizes, like.sorted_indices, like.unsorted_indices)


def check_cell_class(cls: object, name: str = "") -> None:
    """Raise a ConfigError if ``cls`` does not declare what :class:`Cell` asks: an
    ``nn.Module`` subclass that is a :class:`Cell`, with ``gates`` >= 1, ``extra_states`` a
    tuple of names, and a constructor taking the contract's arguments. What a cell computes is
    checked by ``seqnets.testing.check_cell``."""
    where = f"model.cell={name!r}" if name else repr(cls)
    if not (isinstance(cls, type) and issubclass(cls, nn.Module) and issubclass(cls, Cell)):
        raise ConfigError(
            f"{where} is not a cell: a cell subclasses torch.nn.Module and "
            f"seqnets.models.cells.Cell (see the Cell docstring)"
        )
    if inspect.isabstract(cls):
        missing = ", ".join(sorted(cls.__abstractmethods__))
        raise ConfigError(f"{where} is not a complete cell: it does not define {missing}")
    if not (isinstance(cls.gates, int) and cls.gates >= 1):
        raise ConfigError(f"{where} is not a cell: gates={cls.gates!r} must be an integer >= 1")
    if not (
        isinstance(cls.extra_states, tuple) and all(isinstance(k, str) for k in cls.extra_states)
    ):
        raise ConfigError(f"{where} is not a cell: extra_states must be a tuple of names")
    params = inspect.signature(cls).parameters
    if not any(p.kind is p.VAR_KEYWORD for p in params.values()):
        lacking = [a for a in CELL_ARGUMENTS[1:] if a not in params]
        if lacking or len(params) < len(CELL_ARGUMENTS):
            raise ConfigError(
                f"{where} is not a cell: its constructor must take ({', '.join(CELL_ARGUMENTS)})"
                f"{'; it lacks ' + ', '.join(lacking) if lacking else ''}"
            )

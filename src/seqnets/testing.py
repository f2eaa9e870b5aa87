"""The cell contract as a test a user runs on their own cell: ``check_cell(MyCell)``.

The same checks run on every built-in cell (``tests/test_cells.py``), so a cell that passes
here trains, packs ragged batches and is counted like the built-in ones. Each check raises
``AssertionError`` naming the cell, the setting (layers, direction) and what differs; no test
framework is needed (``seqnets.new cell NAME`` writes a pytest file that calls it).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch.nn.utils.rnn import PackedSequence, pack_padded_sequence, pad_packed_sequence
from torch.overrides import TorchFunctionMode

from seqnets.models.backbone import RecurrentBackbone, _extrapolated_count, parameter_count
from seqnets.models.cells import Cell, cell_class, check_cell_class

__all__ = ["CHECKS", "check_cell"]

INPUT, HIDDEN = 3, 4
LENGTHS = torch.tensor([6, 2, 4])  # a ragged batch: unsorted, with padding to strip
SETTINGS = [(layers, bi) for layers in (1, 2) for bi in (False, True)]
# A size check must never allocate: counting a huge cell may create at most this many tensor
# elements off the meta device (a real LSTM of hidden 300 has 3 million).
HUGE_COUNT_ELEMENTS = 100_000


def _cls(cell: type[Cell] | str) -> type[Cell]:
    if isinstance(cell, str):
        return cell_class(cell)
    check_cell_class(cell)
    return cell


def build(cell: type[Cell] | str, num_layers: int = 1, bidirectional: bool = False, **kw: Any):
    """A small seeded cell under the contract's constructor and initialisation."""
    torch.manual_seed(0)
    built = _cls(cell)(INPUT, HIDDEN, num_layers=num_layers, bidirectional=bidirectional, **kw)
    built.init_weights(forget_bias=1.0, orthogonal=True)
    return built


def ragged_batch() -> torch.Tensor:
    """(3, 6, INPUT) inputs, zero past each of ``LENGTHS``."""
    x = torch.randn(3, 6, INPUT, generator=torch.Generator().manual_seed(1))
    for i, n in enumerate(LENGTHS.tolist()):
        x[i, n:] = 0
    return x


def h_n_of(state: Any) -> torch.Tensor:
    """``h_n`` of a cell's state (the state itself, or the first of a tuple)."""
    return state[0] if isinstance(state, tuple) else state


def check_is_a_module(cell: type[Cell] | str) -> None:
    """The class declares the contract (a Cell and an nn.Module, gates >= 1)."""
    cls = _cls(cell)
    assert issubclass(cls, torch.nn.Module) and issubclass(cls, Cell), cls
    assert isinstance(cls.gates, int) and cls.gates >= 1, f"{cls.__name__}.gates={cls.gates!r}"


def check_shapes(cell: type[Cell] | str) -> None:
    """Outputs (batch, steps, hidden * directions) and h_n (layers * directions, batch,
    hidden); the top layer's forward h_n is its output at the last step, the backward one's
    its output at the first."""
    for layers, bi in SETTINGS:
        built = build(cell, layers, bi)
        directions = 2 if bi else 1
        output, state = built(torch.randn(3, 6, INPUT))
        where = f"num_layers={layers}, bidirectional={bi}"
        assert output.shape == (3, 6, HIDDEN * directions), f"{where}: output {output.shape}"
        h_n = h_n_of(state)
        assert h_n.shape == (layers * directions, 3, HIDDEN), f"{where}: h_n {h_n.shape}"
        torch.testing.assert_close(h_n[-directions], output[:, -1, :HIDDEN], msg=where)
        if bi:
            torch.testing.assert_close(h_n[-1], output[:, 0, HIDDEN:], msg=where)


def check_packed_input(cell: type[Cell] | str) -> None:
    """A packed ragged batch gives each sequence what it gets alone, packed exactly as the
    input was, zero past each end."""
    for layers, bi in SETTINGS:
        built = build(cell, layers, bi).eval()
        where = f"num_layers={layers}, bidirectional={bi}"
        x = ragged_batch()
        packed = pack_padded_sequence(x, LENGTHS, batch_first=True, enforce_sorted=False)
        output, state = built(packed)
        assert isinstance(output, PackedSequence), f"{where}: packed input, unpacked output"
        for attr in ("batch_sizes", "sorted_indices", "unsorted_indices"):
            assert torch.equal(getattr(output, attr), getattr(packed, attr)), f"{where}: {attr}"
        padded, lengths = pad_packed_sequence(output, batch_first=True, total_length=6)
        assert torch.equal(lengths, LENGTHS), where
        h_n = h_n_of(state)
        for i, n in enumerate(LENGTHS.tolist()):
            alone, alone_state = built(x[i : i + 1, :n])
            torch.testing.assert_close(padded[i, :n], alone[0], msg=f"{where}: sequence {i}")
            torch.testing.assert_close(
                h_n[:, i], h_n_of(alone_state)[:, 0], msg=f"{where}: h_n of sequence {i}"
            )
            assert torch.all(padded[i, n:] == 0), f"{where}: output past sequence {i}'s end"


def check_padding_never_reaches_a_state(cell: type[Cell] | str) -> None:
    """Other padding values, the same packed answer, bit for bit."""
    built = build(cell, 2, True)
    x = ragged_batch()
    noisy = x.clone()
    for i, n in enumerate(LENGTHS.tolist()):
        noisy[i, n:] = 5.0
    answers = []
    for batch in (x, noisy):
        packed = pack_padded_sequence(batch, LENGTHS, batch_first=True, enforce_sorted=False)
        output, state = built(packed)
        answers.append((pad_packed_sequence(output, batch_first=True)[0], h_n_of(state)))
    torch.testing.assert_close(answers[0], answers[1], rtol=0, atol=0)


class Allocations(TorchFunctionMode):
    """Counts the tensor elements that torch functions called in its scope create off the meta
    device: what a computation allocates, measured the same on a machine of any speed."""

    def __init__(self) -> None:
        super().__init__()
        self.elements = 0

    def __torch_function__(
        self,
        func: Callable[..., Any],
        types: Any,
        args: tuple[Any, ...] = (),
        kwargs: dict[str, Any] | None = None,
    ) -> Any:
        out = func(*args, **(kwargs or {}))
        for value in out if isinstance(out, (tuple, list)) else (out,):
            if isinstance(value, torch.Tensor) and not value.is_meta:
                self.elements += value.numel()
        return out


def check_parameter_count(cell: type[Cell] | str) -> None:
    """The size check's count is the built module's, and a huge cell is counted without
    allocating anything (the check runs before every run)."""
    cls = _cls(cell)
    name = f"{cls.__module__}.{cls.__qualname__}"
    for bi in (False, True):
        real = sum(p.numel() for p in build(cls, 2, bi).parameters())
        assert parameter_count(INPUT, name, HIDDEN, 2, bi) == real, f"bidirectional={bi}"
    with Allocations() as allocated:
        count = parameter_count(28, name, 1_000_000_000, 2, True)
    assert allocated.elements <= HUGE_COUNT_ELEMENTS, (
        f"counting a hidden=1e9 cell allocated {allocated.elements} elements (meta device?)"
    )
    assert count > 10**9
    for size in (1, 7):
        built = cls(28, size, num_layers=2, bidirectional=True)
        assert _extrapolated_count(28, name, size, 2, True) == sum(
            p.numel() for p in built.parameters()
        ), f"the count is not quadratic in hidden at hidden={size}"


def check_init_weights(cell: type[Cell] | str) -> None:
    """``init_weights`` is deterministic under a seed and runs with every setting."""
    a, b = build(cell, 2, True), build(cell, 2, True)
    for (key, p), q in zip(a.state_dict().items(), b.state_dict().values(), strict=True):
        assert torch.equal(p, q), key
    a.init_weights(forget_bias=0.0, orthogonal=False)
    assert all(torch.isfinite(p).all() for p in a.parameters())


def check_backward(cell: type[Cell] | str) -> None:
    """Every parameter gets a finite gradient through a packed batch, with dropout."""
    built = build(cell, 2, True, dropout=0.1).train()
    packed = pack_padded_sequence(ragged_batch(), LENGTHS, batch_first=True, enforce_sorted=False)
    output, state = built(packed)
    (pad_packed_sequence(output, batch_first=True)[0].sum() + h_n_of(state).sum()).backward()
    for key, p in built.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), f"no finite gradient: {key}"


def check_states(cell: type[Cell] | str) -> None:
    """``states`` returns ``extra_states``, laid out as the outputs, zero past each end."""
    built = build(cell, 2, True).eval()
    with torch.no_grad():
        states = built.states(ragged_batch(), LENGTHS)
    assert tuple(states) == type(built).extra_states, (tuple(states), type(built).extra_states)
    for key, value in states.items():
        assert value.shape == (3, 6, 2 * HIDDEN), f"{key}: {tuple(value.shape)}"
        for i, n in enumerate(LENGTHS.tolist()):
            assert torch.all(value[i, n:] == 0), f"{key}: past sequence {i}'s end"


def check_in_a_backbone(cell: type[Cell] | str) -> None:
    """The backbone builds it by import path and reads a ragged batch with it."""
    cls = _cls(cell)
    name = f"{cls.__module__}.{cls.__qualname__}"
    backbone = RecurrentBackbone(INPUT, cell=name, hidden=HIDDEN, num_layers=2, bidirectional=True)
    outputs, final = backbone(ragged_batch(), LENGTHS)
    assert outputs.shape == (3, 6, 2 * HIDDEN) and final.shape == (3, 2 * HIDDEN)


CHECKS: dict[str, Callable[[type[Cell] | str], None]] = {
    "is_a_module": check_is_a_module,
    "shapes": check_shapes,
    "packed_input": check_packed_input,
    "padding_never_reaches_a_state": check_padding_never_reaches_a_state,
    "parameter_count": check_parameter_count,
    "init_weights": check_init_weights,
    "backward": check_backward,
    "states": check_states,
    "in_a_backbone": check_in_a_backbone,
}
"""Every check of the contract, by name (a test may parametrise over them)."""


def check_cell(cell: type[Cell] | str) -> None:
    """Run every check of the cell contract on ``cell`` (a class, a built-in cell's name or an
    import path); the first that fails raises ``AssertionError`` saying which and why."""
    for name, check in CHECKS.items():
        try:
            check(cell)
        except AssertionError as error:
            raise AssertionError(f"{cell!r} fails the cell contract ({name}): {error}") from None

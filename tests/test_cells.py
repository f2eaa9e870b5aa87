"""The cell contract (seqnets.models.cells.Cell), checked for every registered cell and for
a cell written outside the package, with the public test (seqnets.testing.check_cell)."""

import pytest
import torch
from torch.nn.utils.rnn import PackedSequence, pack_padded_sequence, pad_packed_sequence

from seqnets.errors import ConfigError
from seqnets.models.cells import CELLS, LSTM, Cell, cell_class, check_cell_class
from seqnets.testing import (
    CHECKS,
    HIDDEN,
    INPUT,
    LENGTHS,
    build,
    check_cell,
    ragged_batch,
)


@pytest.mark.parametrize("check", list(CHECKS))
@pytest.mark.parametrize("name", list(CELLS))
def test_the_contract(name, check):
    """The public contract test (``seqnets.testing``) on every built-in cell, check by check."""
    CHECKS[check](CELLS[name])


def test_a_cell_written_outside_the_package():
    """tests/outside_cell.py's IndRNN, named by import path, passes the same contract."""
    check_cell("tests.outside_cell.IndRNN")
    assert cell_class("tests.outside_cell.IndRNN").__name__ == "IndRNN"


def test_a_class_that_is_no_cell_gets_one_line():
    with pytest.raises(
        ConfigError, match=r"model.cell='nowhere.Cell' cannot be imported .*PYTHONPATH"
    ):
        cell_class("nowhere.Cell")
    with pytest.raises(ConfigError, match=r"model.cell='torch.nn.Linear' is not a cell"):
        cell_class("torch.nn.Linear")
    with pytest.raises(ConfigError, match=r"model.cell='parrot' is not allowed: choose one of"):
        cell_class("parrot")

    class Half(torch.nn.Module, Cell):
        def __init__(self, input_size, hidden):
            super().__init__()

    with pytest.raises(ConfigError, match=r"does not define init_weights"):
        check_cell_class(Half)
    Half.init_weights = lambda self, forget_bias, orthogonal: None
    Half.__abstractmethods__ = frozenset()
    with pytest.raises(ConfigError, match=r"constructor must take .*lacks num_layers"):
        check_cell_class(Half)


def test_check_cell_names_what_is_wrong():
    """A cell that lets padding into its state fails check_cell with the check's name."""

    class Leaky(LSTM):
        def forward(self, input, hx=None):
            if isinstance(input, PackedSequence):  # forgets to pack: reads the padding
                x, _ = pad_packed_sequence(input, batch_first=True)
                return super().forward(x, hx)
            return super().forward(input, hx)

    with pytest.raises(AssertionError, match=r"fails the cell contract \(packed_input\)"):
        check_cell(Leaky)


def test_a_size_check_that_allocates_fails_the_contract(monkeypatch):
    """The contract measures what counting a huge cell allocates, not how long it takes (a
    machine's speed would decide): a count that builds a real module is refused."""
    import seqnets.testing

    count = seqnets.testing.parameter_count

    def allocating(*args, **kwargs):
        LSTM(28, 300, num_layers=2, bidirectional=True)
        return count(*args, **kwargs)

    monkeypatch.setattr(seqnets.testing, "parameter_count", allocating)
    with pytest.raises(AssertionError, match=r"allocated \d+ elements"):
        CHECKS["parameter_count"](CELLS["lstm"])


# -- LSTM: the replayed equations ----------------------------------------------------------
@pytest.mark.parametrize("bidirectional", [False, True])
def test_lstm_states_replay_the_module(bidirectional):
    torch.manual_seed(0)
    cell = LSTM(4, 5, num_layers=2, bidirectional=bidirectional)
    cell.init_weights(forget_bias=1.0, orthogonal=True)
    x = torch.randn(3, 7, 4)
    with torch.no_grad():
        h, c = cell.replay(x)
        torch.testing.assert_close(cell.states(x)["c"], c, rtol=0, atol=0)
        outputs, (_, c_n) = cell(x)
        torch.testing.assert_close(h, outputs, atol=1e-5, rtol=1e-5)
        # The top layer's final cell states: forward after the last step, backward after
        # the first (it reads right to left).
        torch.testing.assert_close(c[:, -1, :5], c_n[-2 if bidirectional else -1])
        if bidirectional:
            torch.testing.assert_close(c[:, 0, 5:], c_n[-1])


@pytest.mark.parametrize("bidirectional", [False, True])
def test_lstm_states_of_ragged_sequences(bidirectional):
    """Each sequence's cell states equal those of the sequence alone, and the backward
    direction starts at each sequence's own last step (as the packed module does)."""
    cell = build("lstm", 2, bidirectional).eval()
    x = ragged_batch()
    with torch.no_grad():
        h, c = cell.replay(x, LENGTHS)
        packed = pack_padded_sequence(x, LENGTHS, batch_first=True, enforce_sorted=False)
        outputs = pad_packed_sequence(cell(packed)[0], batch_first=True, total_length=6)[0]
        torch.testing.assert_close(h, outputs, atol=1e-5, rtol=1e-5)
        for i, n in enumerate(LENGTHS.tolist()):
            _, c_alone = cell.replay(x[i : i + 1, :n])
            torch.testing.assert_close(c[i, :n], c_alone[0], atol=1e-6, rtol=1e-6)
            assert torch.all(c[i, n:] == 0)


# -- minGRU: the paper's equations ---------------------------------------------------------
def test_mingru_follows_the_equations():
    cell = build("mingru")
    x = torch.randn(2, 5, INPUT)
    with torch.no_grad():
        output, h_n = cell(x)
        z_logit, candidate = torch.nn.functional.linear(
            x, cell.weight_ih_l0, cell.bias_ih_l0
        ).chunk(2, dim=-1)
        h = torch.zeros(2, HIDDEN)
        for t in range(5):
            z = torch.sigmoid(z_logit[:, t])
            h = (1 - z) * h + z * candidate[:, t]
            torch.testing.assert_close(output[:, t], h)
    torch.testing.assert_close(h_n[0], h)


def test_mingru_init():
    cell = CELLS["mingru"](INPUT, HIDDEN, num_layers=2, bidirectional=True)
    cell.init_weights(forget_bias=1.5, orthogonal=True)
    for name, p in cell.named_parameters():
        if name.startswith("bias"):
            assert torch.all(p[:HIDDEN] == -1.5) and torch.all(p[HIDDEN:] == 0)
    assert not any("weight_hh" in name for name, _ in cell.named_parameters())


def test_mingru_batch_first_false_and_initial_state():
    cell = build("mingru", 2, True)
    x = torch.randn(3, 6, INPUT)
    hx = torch.randn(4, 3, HIDDEN)
    other = CELLS["mingru"](INPUT, HIDDEN, num_layers=2, bidirectional=True, batch_first=False)
    other.load_state_dict(cell.state_dict())
    out_a, h_a = cell(x, hx)
    out_b, h_b = other(x.transpose(0, 1), hx)
    torch.testing.assert_close(out_a, out_b.transpose(0, 1))
    torch.testing.assert_close(h_a, h_b)
    assert not torch.allclose(cell(x)[0], out_a)

"""The cell contract (seqnets.models.cells.Cell), checked for every registered cell."""

import subprocess
import sys
import textwrap

import pytest
import torch
from torch.nn.utils.rnn import PackedSequence, pack_padded_sequence, pad_packed_sequence

from seqnets.models.backbone import _extrapolated_count, parameter_count
from seqnets.models.cells import CELLS, LSTM, Cell

INPUT, HIDDEN = 3, 4
LENGTHS = torch.tensor([6, 2, 4])


def build(name: str, num_layers: int = 1, bidirectional: bool = False, **kwargs) -> Cell:
    torch.manual_seed(0)
    cell = CELLS[name](INPUT, HIDDEN, num_layers=num_layers, bidirectional=bidirectional, **kwargs)
    cell.init_weights(forget_bias=1.0, orthogonal=True)
    return cell


def ragged_batch() -> torch.Tensor:
    x = torch.randn(3, 6, INPUT, generator=torch.Generator().manual_seed(1))
    for i, n in enumerate(LENGTHS.tolist()):
        x[i, n:] = 0
    return x


def h_n_of(state) -> torch.Tensor:
    return state[0] if isinstance(state, tuple) else state


@pytest.mark.parametrize("name", list(CELLS))
def test_is_a_cell_module(name):
    assert issubclass(CELLS[name], Cell) and issubclass(CELLS[name], torch.nn.Module)
    assert CELLS[name].gates >= 1


@pytest.mark.parametrize("name", list(CELLS))
@pytest.mark.parametrize("bidirectional", [False, True])
@pytest.mark.parametrize("num_layers", [1, 2])
def test_shapes(name, bidirectional, num_layers):
    cell = build(name, num_layers, bidirectional)
    directions = 2 if bidirectional else 1
    output, state = cell(torch.randn(3, 6, INPUT))
    assert output.shape == (3, 6, HIDDEN * directions)
    assert h_n_of(state).shape == (num_layers * directions, 3, HIDDEN)
    # The top layer's forward h_n is its output at the last step, the backward one's at the first.
    torch.testing.assert_close(h_n_of(state)[-directions], output[:, -1, :HIDDEN])
    if bidirectional:
        torch.testing.assert_close(h_n_of(state)[-1], output[:, 0, HIDDEN:])


@pytest.mark.parametrize("name", list(CELLS))
@pytest.mark.parametrize("bidirectional", [False, True])
@pytest.mark.parametrize("num_layers", [1, 2])
def test_packed_input_equals_each_sequence_alone(name, bidirectional, num_layers):
    cell = build(name, num_layers, bidirectional).eval()
    x = ragged_batch()
    packed = pack_padded_sequence(x, LENGTHS, batch_first=True, enforce_sorted=False)
    output, state = cell(packed)
    assert isinstance(output, PackedSequence)
    assert torch.equal(output.batch_sizes, packed.batch_sizes)
    assert torch.equal(output.sorted_indices, packed.sorted_indices)
    assert torch.equal(output.unsorted_indices, packed.unsorted_indices)
    padded, lengths = pad_packed_sequence(output, batch_first=True, total_length=6)
    assert torch.equal(lengths, LENGTHS)
    h_n = h_n_of(state)
    for i, n in enumerate(LENGTHS.tolist()):
        alone, alone_state = cell(x[i : i + 1, :n])
        torch.testing.assert_close(padded[i, :n], alone[0])
        torch.testing.assert_close(h_n[:, i], h_n_of(alone_state)[:, 0])
        assert torch.all(padded[i, n:] == 0)  # zero past each sequence's end


@pytest.mark.parametrize("name", list(CELLS))
def test_padding_never_reaches_a_state(name):
    """Different padding values, same packed answer."""
    cell = build(name, 2, True)
    x = ragged_batch()
    noisy = x.clone()
    for i, n in enumerate(LENGTHS.tolist()):
        noisy[i, n:] = 5.0
    answers = []
    for batch in (x, noisy):
        packed = pack_padded_sequence(batch, LENGTHS, batch_first=True, enforce_sorted=False)
        output, state = cell(packed)
        answers.append((pad_packed_sequence(output, batch_first=True)[0], h_n_of(state)))
    torch.testing.assert_close(answers[0], answers[1], rtol=0, atol=0)


@pytest.mark.parametrize("name", list(CELLS))
@pytest.mark.parametrize("bidirectional", [False, True])
def test_parameter_count_is_the_built_modules(name, bidirectional):
    cell = build(name, 2, bidirectional)
    real = sum(p.numel() for p in cell.parameters())
    assert parameter_count(INPUT, name, HIDDEN, 2, bidirectional) == real


@pytest.mark.parametrize("name", list(CELLS))
def test_parameter_count_of_a_huge_cell(name):
    """Counted on the meta device (or, past PyTorch's size arithmetic, from small builds):
    10^18 parameters, which no machine could allocate."""
    count = parameter_count(28, name, 1_000_000_000, 2, True)
    assert count > 10**18
    # The path past PyTorch's size arithmetic gives the built module's count where both work.
    for size in (1, 7, 50):
        assert _extrapolated_count(28, name, size, 2, True) == sum(
            p.numel() for p in CELLS[name](28, size, num_layers=2, bidirectional=True).parameters()
        )


def test_counting_a_huge_cell_allocates_nothing():
    """The count is read from shapes alone: the peak memory of a process of its own does not
    grow while it counts every cell at a billion hidden units (its time would depend on the
    machine; its memory does not). A warm-up count first, so that what PyTorch sets up once
    is not counted."""
    code = textwrap.dedent(
        """
        import resource
        from seqnets.models.backbone import parameter_count
        from seqnets.models.cells import CELLS
        for name in CELLS:
            parameter_count(28, name, 8, 2, True)
        before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        for name in CELLS:
            parameter_count(28, name, 1_000_000_000, 2, True)
        print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before)
        """
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]
    assert int(done.stdout) < 50_000, f"the peak grew by {int(done.stdout) / 1024:.0f} MiB"


@pytest.mark.parametrize("name", list(CELLS))
def test_init_weights_runs_and_is_deterministic(name):
    a, b = build(name, 2, True), build(name, 2, True)
    for (key, p), q in zip(a.state_dict().items(), b.state_dict().values(), strict=True):
        assert torch.equal(p, q), key
    a.init_weights(forget_bias=0.0, orthogonal=False)  # the other settings run too
    assert all(torch.isfinite(p).all() for p in a.parameters())


@pytest.mark.parametrize("name", list(CELLS))
def test_backward(name):
    cell = build(name, 2, True, dropout=0.1).train()
    packed = pack_padded_sequence(ragged_batch(), LENGTHS, batch_first=True, enforce_sorted=False)
    output, state = cell(packed)
    (pad_packed_sequence(output, batch_first=True)[0].sum() + h_n_of(state).sum()).backward()
    for key, p in cell.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), key


@pytest.mark.parametrize("name", list(CELLS))
def test_states_are_laid_out_as_outputs(name):
    cell = build(name, 2, True).eval()
    x = ragged_batch()
    with torch.no_grad():
        states = cell.states(x, LENGTHS)
    for value in states.values():
        assert value.shape == (3, 6, 2 * HIDDEN)
        for i, n in enumerate(LENGTHS.tolist()):
            assert torch.all(value[i, n:] == 0)
    assert tuple(states) == type(cell).extra_states


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

"""Inside the networks: hand-built networks whose state is known exactly, and tiny real
trained models for every task, from which every figure is drawn and saved."""

from __future__ import annotations

import json
from functools import partial

import pytest
import torch
from matplotlib.image import imread

from seqnets.data.binary_add import BinaryAddDataModule, carries, make_binary_add_batch
from seqnets.data.mnist import MNISTDataModule
from seqnets.data.remember import RememberDataModule
from seqnets.models.backbone import RecurrentBackbone
from seqnets.models.module import SequenceModule
from seqnets.models.objectives import BitSequence, Classification
from seqnets.scoring import predict_batch
from seqnets.tasks.analysis import analyse
from seqnets.tasks.binary_add import carry_correlation, carry_states, carry_trace, unit_labels
from seqnets.tasks.mnist import row_by_row
from seqnets.tasks.remember import hold_accuracy, remember_states
from tests.conftest import DATA_DIR, needs_mnist

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """These are many tiny ops: on shared cores, a second thread only waits for the first."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def make_module(input_size: int, objective, cell: str = "lstm", hidden: int = 8, **kwargs):
    torch.manual_seed(0)
    backbone = RecurrentBackbone(input_size, cell=cell, hidden=hidden, **kwargs)
    return SequenceModule(backbone, objective, optimizer=partial(torch.optim.Adam, lr=1e-2))


def train(module: SequenceModule, make_batch, steps: int, lr: float = 1e-2) -> SequenceModule:
    """A plain loop over the module's own forward and objective: the real model, no Trainer."""
    optimizer = torch.optim.Adam(module.parameters(), lr=lr)
    module.train()
    for step in range(steps):
        batch = make_batch(step)
        loss = module.objective.loss(module(batch["x"], batch.get("lengths")), batch)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return module.eval()


def check_figures(figures: dict, names: set[str], tmp_path) -> None:
    """Every figure saves as a valid, non-blank PNG."""
    assert set(figures) == names
    for name, figure in figures.items():
        path = tmp_path / f"{name}.png"
        figure.savefig(path)
        assert path.read_bytes()[:8] == PNG_SIGNATURE
        pixels = torch.from_numpy(imread(path))
        assert pixels.shape[0] > 100 and pixels.shape[1] > 100
        assert pixels.std() > 0.01, f"{name} is blank"


def strict_json(numbers: dict) -> dict:
    return json.loads(json.dumps(numbers, allow_nan=False))


# -- binary addition -----------------------------------------------------------------------
def test_carries_give_the_sum_bits():
    batch = make_binary_add_batch(200, 30, torch.Generator().manual_seed(1))
    a, b = batch["x"].long().unbind(-1)
    carry_out = carries(batch["x"])
    carry_in = torch.cat([torch.zeros_like(carry_out[:, :1]), carry_out[:, :-1]], dim=1)
    assert torch.equal(a ^ b ^ carry_in, batch["y"])
    assert torch.equal(carry_out, ((a + b + carry_in) >= 2).long())


@pytest.mark.parametrize("bidirectional", [False, True])
def test_lstm_states_replay_the_module(bidirectional):
    module = make_module(4, BitSequence(), hidden=5, num_layers=2, bidirectional=bidirectional)
    x = torch.randn(3, 7, 4)
    h, c = module.backbone.rnn.replay(x)
    with torch.no_grad():
        outputs, (_, c_n) = module.backbone.rnn(x)
        torch.testing.assert_close(h, outputs, atol=1e-5, rtol=1e-5)
        # The top layer's final cell states: forward after the last step, backward after
        # the first (it reads right to left).
        torch.testing.assert_close(c[:, -1, :5], c_n[-2 if bidirectional else -1])
        if bidirectional:
            torch.testing.assert_close(c[:, 0, 5:], c_n[-1])
    assert unit_labels(module)[:2] == ["h0", "h1"]
    assert ("cr4" in unit_labels(module)) == bidirectional


def hand_built_adder(cell: str) -> SequenceModule:
    """Unit 0 is the carry, saturated to +-1: with margin, pre-activation
    50 * (a + b + 0.6 * carry_sign - 1.2) is positive exactly when a + b + carry >= 2, and
    the zero initial state counts as carry 0. RNN: unit 1 copies bit a, unit 2 stays 0."""
    module = make_module(2, BitSequence(), cell=cell, hidden=3)
    rnn = module.backbone.rnn
    with torch.no_grad():
        for param in rnn.parameters():
            param.zero_()
        if cell == "rnn":
            rnn.weight_ih_l0[0] = torch.tensor([50.0, 50.0])
            rnn.weight_hh_l0[0, 0] = 30.0
            rnn.bias_ih_l0[0] = -60.0
            rnn.weight_ih_l0[1] = torch.tensor([20.0, 0.0])
            rnn.bias_ih_l0[1] = -10.0
        else:
            # Gates i, f, g, o of 3 units each: input and output open, forget shut, so the
            # cell is g = tanh(...) = +-1 and h = tanh(c) = +-0.7616.
            rnn.bias_ih_l0[0], rnn.bias_ih_l0[3], rnn.bias_ih_l0[9] = 20.0, -20.0, 20.0
            rnn.weight_ih_l0[6] = torch.tensor([50.0, 50.0])
            rnn.weight_hh_l0[6, 0] = 30.0 / torch.tanh(torch.tensor(1.0))
            rnn.bias_ih_l0[6] = -60.0
    return module.eval()


@pytest.mark.parametrize("cell", ["rnn", "lstm"])
def test_hand_built_carry_unit_correlates_exactly(cell):
    module = hand_built_adder(cell)
    result = strict_json(carry_correlation(module, (40, 60), 200))
    r = result["r"]
    assert r["h0"] == pytest.approx(1.0, abs=1e-6)
    if cell == "rnn":
        assert r["h1"] is not None and 0 < r["h1"] < 0.9  # bit a: related, not the carry
        assert r["h2"] is None  # constant
        assert result["best_unit"] == "h0"
    else:
        assert r["c0"] == pytest.approx(1.0, abs=1e-6)
        assert result["best_unit"] in ("h0", "c0")
        assert r["h1"] is None and r["c1"] is None
    assert result["sums"] == 200 and result["lengths"] == [40, 60]
    trace = carry_trace(module, "h0", 40)
    assert len(trace["value"]) == len(trace["carry"]) == 40
    assert [v > 0 for v in trace["value"]] == [bool(c) for c in trace["carry"]]


def test_carry_states_of_ragged_sums_are_those_of_each_sum_alone():
    """Padding must not reach a state, in either direction, for h (packed by the backbone)
    or c (replayed here)."""
    module = make_module(2, BitSequence(), hidden=4, num_layers=2, bidirectional=True)
    generator = torch.Generator().manual_seed(2)
    sums = [make_binary_add_batch(1, length, generator)["x"][0] for length in (9, 4, 6)]
    x = torch.nn.utils.rnn.pad_sequence(sums, batch_first=True)
    lengths = torch.tensor([9, 4, 6])
    ragged = carry_states(module, x, lengths)
    assert ragged["h"].shape == ragged["c"].shape == (3, 9, 8)
    assert ragged["real"].sum(1).tolist() == [9, 4, 6]
    for i, bits in enumerate(sums):
        alone = carry_states(module, bits[None])
        for key in ("h", "c"):
            n = len(bits)
            torch.testing.assert_close(ragged[key][i, :n], alone[key][0], atol=1e-5, rtol=1e-5)
            assert not ragged[key][i, n:].any()  # zero past the end, as packed outputs are
        assert torch.equal(ragged["carry"][i, : len(bits)], alone["carry"][0])


def test_binary_add_analysis_of_a_trained_lstm(tmp_path):
    generator = torch.Generator().manual_seed(0)
    module = train(
        make_module(2, BitSequence(), hidden=6),
        lambda step: make_binary_add_batch(64, 6, generator),
        150,
    )
    numbers, figures = analyse(module, BinaryAddDataModule(train_len=6))
    carry = strict_json(numbers)["carry"]
    assert list(carry["r"]) == [f"h{i}" for i in range(6)] + [f"c{i}" for i in range(6)]
    assert all(v is None or -1 <= v <= 1 for v in carry["r"].values())
    assert carry["best_abs_r"] == abs(carry["r"][carry["best_unit"]])
    assert carry["positions"] > 40 * 1000 and 0 <= carry["bit_acc"] <= 1
    assert len(numbers["carry_trace"]["value"]) == 40
    assert analyse(module, BinaryAddDataModule(train_len=6))[0] == numbers  # reproducible
    check_figures(figures, {"carry_units", "carry_trace"}, tmp_path)


# -- remember ------------------------------------------------------------------------------
def test_remember_analysis_of_a_trained_gru(tmp_path):
    datamodule = RememberDataModule(K=3, min_len=3, max_len=10, max_eval_len=20)
    generator = torch.Generator().manual_seed(0)
    module = train(
        make_module(10, Classification(10), cell="gru", hidden=16),
        lambda step: datamodule.make(64, generator),
        200,
    )
    numbers, figures = analyse(module, datamodule)
    hold = strict_json(numbers)["hold"]
    assert hold["steps"] == list(range(3, 21))
    assert len(hold["readout_acc"]) == len(hold["probe_acc"]) == len(hold["steps"])
    assert all(0 <= a <= 1 for a in hold["readout_acc"] + hold["probe_acc"])
    pca = numbers["pca"]
    assert "points" not in pca and pca["n"] == 2000
    assert 0 < sum(pca["explained_variance_ratio"]) <= 1 + 1e-9
    check_figures(figures, {"remember_pca", "remember_hold"}, tmp_path)


def test_hold_readout_at_the_last_step_is_the_module_answer():
    """The per-step readout is the real readout: at the last step it is the forward pass."""
    module = make_module(10, Classification(10), cell="gru", hidden=8)
    batch = RememberDataModule(K=2).make(300, torch.Generator().manual_seed(3), length=12)
    hold = hold_accuracy(module, 2, steps=12, n=300, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        accuracy = (module(batch["x"]).argmax(-1) == batch["y"]).float().mean()
    assert hold["readout_acc"][-1] == pytest.approx(float(accuracy), abs=1e-6)


def test_bidirectional_models_get_a_note_not_per_step_numbers():
    module = make_module(10, Classification(10), hidden=4, bidirectional=True)
    hold = hold_accuracy(module, 3, steps=12, n=50)
    assert hold["note"] and hold["readout_acc"] is None
    images = torch.randint(0, 256, (5, 28, 28), dtype=torch.uint8)
    reader = make_module(28, Classification(10), bidirectional=True)
    rows = row_by_row(reader, images, torch.zeros(5))
    assert rows["note"] and rows["acc"] is None
    # The final state is what the readout sees either way: the PCA still applies.
    batch = RememberDataModule(K=3).make(100, torch.Generator())
    assert len(remember_states(module, batch)["points"]) == 100
    numbers, figures = analyse(module, RememberDataModule(K=3))
    assert set(figures) == {"remember_pca"} and numbers["hold"]["note"]


# -- MNIST ---------------------------------------------------------------------------------
@needs_mnist
def test_mnist_row_by_row_of_a_trained_gru(tmp_path):
    datamodule = MNISTDataModule(data_dir=str(DATA_DIR))
    datamodule.setup()
    train_x, train_y = datamodule.splits["train"]["x"], datamodule.splits["train"]["y"]

    def batch(step: int) -> dict:
        part = slice(64 * step, 64 * (step + 1))
        return {"x": datamodule.normalize(train_x[part]), "y": train_y[part]}

    module = train(make_module(28, Classification(10), cell="gru", hidden=16), batch, 100)
    numbers, figures = analyse(module, datamodule)
    rows = strict_json(numbers)["rows"]
    assert rows["rows"] == list(range(1, 29)) and rows["n"] == 2000
    assert len(rows["acc"]) == len(rows["confidence"]) == 28
    # After the last row the per-row readout is the module's own answer.
    test = {k: v[:2000] for k, v in datamodule.splits["test"].items()}
    own = (predict_batch(module, datamodule, test) == test["y"]).float().mean()
    assert rows["final_acc"] == pytest.approx(float(own), abs=1e-6)
    assert rows["final_acc"] > 0.3  # it learned something, so settle rows exist
    per_class = rows["per_class"]
    assert sum(part["n"] for part in per_class.values()) == 2000
    for part in per_class.values():
        assert len(part["acc"]) == 28 and 0 <= part["never_settled"] <= 1
        assert part["settle_row"] is None or 1 <= part["settle_row"] <= 28
    # Images normalised beforehand give the same numbers as uint8 images.
    floats = row_by_row(module, datamodule.normalize(test["x"]), test["y"])
    assert floats["acc"] == rows["acc"]
    check_figures(figures, {"mnist_rows", "mnist_settle"}, tmp_path)

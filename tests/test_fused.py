"""FusedBackbones gives each member exactly its own outputs, finals and gradients."""

from __future__ import annotations

import pytest
import torch

from seqnets.models.backbone import RecurrentBackbone
from seqnets.models.cells import LSTM, RNN
from seqnets.models.fused import FusedBackbones, fusable

FEATURES = 4
LENGTHS = torch.tensor([6, 2, 4, 1, 5])


def members(cells: list[str], hiddens: list[int], num_layers: int = 1) -> list[RecurrentBackbone]:
    torch.manual_seed(0)
    return [
        RecurrentBackbone(FEATURES, cell=cell, hidden=hidden, num_layers=num_layers)
        for cell, hidden in zip(cells, hiddens, strict=True)
    ]


def loss(results: list[tuple[torch.Tensor, torch.Tensor]]) -> torch.Tensor:
    return sum(out.square().sum() + final.sum() for out, final in results)


def gradients(nets: list[RecurrentBackbone], results) -> list[list[torch.Tensor]]:
    for net in nets:
        net.zero_grad(set_to_none=True)
    loss(results).backward()
    return [[p.grad.clone() for p in net.parameters()] for net in nets]


def check_equal(
    nets: list[RecurrentBackbone], lengths: torch.Tensor | None, device: str = "cpu"
) -> None:
    """Fused and alone agree on outputs, finals (atol 1e-6) and every gradient (1e-6
    relative, in norm: a gradient entry near zero has no relative error to speak of); on a
    GPU to 1e-5, whose kernels may sum in yet other orders."""
    tol = 1e-6 if device == "cpu" else 1e-5
    torch.manual_seed(1)
    x = torch.randn(len(LENGTHS), int(LENGTHS.max()), FEATURES, device=device)
    nets = [net.to(device) for net in nets]
    fused = FusedBackbones(nets)
    got, want = fused(x, lengths), [net(x, lengths) for net in nets]
    assert len(got) == len(nets)
    for (out, final), (out_alone, final_alone) in zip(got, want, strict=True):
        torch.testing.assert_close(out, out_alone, atol=tol, rtol=0)
        torch.testing.assert_close(final, final_alone, atol=tol, rtol=0)
    for fused_grads, alone_grads in zip(gradients(nets, got), gradients(nets, want), strict=True):
        for g, g_alone in zip(fused_grads, alone_grads, strict=True):
            assert torch.linalg.norm(g - g_alone) <= tol * torch.linalg.norm(g_alone)


# On the CPU a ragged batch runs unpacked through the fused call, packed on a GPU (cuDNN):
# each against the members' own packed calls.
DEVICES = [
    "cpu",
    pytest.param(
        "cuda",
        marks=pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA GPU here"),
    ),
]


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("lengths", [None, LENGTHS], ids=["full", "ragged"])
@pytest.mark.parametrize("num_layers", [1, 2])
@pytest.mark.parametrize("cell", ["rnn", "lstm", "gru"])
def test_fused_equals_alone(cell, num_layers, lengths, device):
    with torch.backends.cudnn.flags(enabled=True, allow_tf32=False):  # float32 sums on a GPU
        check_equal(members([cell] * 3, [2, 5, 10], num_layers), lengths, device)


@pytest.mark.parametrize("lengths", [None, LENGTHS], ids=["full", "ragged"])
def test_mixed_cells(lengths):
    """Non-fusable members (minGRU) run alone, and a lone cell (the GRU) as a group of one,
    in their places."""
    nets = members(["lstm", "gru", "mingru", "lstm", "rnn", "rnn"], [3, 4, 5, 6, 2, 7])
    nets[5].rnn = RNN(FEATURES, 7, nonlinearity="relu")  # its own group, not the tanh one's
    fused = FusedBackbones(nets)
    assert sorted(len(g.indices) for g in fused._groups) == [1, 1, 1, 2]
    assert fused._alone == (2,)
    check_equal(nets, lengths)


def test_a_dropped_member_leaves_the_others_unchanged():
    nets = members(["lstm"] * 3 + ["gru"] * 2, [2, 5, 10, 3, 4])
    x = torch.randn(len(LENGTHS), int(LENGTHS.max()), FEATURES)
    fused = FusedBackbones(nets)
    before = fused(x, LENGTHS)
    fewer = fused.only([4, 0, 2])
    assert len(fewer) == 3 and fewer.members == (nets[4], nets[0], nets[2])
    assert sorted(len(g.indices) for g in fewer._groups) == [1, 2]  # the GRU: a group of one
    for (out, final), index in zip(fewer(x, LENGTHS), [4, 0, 2], strict=True):
        torch.testing.assert_close(out, before[index][0], atol=1e-6, rtol=0)
        torch.testing.assert_close(final, before[index][1], atol=1e-6, rtol=0)


def test_holds_no_parameters():
    nets = members(["lstm", "lstm"], [2, 3])
    fused = FusedBackbones(nets)
    assert list(fused.parameters()) == [] and fused.state_dict() == {}


def test_fusable():
    assert all(fusable(net) for net in members(["rnn", "lstm", "gru"], [2, 2, 2]))
    torch.manual_seed(0)
    assert not fusable(RecurrentBackbone(FEATURES, cell="lstm", hidden=3, bidirectional=True))
    assert not fusable(RecurrentBackbone(FEATURES, cell="mingru", hidden=3))
    assert not fusable(RecurrentBackbone(FEATURES, cell="lstm", num_layers=2, dropout=0.1))
    assert fusable(RecurrentBackbone(FEATURES, cell="lstm", hidden=3, dropout=0.1))

    class MyLSTM(LSTM):
        """A subclass may change forward: not fusable."""

    net = RecurrentBackbone(FEATURES, cell="lstm", hidden=3)
    net.rnn = MyLSTM(FEATURES, 3)
    assert not fusable(net)
    net.rnn = LSTM(FEATURES, 3, proj_size=2)
    assert not fusable(net)

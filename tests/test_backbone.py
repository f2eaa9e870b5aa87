import pytest
import torch
from torch import nn

from seqnets.errors import ConfigError
from seqnets.models.backbone import CELLS, RecurrentBackbone


@pytest.mark.parametrize("cell", list(CELLS))
@pytest.mark.parametrize("bidirectional", [False, True])
@pytest.mark.parametrize("num_layers", [1, 2])
def test_shapes(cell, bidirectional, num_layers):
    net = RecurrentBackbone(
        7, cell=cell, hidden=6, num_layers=num_layers, bidirectional=bidirectional, dropout=0.1
    )
    directions = 2 if bidirectional else 1
    x = torch.randn(4, 9, 7)
    outputs, final = net(x)
    assert outputs.shape == (4, 9, 6 * directions)
    assert final.shape == (4, 6 * directions) == (4, net.output_size)
    outputs, final = net(x, torch.tensor([9, 3, 5, 1]))
    assert outputs.shape == (4, 9, 6 * directions)
    assert torch.all(outputs[1, 3:] == 0)


@pytest.mark.parametrize("cell", list(CELLS))
@pytest.mark.parametrize("bidirectional", [False, True])
def test_ragged_batch_reads_true_last_step(cell, bidirectional):
    """The final features of a padded sequence equal those of the same sequence unpadded;
    reading the padding instead would change them (checked below)."""
    torch.manual_seed(0)
    net = RecurrentBackbone(3, cell=cell, hidden=5, num_layers=2, bidirectional=bidirectional)
    lengths = torch.tensor([6, 2, 4])
    x = torch.randn(3, 6, 3)
    x[1, 2:] = 0
    x[2, 4:] = 0
    _, final = net(x, lengths)
    for i, n in enumerate(lengths.tolist()):
        _, alone = net(x[i : i + 1, :n])
        torch.testing.assert_close(final[i], alone[0])
    _, unpacked = net(x)  # ignoring lengths reads the padding: a different answer
    assert not torch.allclose(unpacked[1], final[1], atol=1e-4)


def test_initialisation():
    net = RecurrentBackbone(4, cell="lstm", hidden=8, forget_bias=1.0)
    w = net.rnn.weight_hh_l0.detach()
    for block in w.chunk(4):
        torch.testing.assert_close(block @ block.T, torch.eye(8), atol=1e-5, rtol=0)
    b = net.rnn.bias_ih_l0.detach()
    assert torch.all(b[8:16] == 1.0) and torch.all(b[:8] == 0) and torch.all(b[16:] == 0)


@pytest.mark.parametrize(
    ("cell", "torch_class", "gates"), [("rnn", nn.RNN, 1), ("lstm", nn.LSTM, 4), ("gru", nn.GRU, 3)]
)
@pytest.mark.parametrize("bidirectional", [False, True])
def test_pytorch_cells_keep_their_checkpoints_and_seeded_weights(
    cell, torch_class, gates, bidirectional
):
    """The wrappers keep PyTorch's parameter names (old checkpoints load) and draw the same
    random numbers in the same order as the recipe they replaced: the PyTorch module, then
    orthogonal blocks per gate for weight_hh, zero biases, the LSTM forget-gate bias."""
    torch.manual_seed(3)
    net = RecurrentBackbone(
        5,
        cell=cell,
        hidden=4,
        num_layers=2,
        bidirectional=bidirectional,
        dropout=0.2,
        forget_bias=0.7,
    )
    torch.manual_seed(3)
    old = torch_class(
        5, 4, num_layers=2, bidirectional=bidirectional, dropout=0.2, batch_first=True
    )
    with torch.no_grad():
        for name, param in old.named_parameters():
            if name.startswith("weight_hh"):
                for block in param.chunk(gates, dim=0):
                    nn.init.orthogonal_(block)
            elif name.startswith("bias"):
                param.zero_()
                if cell == "lstm" and name.startswith("bias_ih"):
                    param[4:8] = 0.7
    new_state, old_state = net.rnn.state_dict(), old.state_dict()
    assert list(new_state) == list(old_state)
    for key in old_state:
        assert torch.equal(new_state[key], old_state[key]), key
    net.rnn.load_state_dict(old_state)  # strict: same keys, same shapes


@pytest.mark.parametrize(
    ("kwargs", "fragment"),
    [
        ({"cell": "transformer"}, "model.cell='transformer'"),
        ({"hidden": 0}, "model.hidden=0"),
        ({"num_layers": 0}, "model.num_layers=0"),
        ({"dropout": 1.5}, "model.dropout=1.5"),
    ],
)
def test_bad_values_named(kwargs, fragment):
    with pytest.raises(ConfigError, match=fragment.replace("(", r"\(")) as info:
        RecurrentBackbone(4, **kwargs)
    assert "allowed" in str(info.value)

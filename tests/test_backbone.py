import pytest
import torch

from seqnets.errors import ConfigError
from seqnets.models.backbone import RecurrentBackbone


@pytest.mark.parametrize("cell", ["rnn", "lstm", "gru"])
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


@pytest.mark.parametrize("cell", ["rnn", "lstm", "gru"])
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

from functools import partial

import pytest
import torch

from seqnets.errors import ConfigError
from seqnets.models.backbone import RecurrentBackbone
from seqnets.models.module import SequenceModule
from seqnets.models.objectives import BitSequence, Classification


def make_module(objective=None, **kwargs):
    backbone = RecurrentBackbone(3, cell="gru", hidden=4)
    return SequenceModule(
        backbone,
        objective or Classification(10),
        optimizer=partial(torch.optim.Adam, lr=1e-3),
        **kwargs,
    )


def test_l2_penalty_counts_weights_not_biases():
    module = make_module(l2=0.001)
    expected = sum(p.pow(2).sum() for n, p in module.named_parameters() if "weight" in n)
    torch.testing.assert_close(module.l2_penalty(), expected)
    before = module.l2_penalty().clone()
    with torch.no_grad():
        for name, p in module.named_parameters():
            if "bias" in name:
                p.add_(5.0)
    torch.testing.assert_close(module.l2_penalty(), before)
    with torch.no_grad():
        module.readout.weight.add_(1.0)
    assert module.l2_penalty() > before


def test_l2_is_added_to_the_training_loss_not_to_the_curves():
    batch = {"x": torch.randn(8, 5, 3), "y": torch.randint(0, 10, (8,))}
    plain, penalised = make_module(), make_module(l2=0.5)
    penalised.load_state_dict(plain.state_dict())
    (_, loss_l2, total_l2), (_, loss, total) = (
        m.training_losses(batch) for m in (penalised, plain)
    )
    torch.testing.assert_close(total_l2 - total, 0.5 * plain.l2_penalty())
    # what curves and the history show is the objective's loss alone
    torch.testing.assert_close(loss_l2, loss)
    torch.testing.assert_close(total, loss)


def test_readouts():
    x = torch.randn(2, 7, 3)
    assert make_module().forward(x).shape == (2, 10)
    assert make_module(BitSequence("ce")).forward(x).shape == (2, 7, 1)


@pytest.mark.parametrize("lr", [-0.1, 0.0])
def test_non_positive_learning_rate_refused(lr):
    backbone = RecurrentBackbone(3, hidden=4)
    with pytest.raises(ConfigError, match=f"optimizer.lr={lr}"):
        SequenceModule(backbone, Classification(10), optimizer=partial(torch.optim.Adam, lr=lr))


def test_bit_objective_losses_and_metrics():
    batch = {
        "x": torch.zeros(2, 3, 2),
        "y": torch.tensor([[1, 0, 1], [0, 1, 1]]),
        "lengths": torch.tensor([3, 2]),
    }
    logits = torch.tensor([[4.0, -4.0, 4.0], [-4.0, 4.0, -4.0]]).unsqueeze(-1)
    for loss in ("ce", "mse"):
        objective = BitSequence(loss)
        assert objective.loss(logits, batch) < 0.05  # the padded last step of row 2 is ignored
        metrics = objective.metrics()
        objective.update(metrics, objective.predict(logits), batch)
        scores = metrics.compute()
        assert scores["bit_acc"] == 1.0 and scores["exact_acc"] == 1.0
    flipped = -logits
    objective = BitSequence("ce")
    metrics = objective.metrics()
    objective.update(metrics, objective.predict(flipped), batch)
    assert metrics.compute()["exact_acc"] == 0.0
    with pytest.raises(ConfigError, match=r"task\.loss='hinge'"):
        BitSequence("hinge")


@pytest.mark.parametrize("objective", [Classification(10), BitSequence("ce")])
def test_lengths_reach_the_backbone_through_module_and_scoring(objective):
    """A padded batch gives each sequence the logits it gets alone, through the module and
    through the scoring used by the test analysis and evaluate; ignoring lengths would not."""
    from seqnets.data.remember import RememberDataModule
    from seqnets.scoring import forward_batch

    torch.manual_seed(0)
    module = make_module(objective)
    module.eval()
    lengths = torch.tensor([6, 2, 4])
    x = torch.randn(3, 6, 3)
    for i, n in enumerate(lengths.tolist()):
        x[i, n:] = 0
    batch = {"x": x, "y": torch.zeros(3, dtype=torch.long), "lengths": lengths}
    datamodule = RememberDataModule()  # only its device transfer is used
    padded, _ = forward_batch(module, datamodule, batch)
    direct = module(x, lengths)
    for i, n in enumerate(lengths.tolist()):
        alone = module(x[i : i + 1, :n])
        if objective.readout == "last":
            torch.testing.assert_close(padded[i], alone[0])
            torch.testing.assert_close(direct[i], alone[0])
        else:
            torch.testing.assert_close(padded[i, :n], alone[0])
    ignored = module(x)  # the padding read as input changes the short sequences' answers
    assert not torch.allclose(ignored[1], direct[1], atol=1e-4)

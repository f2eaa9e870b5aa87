import pytest
import torch

from seqnets.data.batching import BatchSeeds, EpochShuffle, tensor_loader
from seqnets.data.binary_add import BinaryAddDataModule, bits_to_int, make_binary_add_batch
from seqnets.data.remember import RememberDataModule, decode_digits, make_remember_batch
from seqnets.errors import ConfigError


def gen(seed):
    return torch.Generator().manual_seed(seed)


@pytest.mark.parametrize("length", [1, 2, 3, 10, 63, 64, 100])
def test_binary_add_sums_decode(length):
    batch = make_binary_add_batch(300, length, gen(length))
    assert batch["x"].shape == (300, length, 2) and batch["y"].shape == (300, length)
    for x, y in zip(batch["x"].long(), batch["y"], strict=True):
        a, b = bits_to_int(x[:, 0].tolist()), bits_to_int(x[:, 1].tolist())
        assert a < 2 ** (length - 1) and b < 2 ** (length - 1)
        assert bits_to_int(y.tolist()) == a + b


def test_binary_add_covers_carries():
    batch = make_binary_add_batch(2000, 8, gen(0))
    a_plus_b = batch["x"].sum(-1)
    assert (a_plus_b == 2).any() and (batch["y"] != (a_plus_b % 2)).any()  # carries happen


def test_remember_target_is_kth_digit():
    batch = make_remember_batch(500, 4, 10, 4, gen(1))
    lengths = batch["lengths"]
    assert lengths.min() >= 4 and lengths.max() <= 10 and len(set(lengths.tolist())) == 7
    for seq, y in zip(decode_digits(batch), batch["y"].tolist(), strict=True):
        assert seq[3] == y
    steps = torch.arange(10)
    padding = batch["x"][steps[None, :] >= lengths[:, None]]
    assert torch.all(padding == 0)
    real = batch["x"][steps[None, :] < lengths[:, None]]
    assert torch.all(real.sum(-1) == 1)


@pytest.mark.parametrize(
    "make",
    [
        lambda g: make_remember_batch(64, 3, 10, 3, g),
        lambda g: make_binary_add_batch(64, 12, g),
    ],
)
def test_generators_deterministic_per_seed(make):
    a, b, c = make(gen(7)), make(gen(7)), make(gen(8))
    for key in a:
        assert torch.equal(a[key], b[key])
    assert not torch.equal(a["x"], c["x"])


def test_training_batches_depend_on_seed_and_epoch_only():
    dm = RememberDataModule(batch_size=16, train_batches=3, seed=5)
    dm.setup()
    first = [b["x"] for b in dm.train_dataloader()]
    loader = dm.train_dataloader()
    again = [b["x"] for b in loader]
    assert all(torch.equal(p, q) for p, q in zip(first, again, strict=True))
    loader.sampler.set_epoch(1)
    later = [b["x"] for b in loader]
    assert not any(torch.equal(p, q) for p, q in zip(first, later, strict=True))
    assert len(loader) == 3


def test_samplers():
    shuffle = EpochShuffle(10, seed=3)
    e0 = list(shuffle)
    assert sorted(e0) == list(range(10)) and list(shuffle) == e0
    shuffle.set_epoch(1)
    assert list(shuffle) != e0
    assert list(BatchSeeds(4, 0)) != list(BatchSeeds(4, 1))


def test_tensor_loader_batches_by_indexing():
    tensors = {"x": torch.arange(10).float().unsqueeze(-1), "y": torch.arange(10)}
    batches = list(tensor_loader(tensors, batch_size=4))
    assert [b["y"].tolist() for b in batches] == [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9]]
    shuffled = torch.cat([b["y"] for b in tensor_loader(tensors, 4, shuffle=True, seed=1)])
    assert sorted(shuffled.tolist()) == list(range(10)) and shuffled.tolist() != list(range(10))


def test_fixed_sets_and_length_sets():
    dm = BinaryAddDataModule(train_len=[3, 6], val_size=40, test_size=50, eval_samples=30)
    dm.setup()
    val = dm.splits["val"]
    assert val["x"].shape == (40, 6, 2) and set(val["lengths"].tolist()) == {3, 4, 5, 6}
    for x, y, n in zip(val["x"].long(), val["y"], val["lengths"].tolist(), strict=True):
        assert bits_to_int(x[:n, 0].tolist()) + bits_to_int(x[:n, 1].tolist()) == bits_to_int(
            y[:n].tolist()
        )
        assert torch.all(x[n:] == 0)
    other = BinaryAddDataModule(train_len=[3, 6], val_size=40, test_size=50, seed=9)
    other.setup()
    assert torch.equal(other.splits["val"]["x"], val["x"])  # data_seed, not seed, fixes them
    assert torch.equal(dm.length_set(20)["x"], dm.length_set(20)["x"])
    assert dm.length_set(20)["x"].shape == (30, 20, 2)
    widths = set()
    for batch in dm.train_dataloader():
        assert "lengths" not in batch  # one length per training batch: no padding at all
        widths.add(batch["x"].shape[1])
    assert widths <= {3, 4, 5, 6} and len(widths) > 1


@pytest.mark.parametrize(
    ("kwargs", "fragment"),
    [
        ({"K": 4}, "task.K=4"),
        ({"K": 0}, "task.K=0"),
        ({"min_len": 5, "max_len": 4}, "min 5 > max 4"),
    ],
)
def test_remember_bad_values(kwargs, fragment):
    with pytest.raises(ConfigError, match=fragment):
        RememberDataModule(**kwargs)


@pytest.mark.parametrize(
    ("train_len", "fragment"),
    [
        (0, "task.train_len"),
        ([5, 3], "min 5 > max 3"),
        ("ten", "task.train_len='ten'"),
    ],
)
def test_binary_add_bad_lengths(train_len, fragment):
    with pytest.raises(ConfigError, match=fragment):
        BinaryAddDataModule(train_len=train_len)


def test_describe_reads_like_arithmetic():
    dm = BinaryAddDataModule(train_len=4, val_size=4, test_size=4)
    dm.setup()
    batch = dm.sample_batch(2)
    assert batch["x"].shape[1] == 20  # samples are 20-bit sums by default
    preds = batch["y"].clone()
    preds[0, 0] ^= 1  # the first prediction is off by one in its lowest bit
    rows = dm.describe(batch, preds)
    a, b = rows[0]["a"], rows[0]["b"]
    assert rows[0]["true"] == a + b and abs(rows[0]["pred"] - (a + b)) == 1
    assert rows[0]["text"] == f"{a} + {b} = {rows[0]['pred']} ({a + b})"
    assert rows[1]["pred"] == rows[1]["true"] == rows[1]["a"] + rows[1]["b"]

import pytest
import torch

from seqnets.data import mnist as mnist_module
from seqnets.data.mnist import RAW_FILES, MNISTDataModule, load_mnist
from seqnets.errors import ConfigError
from tests.conftest import DATA_DIR, needs_mnist


@pytest.fixture(scope="module")
def datamodule():
    dm = MNISTDataModule(data_dir=str(DATA_DIR), batch_size=32, seed=0)
    dm.prepare_data()
    dm.setup()
    return dm


@needs_mnist
def test_split_sizes_fixed_and_disjoint(datamodule):
    s = datamodule.splits
    assert len(s["train"]["y"]) == 50_000 and len(s["val"]["y"]) == 10_000
    assert len(s["test"]["y"]) == 10_000
    assert s["train"]["x"].dtype == torch.uint8 and s["train"]["x"].shape[1:] == (28, 28)
    again = MNISTDataModule(data_dir=str(DATA_DIR), seed=123)  # a run's seed: same split
    again.setup()
    assert torch.equal(again.splits["val"]["x"], s["val"]["x"])
    other = MNISTDataModule(data_dir=str(DATA_DIR), split_seed=1)
    other.setup()
    assert not torch.equal(other.splits["val"]["y"], s["val"]["y"])
    # disjoint: train and validation images together are exactly MNIST's training set
    full = load_mnist(DATA_DIR)
    pixels = s["train"]["x"].sum(dtype=torch.int64) + s["val"]["x"].sum(dtype=torch.int64)
    assert pixels == full["train_x"].sum(dtype=torch.int64)
    labels = torch.bincount(s["train"]["y"]) + torch.bincount(s["val"]["y"])
    assert torch.equal(labels, torch.bincount(full["train_y"]))


@needs_mnist
def test_batches_are_rows_normalised_after_transfer(datamodule):
    batch = next(iter(datamodule.train_dataloader()))
    assert batch["x"].shape == (32, 28, 28) and batch["x"].dtype == torch.uint8
    ready = datamodule.on_after_batch_transfer(batch, 0)
    assert ready["x"].dtype == torch.float32
    # every pixel p becomes (p / 255 - 0.1307) / 0.3081, MNIST's own normalisation
    expected = (batch["x"].double() / 255 - 0.1307) / 0.3081
    torch.testing.assert_close(ready["x"].double(), expected, atol=1e-6, rtol=0)
    assert float(ready["x"].min()) == pytest.approx(-0.1307 / 0.3081, abs=1e-6)  # black
    assert abs(float(datamodule.normalize(datamodule.splits["train"]["x"][:5000]).mean())) < 0.05
    assert datamodule.on_after_batch_transfer(ready, 0)["x"] is ready["x"]  # never twice


@needs_mnist
def test_sample_batch_one_per_digit(datamodule):
    batch = datamodule.sample_batch()
    assert batch["y"].tolist() == list(range(10))


def test_missing_data_offline_explains_where_to_put_files(tmp_path):
    with pytest.raises(ConfigError) as info:
        load_mnist(tmp_path / "nowhere", download=False)
    message = str(info.value)
    assert str(tmp_path / "nowhere" / "MNIST" / "raw") in message
    assert "SEQNETS_DATA_DIR" in message and "train-images-idx3-ubyte" in message


def test_failed_download_is_reported(tmp_path, monkeypatch):
    def no_network(self):
        raise OSError("Name or service not known")

    monkeypatch.setattr(mnist_module.MNIST, "download", no_network)
    with pytest.raises(ConfigError, match="download failed: OSError: Name or service not known"):
        load_mnist(tmp_path, download=True)


def test_data_dir_that_is_a_file(tmp_path):
    path = tmp_path / "file"
    path.write_text("not a directory")
    with pytest.raises(ConfigError, match="not a readable directory"):
        load_mnist(path)


def test_corrupt_files(tmp_path):
    raw = tmp_path / "MNIST" / "raw"
    raw.mkdir(parents=True)
    for name in RAW_FILES:
        (raw / name).write_bytes(b"\x00\x01garbage")
    with pytest.raises(ConfigError, match="could not be read"):
        load_mnist(tmp_path)


@needs_mnist
def test_truncated_files_are_corrupt_not_missing(tmp_path):
    raw = tmp_path / "MNIST" / "raw"
    raw.mkdir(parents=True)
    for name in RAW_FILES:
        data = (DATA_DIR / "MNIST" / "raw" / name).read_bytes()
        (raw / name).write_bytes(data[: len(data) // 2])  # a valid header, half the images
    with pytest.raises(ConfigError, match="could not be read"):
        load_mnist(tmp_path, download=True)

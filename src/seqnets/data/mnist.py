"""MNIST read row by row: each 28x28 image is a sequence of 28 steps of 28 pixels."""

from __future__ import annotations

import math
import os
import shutil
import socket
from pathlib import Path

import torch
from torchvision.datasets import MNIST

from seqnets.data.base import TensorDataModule
from seqnets.data.batching import Batch, BatchLoader, tensor_loader
from seqnets.errors import ConfigError, check_int

TRAIN_SIZE = 60_000
RAW_FILES = (
    "train-images-idx3-ubyte",
    "train-labels-idx1-ubyte",
    "t10k-images-idx3-ubyte",
    "t10k-labels-idx1-ubyte",
)
DOWNLOAD_TIMEOUT_S = 30


def missing_mnist_message(root: Path, reason: str) -> str:
    """The one paragraph a user needs when MNIST is not where the config says."""
    raw = root / "MNIST" / "raw"
    return (
        f"MNIST was not found in the data directory {root} and could not be downloaded "
        f"({reason}). Put the four uncompressed IDX files {', '.join(RAW_FILES)} in "
        f"{raw}/ (torchvision's layout), or point the data directory elsewhere with "
        f"SEQNETS_DATA_DIR=/path/to/data or paths.data_dir=/path/to/data; on the project's "
        f"machines that folder is ../shared/data."
    )


def mnist_present(data_dir: str | os.PathLike) -> Path | None:
    """The resolved data directory if MNIST's four files are in it, else None; a path that
    exists but is not a readable directory is a ConfigError. Reads nothing else."""
    root = Path(data_dir).expanduser().resolve()
    if root.exists() and not (root.is_dir() and os.access(root, os.R_OK | os.X_OK)):
        raise ConfigError(f"paths.data_dir={str(root)!r} is not a readable directory")
    if all((root / "MNIST" / "raw" / name).is_file() for name in RAW_FILES):
        return root
    return None


def ensure_mnist(data_dir: str | os.PathLike, download: bool = False) -> Path:
    """The data directory, once MNIST's four files are in it; a download is tried only when
    some are missing and ``download`` is set. Reads nothing else: cheap to call per stage.
    A failed download removes the directories it created, so nothing is left behind."""
    root = mnist_present(data_dir)
    if root is not None:
        return root
    root = Path(data_dir).expanduser().resolve()
    if not download:
        raise ConfigError(missing_mnist_message(root, "downloads are off"))
    raw = root / "MNIST" / "raw"
    created = [d for d in (root, root / "MNIST", raw) if not d.exists()]
    previous = socket.getdefaulttimeout()
    socket.setdefaulttimeout(DOWNLOAD_TIMEOUT_S)  # a blackholed network fails, not hangs
    try:
        MNIST(root, download=True)
    except Exception as failed:  # network errors come in many types
        for directory in reversed(created):
            shutil.rmtree(directory, ignore_errors=True)
        last_line = str(failed).strip().splitlines()[-1:] or [""]
        reason = f"download failed: {type(failed).__name__}: {last_line[0]}"
        raise ConfigError(missing_mnist_message(root, reason)) from failed
    finally:
        socket.setdefaulttimeout(previous)
    return root


def load_mnist(data_dir: str | os.PathLike, download: bool = False) -> dict[str, torch.Tensor]:
    """Images as one uint8 tensor per split (no PIL), read through torchvision's MNIST."""
    root = ensure_mnist(data_dir, download)
    try:
        train, test = (MNIST(root, train=split) for split in (True, False))
    except Exception as corrupt:  # torchvision asserts or raises on malformed files
        raise ConfigError(
            f"the MNIST files under {root / 'MNIST' / 'raw'} could not be read "
            f"({type(corrupt).__name__}: {corrupt}); replace them with intact copies"
        ) from corrupt
    tensors = {
        "train_x": train.data,
        "train_y": train.targets,
        "test_x": test.data,
        "test_y": test.targets,
    }
    if tensors["train_x"].shape != (TRAIN_SIZE, 28, 28) or tensors["test_x"].shape[1:] != (28, 28):
        raise ConfigError(
            f"the MNIST files under {root / 'MNIST' / 'raw'} have unexpected shapes "
            f"{tuple(tensors['train_x'].shape)} / {tuple(tensors['test_x'].shape)}"
        )
    return tensors


class MNISTDataModule(TensorDataModule):
    """50k/10k train/validation split of MNIST's training set (fixed by ``split_seed``, not by
    the run's seed, so every run is scored on the same validation images), and the 10k test set.

    Batches stay uint8 until they reach the model's device, where they are scaled and
    normalised: a quarter of the bytes to move, and one place that defines the input form.
    """

    num_features = 28
    name = "mnist"

    def __init__(
        self,
        data_dir: str = "data",
        batch_size: int = 64,
        eval_batch_size: int = 1000,
        val_size: int = 10_000,
        split_seed: int = 0,
        seed: int = 0,
        mean: float = 0.1307,
        std: float = 0.3081,
        download: bool = False,
    ) -> None:
        super().__init__(batch_size, eval_batch_size, seed)
        self.data_dir = data_dir
        self.val_size = check_int("task.datamodule.val_size", val_size, 1, TRAIN_SIZE - 1)
        self.split_seed = split_seed
        self.mean, self.std = mean, std
        self.download = download

    def train_work(self) -> tuple[int, int]:
        return math.ceil((TRAIN_SIZE - self.val_size) / self.batch_size), self.num_features

    def check(self) -> None:
        """Before any work: the data directory is readable, and MNIST is in it or may be
        downloaded."""
        if mnist_present(self.data_dir) is None and not self.download:
            ensure_mnist(self.data_dir, download=False)  # raises the where-to-put-it paragraph

    def prepare_data(self) -> None:
        ensure_mnist(self.data_dir, self.download)

    def setup(self, stage: str | None = None) -> None:
        if self.splits:
            return
        data = load_mnist(self.data_dir)
        order = torch.randperm(TRAIN_SIZE, generator=torch.Generator().manual_seed(self.split_seed))
        cut = TRAIN_SIZE - self.val_size
        train_idx, val_idx = order[:cut], order[cut:]
        self.splits = {
            "train": {"x": data["train_x"][train_idx], "y": data["train_y"][train_idx]},
            "val": {"x": data["train_x"][val_idx], "y": data["train_y"][val_idx]},
            "test": {"x": data["test_x"], "y": data["test_y"]},
        }

    def train_dataloader(self) -> BatchLoader:
        loader = tensor_loader(
            self.splits["train"], self.batch_size, shuffle=True, seed=self.seed, **self.shard()
        )
        return self.resumable(loader)

    def normalize(self, images: torch.Tensor) -> torch.Tensor:
        """uint8 (batch, 28, 28) -> float rows normalised with MNIST's mean and std."""
        return (images.float() / 255.0 - self.mean) / self.std

    def on_after_batch_transfer(self, batch: Batch, dataloader_idx: int) -> Batch:
        if batch["x"].dtype == torch.uint8:
            batch = {**batch, "x": self.normalize(batch["x"])}
        return batch

    def sample_batch(self) -> Batch:
        """The first test image of each digit 0-9: the same ten images in every run."""
        y = self.splits["test"]["y"]
        idx = torch.stack([torch.nonzero(y == d)[0, 0] for d in range(10)])
        return {"x": self.splits["test"]["x"][idx], "y": y[idx], "index": idx}

    def describe(self, batch: Batch, preds: torch.Tensor) -> list[dict]:
        return [
            {"test_index": i, "true": t, "pred": p, "text": f"test image {i}: {p} (true {t})"}
            for i, t, p in zip(
                batch["index"].tolist(), batch["y"].tolist(), preds.tolist(), strict=True
            )
        ]

"""What the on-the-fly tasks share: fresh training batches, fixed evaluation sets, and
evaluation sets at any sequence length for accuracy-against-length studies."""

from __future__ import annotations

from collections.abc import Sequence

import torch

from seqnets.data.base import TensorDataModule
from seqnets.data.batching import Batch, BatchLoader, generated_loader
from seqnets.errors import ConfigError, check_int

# Offsets keep the fixed evaluation sets' generators apart from each other and from training.
VAL_OFFSET, TEST_OFFSET, LENGTH_OFFSET = 1_000_000_007, 2_000_000_011, 3_000_000_019
SAMPLE_OFFSET = 4_000_000_007


class SyntheticDataModule(TensorDataModule):
    """Subclasses say how to make ``n`` sequences (``make``) and which lengths to study.

    Training batches are made afresh each step from a seed derived from (seed, epoch, step),
    so no two epochs see the same data and every run with the same seed sees the same data.
    Validation and test sets are fixed for a given ``data_seed``, shared by every run.
    """

    name = "synthetic"
    num_features: int

    def __init__(
        self,
        batch_size: int = 64,
        train_batches: int = 100,
        val_size: int = 2_000,
        test_size: int = 10_000,
        eval_batch_size: int = 1_000,
        eval_samples: int = 1_000,
        seed: int = 0,
        data_seed: int = 0,
    ) -> None:
        super().__init__(batch_size, eval_batch_size, seed)
        self.train_batches = check_int("task.train_batches", train_batches, 1)
        self.val_size = check_int("task.datamodule.val_size", val_size, 1)
        self.test_size = check_int("task.datamodule.test_size", test_size, 1)
        self.eval_samples = check_int("task.eval_samples", eval_samples, 1)
        self.data_seed = data_seed

    # -- what a task defines -------------------------------------------------------------
    def make(self, n: int, generator: torch.Generator, length: int | None = None) -> Batch:
        """``n`` sequences at the training lengths, or all at ``length`` when given."""
        raise NotImplementedError

    def train_batch(self, generator: torch.Generator) -> Batch:
        """One fresh training batch; tasks may override to bucket lengths."""
        return self.make(self.batch_size, generator)

    def eval_lengths(self) -> list[int]:
        """The sequence lengths the accuracy-against-length study covers."""
        raise NotImplementedError

    # -- shared machinery ------------------------------------------------------------------
    def train_work(self) -> tuple[int, int]:
        return self.train_batches, self.max_len

    def eval_work(self) -> int:
        return self.eval_samples * sum(self.eval_lengths())

    def _fixed(self, n: int, offset: int, length: int | None = None) -> Batch:
        return self.make(n, torch.Generator().manual_seed(self.data_seed + offset), length)

    def setup(self, stage: str | None = None) -> None:
        if not self.splits:
            self.splits = {
                "val": self._fixed(self.val_size, VAL_OFFSET),
                "test": self._fixed(self.test_size, TEST_OFFSET),
            }

    def train_dataloader(self) -> BatchLoader:
        loader = generated_loader(self.train_batch, self.train_batches, self.seed, **self.shard())
        return self.resumable(loader)

    def length_set(self, length: int) -> Batch:
        """``eval_samples`` sequences all of ``length``, fixed for a given ``data_seed``."""
        return self._fixed(self.eval_samples, LENGTH_OFFSET + 7919 * length, length)

    def sample_batch(self, n: int = 8) -> Batch:
        """The first ``n`` test sequences: the same samples in every run."""
        return {k: v[:n] for k, v in self.splits["test"].items()}


def check_length_range(name: str, low: int, high: int, minimum: int = 1) -> tuple[int, int]:
    """Validate an inclusive length range [low, high] named ``name``."""
    check_int(f"{name} (min)", low, minimum)
    check_int(f"{name} (max)", high, minimum)
    if low > high:
        raise ConfigError(f"{name}: min {low} > max {high}; the range must satisfy min <= max")
    return low, high


def length_range(name: str, value: int | Sequence[int]) -> tuple[int, int]:
    """A config's length setting ``L`` or ``[L_min, L_max]`` (named ``name``) -> an inclusive
    range of lengths."""
    if isinstance(value, int) and not isinstance(value, bool):
        return check_length_range(name, value, value)
    if isinstance(value, Sequence) and not isinstance(value, str) and len(value) == 2:
        return check_length_range(name, *tuple(value))
    raise ConfigError(
        f"{name}={value!r} is not allowed: give a length L >= 1 or a range [min, max]"
    )

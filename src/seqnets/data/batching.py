"""Batches cut from tensors by indexing, in an order that depends only on (seed, epoch).

A DataLoader over per-item ``__getitem__`` plus ``default_collate`` costs more than the
recurrent step itself for MNIST-sized inputs; ``__getitems__`` hands the whole index list to
the dataset, which answers with one fancy-indexing call per tensor. The order of an epoch is
a function of (seed, epoch), never of the global generator, so a resumed run sees the same
batches as an uninterrupted one; a run resumed in the middle of an epoch skips the batches it
already trained on (``EpochSampler.resume_at``). Under DDP each rank takes every
``world``-th item, so the ranks see disjoint parts of the same epoch and evaluation sets are
covered exactly once.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import torch
from torch.utils.data import DataLoader, Dataset, Sampler

Batch = dict[str, torch.Tensor]


def epoch_seed(seed: int, epoch: int) -> int:
    """A distinct, reproducible seed per (seed, epoch)."""
    return (seed * 1_000_003 + epoch) % (2**63)


class TensorBatches(Dataset):
    """Equal-length tensors (first dimension = samples) served a whole batch at a time."""

    def __init__(self, tensors: Batch) -> None:
        sizes = {t.shape[0] for t in tensors.values()}
        if len(sizes) != 1:
            raise ValueError(
                f"tensors differ in length: { {k: v.shape for k, v in tensors.items()} }"
            )
        self.tensors = tensors
        self.size = sizes.pop()

    def __len__(self) -> int:
        return self.size

    def __getitem__(self, index: int) -> Batch:
        return {k: v[index] for k, v in self.tensors.items()}

    def __getitems__(self, indices: list[int]) -> Batch:
        idx = torch.as_tensor(indices)
        # The items' positions travel with them, so predictions gathered from several ranks
        # can be put back in order.
        return {k: v[idx] for k, v in self.tensors.items()} | {"index": idx}


class EpochSampler(Sampler[int]):
    """This rank's share of the ``n`` items of an epoch drawn from (seed, epoch); Lightning
    calls ``set_epoch``. ``resume_at(epoch, items)`` drops the first items of that epoch once
    (a run resumed mid-epoch continues where the interrupted one stopped).

    The order is computed when the first item is asked for, not when the iterator is made:
    Lightning makes the first epoch's iterator before a resumed run's epoch is restored.
    Training samplers give every rank the same number of items (the remainder is left out):
    under DDP a rank with one batch more would wait forever for the others' gradients.
    """

    even = False  # whether every rank gets the same number of items

    def __init__(self, n: int, seed: int = 0, rank: int = 0, world: int = 1) -> None:
        self.n, self.seed, self.epoch = n, seed, 0
        self.rank, self.world = rank, world
        self._resume: tuple[int, int] | None = None

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def resume_at(self, epoch: int, items: int) -> None:
        self._resume = (epoch, items)

    def order(self) -> list[int]:
        """All ``n`` items of this epoch, before sharding."""
        raise NotImplementedError

    def __iter__(self) -> Iterator[int]:
        items = self.order()[self.rank :: self.world][: len(self)]
        if self._resume is not None and self._resume[0] == self.epoch:
            items = items[self._resume[1] :]
            self._resume = None
        yield from items

    def __len__(self) -> int:
        return self.n // self.world if self.even else len(range(self.rank, self.n, self.world))


class InOrder(EpochSampler):
    """``range(n)``: evaluation sets, in order."""

    def order(self) -> list[int]:
        return list(range(self.n))


class EpochShuffle(EpochSampler):
    """A permutation of ``range(n)``: the sample order of one epoch."""

    even = True

    def order(self) -> list[int]:
        g = torch.Generator().manual_seed(epoch_seed(self.seed, self.epoch))
        return torch.randperm(self.n, generator=g).tolist()


def _as_is(batch: Batch) -> Batch:
    return batch


def tensor_loader(
    tensors: Batch,
    batch_size: int,
    shuffle: bool = False,
    seed: int = 0,
    rank: int = 0,
    world: int = 1,
) -> DataLoader:
    """A DataLoader over in-memory tensors; shuffled per (seed, epoch) when ``shuffle``."""
    dataset = TensorBatches(tensors)
    kind = EpochShuffle if shuffle else InOrder
    sampler = kind(len(dataset), seed, rank, world)
    return DataLoader(dataset, batch_size=batch_size, sampler=sampler, collate_fn=_as_is)


class GeneratedBatches(Dataset):
    """Item ``s`` is a whole batch made by ``make(generator seeded with s)``: data on the fly."""

    def __init__(self, make: Callable[[torch.Generator], Batch]) -> None:
        self.make = make

    def __getitem__(self, batch_seed: int) -> Batch:
        return self.make(torch.Generator().manual_seed(batch_seed))


class BatchSeeds(EpochSampler):
    """One seed per batch of the epoch, each derived from (seed, epoch, step)."""

    even = True

    def order(self) -> list[int]:
        base = epoch_seed(self.seed, self.epoch) * 100_003
        return [(base + step) % (2**63) for step in range(self.n)]


def generated_loader(
    make: Callable[[torch.Generator], Batch],
    num_batches: int,
    seed: int,
    rank: int = 0,
    world: int = 1,
) -> DataLoader:
    """A DataLoader whose every batch is freshly generated, reproducibly per (seed, epoch, step)."""
    sampler = BatchSeeds(num_batches, seed, rank, world)
    return DataLoader(GeneratedBatches(make), batch_size=None, sampler=sampler)

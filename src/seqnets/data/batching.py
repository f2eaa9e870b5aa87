"""Batches cut from tensors by indexing, in an order that depends only on (seed, epoch).

A DataLoader over ``__getitem__`` plus ``default_collate`` costs more than the recurrent step
itself for MNIST-sized inputs; here each batch is one fancy-indexing call per tensor. An
epoch's order never depends on the global generator, so a resumed run (even mid-epoch) sees
the same batches as an uninterrupted one; under DDP the ranks take disjoint shares.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from typing import Any

import torch
from torch.utils.data import Sampler

Batch = dict[str, torch.Tensor]


def limited_batches(limit: int | float | None, full: int) -> int:
    """Lightning's reading of ``trainer.limit_train_batches``: None for all ``full``
    batches, an int for at most that many, a float for that fraction of them. The one
    reading that the training loader and the cost estimate share."""
    if limit is None:
        return full
    return min(full, limit) if isinstance(limit, int) else int(full * limit)


def epoch_seed(seed: int, epoch: int) -> int:
    """A distinct, reproducible seed per (seed, epoch)."""
    return (seed * 1_000_003 + epoch) % (2**63)


class TensorBatches:
    """Equal-length tensors (first dimension = samples), cut a whole batch at a time: called
    with a tensor of positions, it returns the batch of those samples."""

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

    def __call__(self, idx: torch.Tensor) -> Batch:
        # The items' positions travel with them, so predictions gathered from several ranks
        # can be put back in order.
        return {k: v[idx] for k, v in self.tensors.items()} | {"index": idx}


class BatchLoader:
    """One batch per item of ``sampler``, made by ``make(item)``: a tensor of positions cut
    from tensors, or a seed for a batch made on the fly. A DataLoader would add nothing
    here (batches are whole already, nothing to collate, no workers needed for data held as
    tensors) but its per-batch machinery, whose cost a small model's step notices;
    Lightning takes any sized iterable, and finds the sampler (``set_epoch``) here too."""

    # Lightning reads it, with ``sampler``, to tell a shuffled loader from one in order; a
    # DataLoader whose sampler hands out whole batches has none either.
    batch_sampler = None

    def __init__(self, make: Callable[[Any], Batch], sampler: EpochSampler) -> None:
        self.make, self.sampler = make, sampler

    def __iter__(self) -> Iterator[Batch]:
        return map(self.make, self.sampler)

    def __len__(self) -> int:
        return len(self.sampler)


class EpochSampler(Sampler):
    """This rank's share of the ``n`` items of an epoch drawn from (seed, epoch), handed out
    one at a time or, with ``batch_size``, as tensors of up to that many positions (one
    slice per batch, not a Python int per item); Lightning calls ``set_epoch``.
    ``resume_at(epoch, items)`` drops the first items of that epoch once (a run resumed
    mid-epoch continues where the interrupted one stopped); ``consumed`` counts the items of
    this epoch handed out so far (the DataModule's ``state_dict`` says how many were
    trained). ``limit`` (batches, or items without ``batch_size``) ends every epoch there,
    counted from the epoch's start: Lightning's ``limit_train_batches`` counts from where the
    iterator starts, which for a resumed epoch is not its start.

    The order is computed when the first item is asked for, not when the iterator is made:
    Lightning makes the first epoch's iterator before a resumed run's epoch is restored.
    Training samplers give every rank the same number of items (the remainder is left out):
    under DDP a rank with one batch more would wait forever for the others' gradients.
    """

    even = False  # whether every rank gets the same number of items

    def __init__(
        self, n: int, seed: int = 0, rank: int = 0, world: int = 1, batch_size: int | None = None
    ) -> None:
        self.n, self.seed, self.epoch = n, seed, 0
        self.rank, self.world = rank, world
        self.batch_size = batch_size
        self._resume: tuple[int, int] | None = None
        self.consumed = 0
        self.limit: int | None = None
        self._pinned = False

    @property
    def step(self) -> int:
        """Items per batch (the last batch of an epoch may have fewer)."""
        return self.batch_size or 1

    def set_epoch(self, epoch: int) -> None:
        self.epoch, self.consumed = (0 if self._pinned else epoch), 0

    def pin_epoch(self) -> None:
        """Every epoch the first one's items, in the same order (Lightning's
        ``overfit_batches``)."""
        self._pinned, self.epoch = True, 0

    def resume_at(self, epoch: int, items: int) -> None:
        self._resume = (epoch, items)

    def order(self) -> torch.Tensor:
        """All ``n`` items of this epoch, before sharding (int64)."""
        raise NotImplementedError

    def num_items(self) -> int:
        """This rank's items per epoch."""
        return self.n // self.world if self.even else len(range(self.rank, self.n, self.world))

    def __iter__(self) -> Iterator[int | torch.Tensor]:
        step = self.step
        items = self.order()[self.rank :: self.world][: self.num_items()]
        if self.limit is not None:
            items = items[: self.limit * step]
        start = 0
        if self._resume is not None and self._resume[0] == self.epoch:
            start = self._resume[1]
            self._resume = None
        self.consumed = start
        for begin in range(start, len(items), step):
            # Counted as handed out (Lightning fetches one batch ahead of training).
            self.consumed = min(begin + step, len(items))
            yield int(items[begin]) if self.batch_size is None else items[begin : begin + step]

    def __len__(self) -> int:
        """Items per epoch, or batches with ``batch_size``."""
        return math.ceil(self.num_items() / (self.batch_size or 1))


class InOrder(EpochSampler):
    """``range(n)``: evaluation sets, in order."""

    def order(self) -> torch.Tensor:
        return torch.arange(self.n)


class EpochShuffle(EpochSampler):
    """A permutation of ``range(n)``: the sample order of one epoch."""

    even = True

    def order(self) -> torch.Tensor:
        g = torch.Generator().manual_seed(epoch_seed(self.seed, self.epoch))
        return torch.randperm(self.n, generator=g)


def tensor_loader(
    tensors: Batch,
    batch_size: int,
    shuffle: bool = False,
    seed: int = 0,
    rank: int = 0,
    world: int = 1,
) -> BatchLoader:
    """Batches cut from in-memory tensors; shuffled per (seed, epoch) when ``shuffle``."""
    batches = TensorBatches(tensors)
    kind = EpochShuffle if shuffle else InOrder
    return BatchLoader(batches, kind(len(batches), seed, rank, world, batch_size=batch_size))


def seeded(make: Callable[[torch.Generator], Batch]) -> Callable[[int], Batch]:
    """``make`` fed a generator seeded with the item: one batch made on the fly per seed."""
    return lambda batch_seed: make(torch.Generator().manual_seed(batch_seed))


class BatchSeeds(EpochSampler):
    """One seed per batch of the epoch, each derived from (seed, epoch, step)."""

    even = True

    def order(self) -> torch.Tensor:
        base = epoch_seed(self.seed, self.epoch) * 100_003
        return torch.tensor([(base + step) % (2**63) for step in range(self.n)])


def generated_loader(
    make: Callable[[torch.Generator], Batch],
    num_batches: int,
    seed: int,
    rank: int = 0,
    world: int = 1,
) -> BatchLoader:
    """Batches freshly generated, reproducibly per (seed, epoch, step)."""
    return BatchLoader(seeded(make), BatchSeeds(num_batches, seed, rank, world))

"""What every task's DataModule shares: evaluation sets held as tensors in ``splits``."""

from __future__ import annotations

import lightning as L
import torch

from seqnets.data.batching import Batch, BatchLoader, limited_batches, tensor_loader
from seqnets.errors import check_int


def prepare_batch(datamodule: L.LightningDataModule, batch: Batch, device: torch.device) -> Batch:
    """A batch as the model sees it: moved to ``device`` and prepared (e.g. normalised) by
    the DataModule's own hooks, as the Trainer prepares the batches it fetches itself. The
    training step fetches its own (several per call), and scoring outside the Trainer has
    no Trainer to do it."""
    batch = datamodule.transfer_batch_to_device(batch, device, 0)
    return datamodule.on_after_batch_transfer(batch, 0)


class TensorDataModule(L.LightningDataModule):
    """Validation and test sets live in ``self.splits`` as tensors and are served a whole batch
    at a time; subclasses fill ``splits`` in ``setup`` and say how to train and describe.

    What a task's DataModule must have (the contract the rest of seqnets reads; a task's
    other behaviour lives in its ``seqnets.tasks.base.Task``):

    - ``name`` (str): the task's name, ``task.name``; ``num_features`` (int): the size of
      each step's input vector, which the backbone is built for.
    - batches: dicts of ``x`` (batch, steps, num_features), ``y`` (the objective's target)
      and, for ragged batches, ``lengths`` (each sequence's length, on the CPU).
    - ``setup`` fills ``splits["val"]`` and ``splits["test"]``; ``train_dataloader`` (for
      synthetic tasks: ``SyntheticDataModule`` makes batches from ``make``/``train_batch``).
    - ``train_work()`` -> (batches per epoch, longest training sequence): the cost estimate
      before a run (``seqnets.cost``) and the long-training warning read it.
    - ``sample_batch()`` and ``describe(batch, preds)``: the fixed samples every run shows
      (``describe`` gives each a ``text``).
    - optional, for the accuracy-against-length study: ``eval_lengths()`` and
      ``length_set(length)`` (``SyntheticDataModule`` has both); ``min_len``/``max_len``,
      the trained range the figures shade; constructor arguments ``min_eval_len`` and
      ``max_eval_len``, the range ``python -m seqnets.evaluate lengths=[min,max]`` changes;
      ``eval_work()``, the study's size for the cost estimate.
    - optional: ``check()`` (files missing, before any work). Figures are drawn by the task
      (``seqnets.tasks.base.Task``), not here.
    """

    name: str
    num_features: int

    def __init__(self, batch_size: int, eval_batch_size: int, seed: int) -> None:
        super().__init__()
        self.batch_size = check_int("task.batch_size", batch_size, 1)
        self.eval_batch_size = check_int("task.datamodule.eval_batch_size", eval_batch_size, 1)
        self.seed = seed
        self.splits: dict[str, Batch] = {}
        self._resume: dict[str, int] | None = None

    def transfer_batch_to_device(
        self, batch: Batch, device: torch.device, dataloader_idx: int
    ) -> Batch:
        """Everything to the device but ``lengths``: packing needs them on the CPU, and a
        round trip per step would stall a GPU."""
        return {
            k: v if k == "lengths" else v.to(device, non_blocking=True) for k, v in batch.items()
        }

    def state_dict(self) -> dict[str, int]:
        """Where training stands within its epoch, saved in every checkpoint: a run resumed
        from the middle of an epoch skips the items it already trained on."""
        trainer = self.trainer
        sampler = getattr(trainer.train_dataloader, "sampler", None) if trainer else None
        if sampler is None:
            return {}
        # Trained, not handed out: Lightning fetches a batch ahead of the one it trains on.
        done = trainer.fit_loop.epoch_loop.batch_progress.current.completed
        return {"epoch": sampler.epoch, "items": min(sampler.consumed, done * sampler.step)}

    def load_state_dict(self, state_dict: dict[str, int]) -> None:
        self._resume = state_dict or None

    def resumable(self, loader: BatchLoader) -> BatchLoader:
        """``loader`` (the training loader) told where a restored run stands (see
        ``state_dict``), where Lightning's ``limit_train_batches`` ends each epoch, and that
        ``overfit_batches`` repeats the first epoch's batches."""
        if self.trainer is not None and self.trainer.overfit_batches > 0:
            # Lightning's overfit_batches trains on the same batches every epoch (it turns a
            # DataLoader's shuffling off); these loaders draw each epoch's batches themselves.
            loader.sampler.pin_epoch()
        limit = self.trainer.limit_train_batches if self.trainer else None
        if limit is not None:
            loader.sampler.limit = limited_batches(limit, len(loader))
        if self._resume:
            loader.sampler.resume_at(self._resume["epoch"], self._resume["items"])
            self._resume = None
        return loader

    def train_work(self) -> tuple[int, int]:
        """(batches, longest sequence) of one full training epoch: what ``seqnets.cost``
        multiplies into an estimate before a run starts."""
        raise NotImplementedError

    def eval_work(self) -> int:
        """Sequence steps (sequences x their lengths) of the accuracy-against-length study
        the test analysis runs; 0 for tasks without one."""
        return 0

    def check(self) -> None:
        """Raise a ConfigError for what can be found wrong before any work (files missing, an
        unreadable directory); the constructor has already checked the numbers."""

    def shard(self) -> dict[str, int]:
        """This process's rank and the number of ranks: under DDP every loader takes its own
        share itself (the Trainer's distributed sampler would pad evaluation sets with
        repeats, and the confusion matrix would count them)."""
        trainer = self.trainer
        if trainer is None:
            return {"rank": 0, "world": 1}
        return {"rank": trainer.global_rank, "world": trainer.world_size}

    def val_dataloader(self) -> BatchLoader:
        return tensor_loader(self.splits["val"], self.eval_batch_size, **self.shard())

    def test_dataloader(self) -> BatchLoader:
        return tensor_loader(self.splits["test"], self.eval_batch_size, **self.shard())

    def sample_batch(self) -> Batch:
        """The same few test samples in every run, for sample predictions."""
        raise NotImplementedError

    def describe(self, batch: Batch, preds: torch.Tensor) -> list[dict]:
        """Samples and their predictions as a person reads them."""
        raise NotImplementedError

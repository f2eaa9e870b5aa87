"""Callbacks that leave in the run directory the numbers every report figure is drawn from."""

from __future__ import annotations

import logging
import os
import shutil
import signal
import threading
import time
from pathlib import Path
from typing import Any

import lightning as L
import torch
from lightning.pytorch.callbacks import ModelCheckpoint, OnExceptionCheckpoint
from lightning.pytorch.loggers import TensorBoardLogger

from seqnets import signals
from seqnets.errors import RunDiverged

log = logging.getLogger(__name__)


def first_of_type(items: list, kind: type) -> Any | None:
    """The first of ``items`` (callbacks, loggers) that is a ``kind``, or None."""
    return next((item for item in items if isinstance(item, kind)), None)


def tensorboard_writer(trainer: L.Trainer) -> Any | None:
    """The SummaryWriter of the run's TensorBoard logger, if it has one."""
    logger = first_of_type(trainer.loggers, TensorBoardLogger)
    return logger.experiment if logger is not None else None


def _objective(outputs: Any) -> torch.Tensor | None:
    """The training step's objective loss (``SequenceModule.training_step``), or None."""
    return outputs.get("objective") if isinstance(outputs, dict) else None


class History(L.Callback):
    """Training loss at every step, every epoch's train metrics and, for the epochs that
    validated, the validation metrics, plus the seconds spent training and testing; kept in
    memory for ``metrics.json`` (TensorBoard keeps the curves too, but the report should not
    need it).

    Saved in checkpoints, so a resumed run's history starts at its first epoch and its
    training time counts the time before the stop.
    """

    def __init__(self) -> None:
        # (global step, loss) per optimiser step; tensors until read, since reading one
        # would stall a GPU every step.
        self._steps: list[tuple[int, torch.Tensor | float]] = []
        self.epochs: list[dict[str, float]] = []
        self.seconds = {"train": 0.0, "test": 0.0}
        self._validated: dict[str, float] = {}
        self._started: dict[str, float] = {}

    @property
    def steps(self) -> list[tuple[int, float]]:
        """(global step, training loss) pairs."""
        return [(step, float(loss)) for step, loss in self._steps]

    def on_train_batch_end(
        self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, *args: Any
    ) -> None:
        loss = _objective(outputs)
        if loss is not None:
            self._steps.append((trainer.global_step, loss))

    def on_validation_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        # Only a validation that ran in this epoch (not the sanity check) gives the epoch's
        # row its validation values: callback_metrics would carry the last ones over.
        if trainer.sanity_checking:
            return
        values = pl_module.epoch_metrics("val")
        self._validated = {key: float(value) for key, value in values.items()}

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        # Callbacks run before the module's own epoch-end hook, which logs these same values:
        # they are read from the module's metrics rather than from what has been logged.
        row: dict[str, float] = {"epoch": trainer.current_epoch}
        row |= {key: float(value) for key, value in pl_module.epoch_metrics("train").items()}
        row |= self._validated
        self._validated = {}
        self.epochs.append(row)

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._started["train"] = time.perf_counter()

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._stop("train")

    def on_test_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._started["test"] = time.perf_counter()

    def on_test_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._stop("test")

    def on_exception(self, trainer: L.Trainer, *args: Any) -> None:
        self._stop("train")  # a stopped or diverged run's training time still counts

    def _stop(self, stage: str) -> None:
        started = self._started.pop(stage, None)
        if started is not None:
            self.seconds[stage] += time.perf_counter() - started

    def state_dict(self) -> dict[str, Any]:
        train_seconds = self.seconds["train"]
        if "train" in self._started:  # saved mid-training: the time so far
            train_seconds += time.perf_counter() - self._started["train"]
        return {"steps": self.steps, "epochs": self.epochs, "train_seconds": train_seconds}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self._steps = list(map(tuple, state_dict["steps"]))
        self.epochs = list(state_dict["epochs"])
        self.seconds["train"] = state_dict.get("train_seconds", 0.0)


class DivergenceGuard(L.Callback):
    """Stops training at the first non-finite loss, so that no checkpoint of NaN weights is
    saved and no epoch runs on for nothing; ``RunDiverged`` carries the step.

    The first bad step is recorded exactly, on the loss's device; it is read back to the
    host after every step on the CPU (free there, so the run stops at it), and once every
    ``sync_every_n_steps`` steps on an accelerator (a read-back stalls the device).
    """

    def __init__(self, sync_every_n_steps: int = 50) -> None:
        self.every = sync_every_n_steps
        self._first_bad: torch.Tensor | None = None  # (step, loss), step -1 while all is well

    def on_train_batch_end(
        self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, *args: Any
    ) -> None:
        loss = _objective(outputs)
        if loss is None:
            return
        if self._first_bad is None:
            self._first_bad = torch.full((2,), -1.0, device=loss.device)
        loss = loss.float()
        new = ~torch.isfinite(loss) & (self._first_bad[0] < 0)
        step = torch.full_like(loss, trainer.global_step)
        self._first_bad = torch.where(new, torch.stack([step, loss]), self._first_bad)
        if loss.device.type == "cpu" or trainer.global_step % self.every == 0:
            self._raise_if_bad(trainer)

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._raise_if_bad(trainer)
        checkpoint = first_of_type(trainer.callbacks, ModelCheckpoint)
        monitor = checkpoint.monitor if checkpoint else None
        value = trainer.callback_metrics.get(monitor) if monitor else None
        if value is not None and not torch.isfinite(value):
            raise RunDiverged(trainer.global_step, float(value), f"monitored {monitor}")

    def _raise_if_bad(self, trainer: L.Trainer) -> None:
        if self._first_bad is None:
            return
        step, value = self._first_bad.tolist()
        bad = step >= 0
        if trainer.world_size > 1:  # every rank must stop together, or the others hang
            bad = trainer.strategy.reduce_boolean_decision(bad, all=False)
        if bad:
            raise RunDiverged(int(step), value)


class RunCheckpoint(ModelCheckpoint):
    """Lightning's ModelCheckpoint, able to continue a run in a new directory.

    A resumed run writes to a directory of its own, so that nothing of the original is ever
    overwritten; but ModelCheckpoint forgets its best score when its directory changes, and
    would delete a superseded best checkpoint of the original run. This copy brings the
    original's best checkpoint along and keeps its score, so the best epoch is chosen over the
    whole run, as in one that was never stopped.
    """

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        old = state_dict.get("dirpath")
        if old and self.dirpath and os.path.realpath(old) != os.path.realpath(self.dirpath):
            state_dict = self._adopt(state_dict, Path(old), Path(self.dirpath))
        super().load_state_dict(state_dict)

    def _adopt(self, state: dict[str, Any], old: Path, new: Path) -> dict[str, Any]:
        new.mkdir(parents=True, exist_ok=True)

        def copied(path: str) -> str:
            source = Path(path) if path else None
            if source is None or not source.is_file():
                return path
            target = new / source.name
            if not target.exists():
                shutil.copy2(source, target)
            return str(target)

        return state | {
            "dirpath": self.dirpath,
            "best_model_path": copied(state.get("best_model_path", "")),
            "kth_best_model_path": copied(state.get("kth_best_model_path", "")),
            "best_k_models": {copied(k): v for k, v in state.get("best_k_models", {}).items()},
            "last_model_path": "",  # the resumed run writes its own
        }


class InterruptCheckpoint(OnExceptionCheckpoint):
    """A stop asked by a signal (Ctrl-C, SIGTERM) leaves a checkpoint to resume from, even in
    the middle of an epoch; a diverged or crashed run leaves none (its weights may be NaN).
    ``saved`` says where it went.

    While training is under way the stop takes effect when the next step starts, or when
    training ends if no step is left: see ``seqnets.signals`` for why. Under DDP the ranks
    agree on stopping (a collective, so a host sync on GPUs) only once every
    ``sync_every_n_steps`` steps, all at the same step.
    """

    def __init__(
        self, dirpath: str, filename: str = "interrupted", sync_every_n_steps: int = 50
    ) -> None:
        super().__init__(dirpath, filename)
        self.every = sync_every_n_steps
        self.saved: str | None = None
        self._previous: dict[int, Any] = {}

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        # After Lightning registered its own SIGTERM handler (which only marks the signal):
        # this run's handler defers the stop to the next step.
        if threading.current_thread() is threading.main_thread():
            self._previous = {s: signal.signal(s, signals.handle) for s in signals.stop_signals()}
            preempt = signals.preemption_signal()
            if preempt is not None:
                signals.state.requeue = self._previous.get(preempt)
        signals.state.deferring = True

    def on_train_batch_start(self, trainer: L.Trainer, *args: Any) -> None:
        stop = signals.state.received is not None
        if trainer.world_size > 1:  # every rank stops at the same step, or the others hang
            if trainer.global_step % self.every:
                return
            stop = trainer.strategy.reduce_boolean_decision(stop, all=False)
        if stop:
            raise signals.Stopped(signals.state.received or signal.SIGTERM)

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._restore()
        if signals.state.received is not None:  # asked during the last validation
            raise signals.Stopped(signals.state.received)

    def on_exception(
        self, trainer: L.Trainer, pl_module: L.LightningModule, exception: BaseException
    ) -> None:
        self._restore()
        if isinstance(exception, KeyboardInterrupt) and trainer.state.fn == "fit":
            super().on_exception(trainer, pl_module, exception)
            self.saved = self.ckpt_path

    def _restore(self) -> None:
        signals.state.deferring = False
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)
        self._previous = {}


class Analysis(L.Callback):
    """A callback that leaves numbers for the run's ``metrics.json`` in ``results``: ``train``
    reads them without knowing what computed them. The test analysis asks the run's task
    what to measure, so it lives above, with the tasks (``seqnets.tasks.analysis``)."""

    results: dict[str, Any]

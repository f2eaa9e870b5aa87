"""The fast training path, and when a run may take it.

Lightning's loop does a fixed amount of work per call of ``training_step`` (every callback's
hooks, progress tracking, the fetcher, the logger connector): about a third of a small
recurrent model's step on a CPU (``make bench``: the plain Lightning loop against the bare
one). ``FastSequenceModule`` takes up to ``steps_per_call`` optimiser steps per call
(Lightning's manual optimisation, batches drawn from ``dataloader_iter``), so that work is
paid once per call.

The contract: **the fast path is never observable.** A run takes it only when everything it
has configured gives the same result either way; otherwise it trains in Lightning's own loop
(``SequenceModule``: automatic optimisation, one step per call) and says so in one line.
What the fast path keeps exactly as Lightning's loop does, per optimiser step:

- ``global_step``, the learning-rate schedule, the metrics, the loss history, the
  divergence guard and the per-step TensorBoard curves (``SequenceModule.log_step``);
  ``limit_train_batches`` and ``max_steps`` count single batches;
- the loss at every step, the test scores and the best validation value, bit for bit
  (``tests/test_steps_per_call.py``), and the epoch means to rounding;
- the batch-transfer hooks (``on_before_batch_transfer``, ``transfer_batch_to_device``,
  ``on_after_batch_transfer`` of the DataModule or the module), the precision plugin's input
  conversion, and the backward with its hooks (torch's own ``backward`` only where
  Lightning's would add nothing: ``plain_backward``);
- validation once per epoch, epoch-based checkpoints, early stopping on epoch metrics.

What it cannot keep, because Lightning sees one call where several steps were taken:
anything that acts per call of ``training_step``: a ``val_check_interval`` other than one
epoch, step-based checkpoints (``every_n_train_steps``, ``train_time_interval``), a
``LearningRateMonitor`` (it logs at Lightning's count of calls, even per epoch), a profiler
(it would time twenty steps as one batch), ``self.log(on_step=True)``, any callback's
``on_train_batch_start/end`` (called once per call), a time-limited ``Timer``, and
Lightning's own gradient clipping and accumulation (refused under manual
optimisation). So the fast path is taken only with the callbacks and loggers in
``EXACT_CALLBACKS`` and ``EXACT_LOGGERS`` (each under the conditions written there) and none
of the rest; a user can force either way with ``loop=fast`` or ``loop=lightning``.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Callable, Iterator
from typing import Any

import lightning as L
import torch
from lightning.pytorch.callbacks import (
    EarlyStopping,
    ModelCheckpoint,
    ModelSummary,
    OnExceptionCheckpoint,
    RichModelSummary,
    Timer,
    TQDMProgressBar,
)
from lightning.pytorch.loggers import CSVLogger, TensorBoardLogger
from lightning.pytorch.plugins.precision import Precision
from lightning.pytorch.profilers import PassThroughProfiler
from lightning.pytorch.strategies import Strategy
from lightning.pytorch.utilities.model_helpers import is_overridden
from lightning.pytorch.utilities.warnings import PossibleUserWarning
from omegaconf import DictConfig

from seqnets.errors import ConfigError
from seqnets.models.module import SequenceModule

log = logging.getLogger(__name__)

# The training step draws its own batches, several per call. Lightning warns, every run,
# that this signature is experimental, that hooks then see the last batch's index, and that
# gradient accumulation would not work: the fast path is taken only where none of that
# shows (see the module's docstring), and tests/test_fastpath.py checks it.
warnings.filterwarnings(
    "ignore",
    message="You are using the `dataloader_iter` step flavor",
    category=PossibleUserWarning,
)
warnings.filterwarnings("ignore", message="Found `dataloader_iter` argument in the `training_step`")

LOOPS = ("auto", "fast", "lightning")
# What Lightning's loop costs against the fast path on this project's models, measured by
# `make bench` (the plain Lightning loop against seqnets' path): said in the fallback line.
LIGHTNING_LOOP_COST = "about 10-15 % longer training on small models (make bench)"


def _exact_checkpoint(callback: ModelCheckpoint) -> bool:
    # Saved at epoch ends or validation ends only: nothing counts training steps or time.
    return not callback._every_n_train_steps and callback._train_time_interval is None


def _exact_timer(callback: Timer) -> bool:
    return callback._duration is None  # a time limit is checked at every call's end


# Callbacks that act only at epoch, fit or test boundaries, or (seqnets' own) read every
# step from what a call returns; with the condition each must meet. Checked by type, so a
# user's subclass is exact only if it is exactly one of these.
EXACT_CALLBACKS: dict[type, Callable[[Any], bool] | None] = {
    ModelCheckpoint: _exact_checkpoint,
    OnExceptionCheckpoint: None,
    EarlyStopping: None,  # checks epoch metrics (validation once per epoch on the fast path)
    Timer: _exact_timer,
    TQDMProgressBar: None,  # counts real batches (the fetcher's index); redrawn between calls
    ModelSummary: None,
    RichModelSummary: None,
}
# Loggers only receive what the module logs, which it logs at the real step either way.
EXACT_LOGGERS = (TensorBoardLogger, CSVLogger)


def _seqnets_callback(callback: L.Callback) -> bool:
    """seqnets' own callbacks read each step's loss from what a call returns and act at
    epoch ends, so they are exact on both paths (``tests/test_fastpath.py``)."""
    from seqnets import callbacks

    own = (
        callbacks.History,
        callbacks.DivergenceGuard,
        callbacks.InterruptCheckpoint,
        callbacks.TestAnalysis,
    )
    return type(callback) in own


def _exact(callback: L.Callback) -> bool:
    if _seqnets_callback(callback):
        return True
    for kind in type(callback).__mro__:
        if kind in EXACT_CALLBACKS:
            # A subclass of seqnets' own (RunCheckpoint) counts as its Lightning base.
            if kind is not type(callback) and not type(callback).__module__.startswith("seqnets."):
                return False
            check = EXACT_CALLBACKS[kind]
            return check is None or check(callback)
    return False


def inexact_features(trainer: L.Trainer) -> list[str]:
    """What this trainer has configured that the fast path cannot reproduce, each named as
    the user would recognise it; empty when the fast path is exact."""
    found = []
    if trainer.val_check_interval != 1.0 or isinstance(trainer.val_check_interval, int):
        found.append(f"trainer.val_check_interval={trainer.val_check_interval}")
    if trainer.check_val_every_n_epoch is None:
        found.append("trainer.check_val_every_n_epoch=null")
    if not isinstance(trainer.profiler, PassThroughProfiler):
        found.append(f"a profiler ({type(trainer.profiler).__name__})")
    if trainer.gradient_clip_val is not None:
        found.append(f"trainer.gradient_clip_val={trainer.gradient_clip_val}")
    if trainer.accumulate_grad_batches != 1:
        found.append(f"trainer.accumulate_grad_batches={trainer.accumulate_grad_batches}")
    for callback in trainer.callbacks:
        if not _exact(callback):
            found.append(f"callback {type(callback).__name__}")
    for logger in trainer.loggers:
        if type(logger) not in EXACT_LOGGERS:
            found.append(f"logger {type(logger).__name__}")
    return found


# Features whose Lightning implementation refuses manual optimisation outright.
REFUSED_BY_MANUAL = ("trainer.gradient_clip_val", "trainer.accumulate_grad_batches")


def module_class(cfg: DictConfig, trainer: L.Trainer) -> type[SequenceModule]:
    """The module class this run trains with: the fast path where it is exact (or forced),
    Lightning's loop otherwise, announced in one line with the reason and its cost."""
    loop = cfg.get("loop", "auto")
    steps = cfg.get("steps_per_call", 1)
    if loop == "lightning" or (loop == "auto" and steps == 1):
        return SequenceModule
    inexact = inexact_features(trainer)
    if loop == "fast":
        refused = [f for f in inexact if f.startswith(REFUSED_BY_MANUAL)]
        if refused:
            raise ConfigError(
                f"loop=fast is not allowed with {', '.join(refused)}: Lightning applies it "
                f"only in its own loop (loop=auto or loop=lightning)"
            )
        if inexact:
            log.warning(
                "loop=fast: forced despite %s, which will see one call per %d steps",
                ", ".join(inexact),
                steps,
            )
        return FastSequenceModule
    if inexact:
        log.warning(
            "Lightning's own loop (one step per call) for this run: %s act per call, which the "
            "fast path (%d steps per call) cannot reproduce; %s; loop=fast forces it",
            ", ".join(inexact),
            steps,
            LIGHTNING_LOOP_COST,
        )
        return SequenceModule
    return FastSequenceModule


def plain_backward(trainer: L.Trainer) -> bool:
    """Whether Lightning's ``manual_backward`` would do nothing but ``loss.backward()`` in
    this run: no strategy work around it (DDP prepares its gradient reducer there), the
    plain precision's backward (mixed precision scales the loss there), and no callback or
    module hook on either side of it. Then the training step calls ``backward`` itself and
    saves the hooks' cost at every step."""

    def changes(obj: object, parent: type, names: tuple[str, ...]) -> bool:
        return any(is_overridden(name, obj, parent) for name in names)

    around = ("pre_backward", "backward", "post_backward")
    hooks = ("on_before_backward", "on_after_backward")
    return not (
        changes(trainer.strategy, Strategy, around)
        or changes(trainer.precision_plugin, Precision, around)
        or any(changes(callback, L.Callback, hooks) for callback in trainer.callbacks)
        or changes(trainer.lightning_module, L.LightningModule, (*hooks, "backward"))
    )


BATCH_HOOKS = ("on_before_batch_transfer", "transfer_batch_to_device", "on_after_batch_transfer")


def batch_transfer(trainer: L.Trainer) -> Callable[[Any], Any]:
    """What makes a fetched batch ready exactly as Lightning's training loop makes the
    batches it fetches itself (precision conversion, then the three batch-transfer hooks,
    each the DataModule's or the module's as Lightning's hook selector picks it): with
    ``dataloader_iter`` the step fetches its own, and Lightning leaves them as they came.

    The hooks are looked up once per fit and called directly: Lightning's per-call wrappers
    add only profiling (no profiler is allowed on the fast path) and cost a small model's
    step a visible share. A strategy that moves batches its own way is asked every time."""
    convert = trainer.precision_plugin.convert_input
    module = trainer.lightning_module
    if is_overridden("batch_to_device", trainer.strategy, Strategy):
        return lambda batch: trainer.strategy.batch_to_device(
            module._on_before_batch_transfer(convert(batch), dataloader_idx=0), dataloader_idx=0
        )
    selector = trainer._data_connector._datahook_selector
    before, transfer, after = (getattr(selector.get_instance(h), h) for h in BATCH_HOOKS)
    device = trainer.strategy.root_device

    def ready(batch: Any) -> Any:
        return after(transfer(before(convert(batch), 0), device, 0), 0)

    return ready


class FastSequenceModule(SequenceModule):
    """``SequenceModule`` taking up to ``steps_per_call`` optimiser steps per call of the
    training step (see this module's docstring for when a run may)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.automatic_optimization = False
        # Decided when training starts: plain_backward(), batch_transfer().
        self._plain_backward = False
        self._transfer: Callable[[Any], Any] | None = None

    def training_step(self, dataloader_iter: Iterator) -> dict[str, torch.Tensor] | None:
        """Up to ``steps_per_call`` optimiser steps, one per batch drawn from the iterator
        (fewer at the end of an epoch, or of ``trainer.max_steps``). Returns the steps'
        objective losses, in order: the callbacks read each step's loss from them.

        The metrics are updated once per call, with every batch's predictions (a torchmetrics
        update has a fixed cost a small model's step notices); epoch values are computed
        once per epoch, as on Lightning's loop."""
        trainer = self.trainer
        optimizer = self.optimizers()
        scheduler = self.lr_schedulers() if self._scheduler_interval == "step" else None
        budget = self.steps_per_call
        if trainer.max_steps > 0:
            budget = min(budget, trainer.max_steps - self.global_step)
        losses, sizes, scored = [], [], []
        for _ in range(budget):
            try:
                batch, _, _ = next(dataloader_iter)
            except StopIteration:
                break
            batch = self._transfer(batch)
            logits, loss, total = self.training_losses(batch)
            step = self.global_step + 1  # the step this batch takes, as global_step counts
            logged = self.logs_at(step)
            lr = optimizer.param_groups[0]["lr"] if logged else None  # the rate it uses
            optimizer.zero_grad()
            if self._plain_backward:
                total.backward()
            else:
                self.manual_backward(total)
            optimizer.step()  # clipping: in on_before_optimizer_step, as Lightning's loop
            if scheduler is not None:
                scheduler.step()
            loss = loss.detach()
            if logged:
                self.log_step(step, loss, lr)
            losses.append(loss)
            sizes.append(batch["x"].shape[0])
            scored.append((logits.detach(), {k: v for k, v in batch.items() if k != "x"}))
            # A diverged step ends the call, so the divergence guard stops the run at that
            # step (reading the loss is free on a CPU; on a GPU the guard finds the step).
            if loss.device.type == "cpu" and not torch.isfinite(loss):
                break
        if not losses:
            return None
        stacked = torch.stack(losses)
        logits, batch = self.objective.merge(scored)
        self._update("train", self.objective.predict(logits), batch, stacked, sizes)
        return {"losses": stacked}

    def on_train_start(self) -> None:
        self._plain_backward = plain_backward(self.trainer)
        self._transfer = batch_transfer(self.trainer)

    def on_before_optimizer_step(self, optimizer: torch.optim.Optimizer) -> None:
        # Inside optimizer.step(), after mixed precision has unscaled the gradients: where
        # Lightning's loop calls configure_gradient_clipping.
        self.configure_gradient_clipping(optimizer)

    def on_train_epoch_end(self) -> None:
        super().on_train_epoch_end()
        if self._scheduler_interval == "epoch":  # Lightning's loop steps it here
            self.lr_schedulers().step()

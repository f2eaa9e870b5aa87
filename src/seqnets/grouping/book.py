"""Each member's run, played: the bookkeeping its solo run's callbacks would keep, and
its checkpoints written in a solo run's format."""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import lightning as L
import torch
from lightning.fabric.plugins import TorchCheckpointIO
from lightning.pytorch.callbacks import Checkpoint, EarlyStopping, ModelCheckpoint
from omegaconf import DictConfig

from seqnets import records, reuse
from seqnets.callbacks import DivergenceGuard, History
from seqnets.errors import RunDiverged
from seqnets.grouping.module import GroupedModule
from seqnets.train import Fitted, RunInterrupted, diverged_record, stopped_by

log = logging.getLogger(__name__)


@dataclass
class Member:
    """One member's run: its config, directory, and the state its callbacks would hold."""

    cfg: DictConfig
    run_dir: Path
    callbacks: list[L.Callback]
    fitted: Fitted = field(default_factory=Fitted)
    first_bad: tuple[int, float] | None = None
    previous_best: str | None = None

    def callback(self, kind: type) -> Any:
        """Its callback of ``kind`` (a solo run's own object, whose state it saves), or None."""
        return next((c for c in self.callbacks if isinstance(c, kind)), None)


class GroupBook(Checkpoint):
    """Every member's bookkeeping, as its solo run's callbacks would keep it: loss at every
    step, epoch rows, the divergence guard, the best and last checkpoints, early stopping.
    A ``Checkpoint``, so that Lightning runs it after the module's epoch-end hook, as it runs
    a solo run's ModelCheckpoint and EarlyStopping."""

    def __init__(self, members: list[Member], learning_rate: bool = True) -> None:
        self.members = members
        # The runs' LearningRateMonitor (their shared callbacks): its curve, replayed.
        self.learning_rate = learning_rate
        # Each member's DivergenceGuard (None: it has none, and runs on as its solo run
        # would). The losses are read back every step on the CPU, on an accelerator every
        # ``sync_every_n_steps`` steps (the members' shared setting): the guard's cadence.
        self.guards = [m.callback(DivergenceGuard) for m in members]
        self.every = next((g.every for g in self.guards if g is not None), 50)
        self.started = 0.0
        self.log_every = 50

    # per step
    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.started = time.perf_counter()
        self.log_every = trainer.log_every_n_steps
        self.optimizer_name = f"lr-{type(trainer.optimizers[0]).__name__}"

    def on_train_batch_end(
        self, trainer: L.Trainer, pl_module: GroupedModule, outputs: Any, *args: Any
    ) -> None:
        losses = outputs["objectives"]
        step = trainer.global_step
        active = list(pl_module.active)
        logged = step % self.log_every == 0
        host = losses.device.type == "cpu" or step % self.every == 0 or logged
        values = losses.float().tolist() if host else None
        lr = trainer.optimizers[0].param_groups[0]["lr"] if logged and self.learning_rate else None
        for i, k in enumerate(active):
            member = self.members[k]
            member.fitted.steps.append((step, values[i] if values else losses[i]))
            guarded = self.guards[k] is not None
            if guarded and values is not None and not math.isfinite(values[i]):
                member.first_bad = member.first_bad or (step, values[i])
            if logged and values is not None:
                curve = {"train/loss_step": values[i]}
                if lr is not None:
                    curve[self.optimizer_name] = lr
                member.fitted.curves.append((step, curve))
        for k in active:
            if self.members[k].first_bad is not None:
                step, value = self.members[k].first_bad
                self._diverged(trainer, pl_module, k, step, value, "training loss")

    def _diverged(
        self, trainer: L.Trainer, module: GroupedModule, k: int, step: int, value: float, what: str
    ) -> None:
        member = self.members[k]
        member.fitted.status = records.DIVERGED
        stop = RunDiverged(step, value, what)
        member.fitted.diverged = diverged_record(stop, trainer.current_epoch)
        log.warning("%s: %s", member.run_dir.name, stop)
        self._leave(trainer, module, k, trainer.current_epoch)

    def _leave(self, trainer: L.Trainer, module: GroupedModule, k: int, epochs: int) -> None:
        """Member ``k`` trains no more: how far it got, and the time the group took so far."""
        fitted = self.members[k].fitted
        fitted.train_time = fitted.fit_wall = time.perf_counter() - self.started
        fitted.epochs_trained, fitted.steps_trained = epochs, trainer.global_step
        fitted.steps = [(s, float(v)) for s, v in fitted.steps]
        module.leave(k)
        if not module.active:
            trainer.should_stop = True

    # per epoch (after the module's hook: its values are in ``epoch_values``)
    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: GroupedModule) -> None:
        train, val = pl_module.epoch_values["train"], pl_module.epoch_values["val"]
        pl_module.epoch_values = {"train": {}, "val": {}}
        names: dict[int, list[str]] = {}
        stopped = []
        for k in list(pl_module.active):
            member = self.members[k]
            row = {"epoch": trainer.current_epoch, **train.get(k, {}), **val.get(k, {})}
            member.fitted.epochs.append(row)
            member.fitted.curves.append((trainer.global_step, dict(row)))
            checkpoint = member.callback(ModelCheckpoint)
            monitor = checkpoint.monitor if checkpoint else member.cfg.task.monitor
            current = row.get(monitor)
            if self.guards[k] and current is not None and not math.isfinite(current):
                self._diverged(
                    trainer, pl_module, k, trainer.global_step, current, f"monitored {monitor}"
                )
                continue
            if checkpoint is not None:
                names[k] = self._checkpoint_names(trainer, member, checkpoint, current)
            stopper = member.callback(EarlyStopping)
            if stopper is not None and current is not None and self._should_stop(stopper, current):
                stopper.stopped_epoch = trainer.current_epoch
                member.fitted.stopped_by = (
                    f"early stopping on {stopper.monitor} (epoch {stopper.stopped_epoch})"
                )
                stopped.append(k)
        # One save for every member's files (its new best, its last), before a stopped
        # member leaves: its last checkpoint is where it stopped.
        if names:  # the path is unused: MemberCheckpointIO writes ``names``
            trainer.save_checkpoint(str(self.members[0].run_dir), storage_options=names)
        for k, files in names.items():
            previous = self.members[k].previous_best
            if previous and previous not in files and Path(previous).exists():
                Path(previous).unlink()
        for k in stopped:
            self._leave(trainer, pl_module, k, trainer.current_epoch + 1)

    def _checkpoint_names(
        self, trainer: L.Trainer, member: Member, checkpoint: ModelCheckpoint, current: float | None
    ) -> list[str]:
        """The files a solo run's ModelCheckpoint would write at this epoch's end (the new
        best, then last), its state updated first, as it does."""
        files = []
        if current is not None:
            score = torch.tensor(current)
            best = checkpoint.best_model_score
            better = best is None or (
                current < float(best) if checkpoint.mode == "min" else current > float(best)
            )
            if better:
                member.previous_best = checkpoint.best_model_path or None
                name = checkpoint.format_checkpoint_name(
                    {
                        "epoch": trainer.current_epoch,
                        "step": trainer.global_step,
                        **{checkpoint.monitor: score},
                    }
                )
                checkpoint.best_model_path = checkpoint.kth_best_model_path = name
                checkpoint.best_model_score = checkpoint.kth_value = score
                checkpoint.best_k_models = {name: score}
                files.append(name)
            checkpoint.current_score = score
        if checkpoint.save_last:
            last = str(Path(checkpoint.dirpath) / f"{checkpoint.CHECKPOINT_NAME_LAST}.ckpt")
            checkpoint.last_model_path = last
            member.fitted.last_path = last
            files.append(last)
        if checkpoint.best_model_path:
            member.fitted.best_path = checkpoint.best_model_path
            member.fitted.best_score = float(checkpoint.best_model_score)
        return files

    @staticmethod
    def _should_stop(stopper: EarlyStopping, current: float) -> bool:
        """EarlyStopping's rule (patience, min_delta, mode) for one member's value."""
        value = torch.tensor(current)
        if stopper.check_finite and not torch.isfinite(value):
            return True
        if stopper.monitor_op(value - stopper.min_delta, stopper.best_score.to(value)):
            stopper.best_score = value
            stopper.wait_count = 0
            return False
        stopper.wait_count += 1
        return stopper.wait_count >= stopper.patience

    def on_train_end(self, trainer: L.Trainer, pl_module: GroupedModule) -> None:
        for k in list(pl_module.active):
            member = self.members[k]
            member.fitted.stopped_by = stopped_by(trainer, member.cfg.trainer.get("max_time"))
            self._leave(trainer, pl_module, k, trainer.current_epoch)

    def on_exception(
        self, trainer: L.Trainer, pl_module: GroupedModule, exception: BaseException
    ) -> None:
        """A signal: every active member's state is saved by the group's InterruptCheckpoint
        (which runs next) as its own ``interrupted.ckpt``; anything else ends them failed."""
        for k in pl_module.active:
            fitted = self.members[k].fitted
            if isinstance(exception, KeyboardInterrupt):
                fitted.status = records.INTERRUPTED
                saved = self.members[k].run_dir / reuse.CHECKPOINTS / "interrupted.ckpt"
                fitted.error = RunInterrupted(str(saved))
            else:
                fitted.status = records.FAILED
                fitted.error = exception

    def callback_states(self, k: int) -> dict[str, Any]:
        """Member ``k``'s callbacks' states, as its solo run's checkpoint holds them."""
        member = self.members[k]
        history = member.callback(History)
        if history is not None:
            history.load_state_dict(
                {
                    "steps": [(s, float(v)) for s, v in member.fitted.steps],
                    "epochs": member.fitted.epochs,
                    "train_seconds": time.perf_counter() - self.started,
                }
            )
        states = {}
        for callback in member.callbacks:
            state = callback.state_dict()
            if state:
                states[callback.state_key] = state
        return states


class MemberCheckpointIO(TorchCheckpointIO):
    """Writes a group's checkpoint as its members' own, each in its run's format: the
    member's weights, its parameters' optimiser state, the schedule, its callbacks'
    states, the shared loops and data position. ``storage_options``: {member: file}; none
    (a Lightning callback's save: the interrupted state) writes every active member's file of
    the same name in its own ``checkpoints/``."""

    def __init__(self) -> None:
        super().__init__()
        self.module: GroupedModule | None = None
        self.book: GroupBook | None = None

    def save_checkpoint(
        self, checkpoint: dict[str, Any], path: Any, storage_options: Any | None = None
    ) -> None:
        assert self.module is not None and self.book is not None
        targets = storage_options or {
            k: [str(self.book.members[k].run_dir / reuse.CHECKPOINTS / Path(path).name)]
            for k in self.module.active
        }
        for k, files in targets.items():
            part = self.member_checkpoint(checkpoint, k)
            for target in files:
                Path(target).parent.mkdir(parents=True, exist_ok=True)
                super().save_checkpoint(part, target)

    def member_checkpoint(self, checkpoint: dict[str, Any], k: int) -> dict[str, Any]:
        assert self.module is not None and self.book is not None
        member = self.module.members[k]
        prefix = f"members.{k}."
        state = {
            key[len(prefix) :]: value
            for key, value in checkpoint["state_dict"].items()
            if key.startswith(prefix)
        }
        out = {
            key: value
            for key, value in checkpoint.items()
            if key not in ("state_dict", "optimizer_states", "callbacks")
        }
        out["state_dict"] = state
        out["callbacks"] = self.book.callback_states(k)
        if member.hparams:  # as Lightning's checkpoint connector dumps a module's
            if hasattr(member, "_hparams_name"):
                out[member.CHECKPOINT_HYPER_PARAMS_NAME] = member._hparams_name
            out[member.CHECKPOINT_HYPER_PARAMS_KEY] = dict(member.hparams)
        if "optimizer_states" in checkpoint:
            out["optimizer_states"] = [
                self._optimizer_part(s, k) for s in checkpoint["optimizer_states"]
            ]
        return out

    def _optimizer_part(self, state: dict[str, Any], k: int) -> dict[str, Any]:
        """Member ``k``'s share of the one parameter group: its parameters' state, and the
        group's settings, numbered as its solo run numbers them."""
        assert self.module is not None
        sizes = [len(ps) for ps in self.module.parameter_lists]
        start = sum(sizes[:k])
        ids = state["param_groups"][0]["params"][start : start + sizes[k]]
        return {
            "state": {
                new: state["state"][old] for new, old in enumerate(ids) if old in state["state"]
            },
            "param_groups": [state["param_groups"][0] | {"params": list(range(len(ids)))}],
        }

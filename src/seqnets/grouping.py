"""A sweep's runs that read the same data, trained together as one Lightning fit.

Most runs of the design card's sweeps are tiny networks whose step is all overhead, paid
once per run. Runs that share everything that decides their data and schedule (task, seed,
batch size, epochs, optimiser, schedule, trainer settings) and differ only in the network
(cell, hidden size, layers, dropout, initialisation, loss, L2, clipping) are one *group*:
one DataModule serves one batch per step to every member, same-cell members share one
recurrent kernel call (``seqnets.models.fused``), and Lightning's per-step work is paid once.

Each member is still its own run. It is built exactly as its solo run (seeded, then
``train.build``), so it starts from the same weights and reads the same batches; it has its
own parameter group (AdamW's state is per parameter: a group of its own is its own
optimiser), its own gradient clipping by its own norm, its own best checkpoint, early
stopping and divergence guard; a member that diverges or stops early leaves the group and
costs nothing after. Its checkpoints are written in its own ``checkpoints/`` in a solo run's
format (``MemberCheckpointIO``): ``evaluate``, ``predict``, the demo and a resume read them
as any other. Training done, each member is tested, analysed and recorded by the solo path
(``train.run`` with its ``Fitted``) in its own Hydra job directory.

``launch`` is what ``hydra/launcher=grouped`` (``hydra_plugins.seqnets_launcher``) runs.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import multiprocessing
import os
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import lightning as L
import torch
from hydra.core.hydra_config import HydraConfig
from hydra.core.utils import JobReturn, configure_log, run_job, setup_globals
from hydra.utils import instantiate
from lightning.fabric.plugins import TorchCheckpointIO
from lightning.pytorch.callbacks import (
    Checkpoint,
    EarlyStopping,
    LearningRateMonitor,
    ModelCheckpoint,
    ProgressBar,
)
from omegaconf import DictConfig, OmegaConf, open_dict

from seqnets import records, reuse, signals, sweeps
from seqnets.callbacks import Analysis, DivergenceGuard, History, InterruptCheckpoint
from seqnets.checkpoints import run_config
from seqnets.claims import Claim
from seqnets.errors import ConfigError, RunDiverged, check_int, check_real, exit_usage
from seqnets.models.backbone import BYTES_PER_PARAMETER, parameter_count
from seqnets.models.fused import FusedBackbones
from seqnets.models.module import SequenceModule
from seqnets.runtime import resolve_threads, side_by_side, skip_failing_nvml_check
from seqnets.train import Fitted, RunInterrupted, build, diverged_record, stopped_by

log = logging.getLogger(__name__)

# What members of one group may differ in: the network and what only it sees.
MEMBER_KEYS = ("model", "task.objective", "task.loss", "task.gradient_clip", "l2")
# Callbacks the group plays for each member (the test-time ones act in the solo test).
PLAYED = (ModelCheckpoint, InterruptCheckpoint, History, DivergenceGuard, EarlyStopping)
ALONGSIDE = (LearningRateMonitor, ProgressBar, Analysis)
# ModelCheckpoint settings the group plays as a solo run's callback would (absent: Lightning's
# default, the first value).
CHECKPOINT_AS_PLAYED = {
    "save_top_k": (1,),
    "every_n_train_steps": (None, 0),
    "train_time_interval": (None,),
    "every_n_epochs": (None, 1),
    "save_on_train_epoch_end": (None, True),
    "save_weights_only": (False,),
}


# --- which jobs train together --------------------------------------------------------------


def group_key(config: dict[str, Any]) -> tuple[str | None, str]:
    """The key a run's resolved config groups by (None: it trains alone) and why not."""
    trainer = config.get("trainer") or {}
    if config.get("ckpt_path"):
        return None, "it continues a checkpoint"
    if str(trainer.get("strategy", "auto")).startswith("ddp") or trainer.get("devices", 1) not in (
        1,
        "1",
        "auto",
    ):
        return None, "it trains on several devices"
    if str(trainer.get("precision")) in ("16-mixed", "16"):
        return None, "float16 mixed precision scales the loss once for all members"
    if trainer.get("plugins"):
        return None, "it names Trainer plugins"
    for name, node in (config.get("callbacks") or {}).items():
        if node is None:
            continue
        cls = _class(node.get("_target_", ""))
        if cls is None or not (issubclass(cls, PLAYED + ALONGSIDE) or _alongside(cls)):
            return None, f"callbacks.{name} ({node.get('_target_')}) acts on one model"
        if issubclass(cls, ModelCheckpoint) and not issubclass(cls, InterruptCheckpoint):
            for key, allowed in CHECKPOINT_AS_PLAYED.items():
                if node.get(key, allowed[0]) not in allowed:
                    return None, f"callbacks.{name}.{key}={node.get(key)!r}"
    paths = config.get("paths") or {}
    content = reuse.normalized(config, paths.get("output_dir", ""), paths.get("data_dir", ""))
    for dotted in MEMBER_KEYS:
        *parents, last = dotted.split(".")
        node = content
        for key in parents:
            node = node.get(key, {})
        node.pop(last, None)
    digest = hashlib.sha256(json.dumps(content, sort_keys=True, default=str).encode())
    return digest.hexdigest()[:16], ""


def _alongside(cls: type) -> bool:
    """A callback of the user's that says it acts on the training as a whole, never on a
    model (``group_alongside = True``: e.g. one that watches the step count): it runs
    once, on the group's Trainer. Any other callback of the user's makes its run train
    alone."""
    return getattr(cls, "group_alongside", False) is True


def _class(target: str) -> type | None:
    from hydra.utils import get_class

    try:
        return get_class(target)
    except Exception:
        return None


def member_bytes(cfg: DictConfig, num_features: int, longest: int) -> int:
    """About what one member adds to a group's memory: its backbone's parameters with their
    gradients and AdamW's state, and the activations it keeps for the backward pass (each
    step's gates and states of each layer and direction, float32, and their gradients)."""
    model = cfg.model
    layers, directions = model.get("num_layers", 1), 2 if model.get("bidirectional") else 1
    params = parameter_count(num_features, model.cell, model.hidden, layers, directions == 2)
    per_step = model.hidden * directions * layers * (6 * 4) * 2  # gates and states, bytes
    return params * BYTES_PER_PARAMETER + cfg.task.batch_size * longest * per_step


# --- the group's network -------------------------------------------------------------------


class GroupedModule(L.LightningModule):
    """The members' modules, one training step for all: one batch, the same-cell members'
    backbones in one kernel call, each member's readout, loss and metrics its own. The
    minimised loss is the members' sum: their parameters are disjoint, so each gets exactly
    its own gradient."""

    def __init__(self, members: Sequence[SequenceModule]) -> None:
        super().__init__()
        self.members = torch.nn.ModuleList(members)
        self.active = list(range(len(members)))
        self.fused = FusedBackbones([m.backbone for m in members])
        self.epoch_values: dict[str, dict[int, dict[str, float]]] = {"train": {}, "val": {}}
        self.parameter_lists = [list(m.parameters()) for m in members]

    def leave(self, index: int) -> None:
        """A member stopped (early stopping, divergence): it trains no more, costs nothing."""
        if index in self.active:
            self.active.remove(index)
            for p in self.members[index].parameters():
                p.requires_grad_(False)
            self.fused = FusedBackbones([self.members[k].backbone for k in self.active])

    def setup(self, stage: str) -> None:
        for member in self.members:  # what their optimiser and clipping settings read
            member.trainer = self.trainer

    def _features(self, batch: dict[str, torch.Tensor]) -> list[Any]:
        x = batch["x"].to(self.dtype)
        return self.fused(x, batch.get("lengths"))

    def training_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> dict[str, Any]:
        totals, objectives = [], []
        for k, features in zip(self.active, self._features(batch), strict=True):
            member = self.members[k]
            logits, loss, total = member.training_losses(batch, features)
            member.count_training_batch(batch, logits, loss.detach())
            totals.append(total)
            objectives.append(loss.detach())
        return {"loss": torch.stack(totals).sum(), "objectives": torch.stack(objectives)}

    def validation_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> None:
        for k, features in zip(self.active, self._features(batch), strict=True):
            self.members[k].evaluation_step(batch, "val", features)

    def _close_epoch(self, stage: str) -> None:
        """Each active member's metrics of the epoch, kept for the bookkeeping, and reset (as
        a solo module's epoch-end hook logs and resets them)."""
        values = {}
        for k in self.active:
            metrics = self.members[k].stage_metrics[f"{stage}_"]
            if metrics["loss"].update_called:
                values[k] = {key: float(v) for key, v in metrics.compute().items()}
            metrics.reset()
        if not self.trainer.sanity_checking:
            self.epoch_values[stage] = values

    def on_train_epoch_end(self) -> None:
        self._close_epoch("train")

    def on_validation_epoch_end(self) -> None:
        self._close_epoch("val")

    def configure_gradient_clipping(
        self,
        optimizer: torch.optim.Optimizer,
        gradient_clip_val: float | None = None,
        gradient_clip_algorithm: str | None = None,
    ) -> None:
        """Each member clipped by its own norm, as its solo run's ``clip_gradients`` clips all
        of its parameters (the same two steps of ``torch.nn.utils``: here, per member)."""
        for k in self.active:
            member = self.members[k]
            value = gradient_clip_val if gradient_clip_val is not None else member.gradient_clip
            if not value:
                continue
            params = self.parameter_lists[k]
            if (gradient_clip_algorithm or "norm") == "norm":
                grads = [p.grad for p in params if p.grad is not None]
                total = torch.nn.utils.get_total_norm(grads)
                torch.nn.utils.clip_grads_with_norm_(params, value, total)
            else:
                torch.nn.utils.clip_grad_value_(params, value)

    def configure_optimizers(self) -> Any:
        """The optimiser and schedule a solo run makes, over every member's parameters in
        member order (the checkpoint split reads them so). One parameter group: the members
        share every setting of it (the group key), an optimiser's state is per parameter,
        and one fused kernel call steps them all."""
        self.parameter_lists = [list(m.parameters()) for m in self.members]
        return self.members[0].optimization([p for ps in self.parameter_lists for p in ps])


# --- each member's run, played -------------------------------------------------------------


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
        return next((c for c in self.callbacks if isinstance(c, kind)), None)


class GroupBook(Checkpoint):
    """Every member's bookkeeping, as its solo run's callbacks would keep it: loss at every
    step, epoch rows, the divergence guard, the best and last checkpoints, early stopping.
    A ``Checkpoint``, so that Lightning runs it after the module's epoch-end hook, as it runs
    a solo run's ModelCheckpoint and EarlyStopping."""

    def __init__(self, members: list[Member]) -> None:
        self.members = members
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
        lr = trainer.optimizers[0].param_groups[0]["lr"] if logged else None
        for i, k in enumerate(active):
            member = self.members[k]
            member.fitted.steps.append((step, values[i] if values else losses[i]))
            guarded = self.guards[k] is not None
            if guarded and values is not None and not math.isfinite(values[i]):
                member.first_bad = member.first_bad or (step, values[i])
            if logged and values is not None:
                curve = {"train/loss_step": values[i], self.optimizer_name: lr}
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
            member.fitted.curves.append((trainer.global_step, {**row, "epoch": row["epoch"]}))
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
        out["hparams_name"] = "kwargs"
        out["hyper_parameters"] = dict(member.hparams)
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


# --- training a group ----------------------------------------------------------------------


def train_group(
    cfgs: list[DictConfig], run_dirs: list[Path], group_dir: Path, launcher: Any = None
) -> list[Fitted]:
    """Train the members (their run configs, resolved) as one fit; how each ended."""
    first = cfgs[0]
    torch.set_num_threads(resolve_threads(first.get("threads"), launcher))
    skip_failing_nvml_check()
    modules, members = [], []
    for cfg, run_dir in zip(cfgs, run_dirs, strict=True):
        L.seed_everything(cfg.seed, workers=True)  # as its solo run: the same first weights
        _, module, solo = build(cfg)
        modules.append(module)
        played = [c for c in solo.callbacks if isinstance(c, PLAYED)]
        members.append(Member(cfg, run_dir, played))
    L.seed_everything(first.seed, workers=True)
    datamodule = instantiate(first.task.datamodule)
    module = GroupedModule(modules)
    book = GroupBook(members)
    io = MemberCheckpointIO()
    io.module, io.book = module, book
    interrupt = InterruptCheckpoint(str(group_dir))
    shows = first.trainer.get("enable_progress_bar", True)
    alongside = [
        instantiate(node)
        for node in first.callbacks.values()
        if node is not None
        and (
            _alongside(cls := _class(node._target_) or object)
            or (shows and issubclass(cls, ProgressBar))
        )
    ]
    trainer = instantiate(
        first.trainer,
        callbacks=[book, interrupt, *alongside],
        logger=False,
        plugins=[io],
        enable_model_summary=False,
        default_root_dir=str(group_dir),
    )
    log.info(
        "training %d runs as one group: %s",
        len(members),
        ", ".join(m.backbone.describe() for m in modules),
    )
    try:
        trainer.fit(module, datamodule=datamodule)
    except (SystemExit, KeyboardInterrupt):
        pass  # every active member is marked interrupted, its state saved (GroupBook)
    except Exception as error:  # a bug: each member's job records it as its solo run would
        log.exception("the group's training failed")
        for k in module.active:
            members[k].fitted.status, members[k].fitted.error = records.FAILED, error
    for member in members:
        member.fitted.steps = [(s, float(v)) for s, v in member.fitted.steps]
        member.fitted.more = {
            "grouped": {
                "members": len(members),
                "runs": [str(m.run_dir) for m in members],
                "note": "train_time_s is the group's time until this run stopped",
            }
        }
    return [m.fitted for m in members]


# --- the launcher ---------------------------------------------------------------------------


@dataclass
class Job:
    number: int
    overrides: list[str]
    config: DictConfig  # Hydra's, with hydra.job.num and id
    run_dir: Path = Path()
    run_cfg: DictConfig | None = None
    key: str | None = None


def _prepare(job: Job) -> None:
    """The job's directory and its run config resolved there, without writing anything."""
    config = job.config
    job.run_dir = (Path(config.hydra.sweep.dir) / str(config.hydra.sweep.subdir)).resolve()
    copy = config.copy()
    with open_dict(copy):
        copy.hydra.runtime.output_dir = str(job.run_dir)
    HydraConfig.instance().set_config(copy)
    with open_dict(copy):
        del copy.hydra
    try:
        run_cfg = run_config(copy, job.overrides)
        job.run_cfg = OmegaConf.create(OmegaConf.to_container(run_cfg, resolve=True))
    except (ConfigError, Exception) as error:  # the solo path reports it
        log.info("job %d trains alone: %s", job.number, error)
        return
    job.key, why = group_key(OmegaConf.to_container(job.run_cfg))
    if job.key is None:
        log.info("job %d trains alone: %s", job.number, why)


def _already_done(job: Job) -> bool:
    """With ``sweep.resume``: the run exists, finished or stopped (the solo path reuses or
    resumes it)."""
    settings = job.run_cfg.get("sweep") if job.run_cfg is not None else None
    if settings is None or not settings.resume:
        return False
    ident = reuse.identity(OmegaConf.to_container(job.run_cfg))
    where = [*reuse.roots(settings.runs_dir), job.run_dir.parent]
    candidates = reuse.index(where, slim=True)[0].get(ident, [])
    found = reuse.result(candidates, tuple(settings.retrain))
    return found is not None or reuse.resume_point(candidates) is not None


def plan_groups(jobs: list[Job], max_members: int, memory_bytes: float) -> list[list[Job]]:
    """Jobs with the same key, in sweep order, split where a group would exceed
    ``max_members`` or ``memory_bytes``; every other job alone."""
    by_key: dict[str, list[Job]] = {}
    groups: list[list[Job]] = []
    for job in jobs:
        if job.key is None or _already_done(job):
            groups.append([job])
        else:
            by_key.setdefault(job.key, []).append(job)
    for members in by_key.values():
        datamodule = instantiate(members[0].run_cfg.task.datamodule)
        longest = datamodule.train_work()[1]
        group: list[Job] = []
        used = 0.0
        for job in members:
            need = member_bytes(job.run_cfg, datamodule.num_features, longest)
            if group and (len(group) >= max_members or used + need > memory_bytes):
                groups.append(group)
                group, used = [], 0.0
            group.append(job)
            used += need
        groups.append(group)
    return groups


def launch(
    hydra_context: Any,
    task_function: Callable[[DictConfig], Any],
    config: DictConfig,
    job_overrides: Sequence[Sequence[str]],
    initial_job_idx: int,
    max_members: int = 32,
    memory_gb: float | None = None,
    n_jobs: int = -1,
) -> list[JobReturn]:
    """Hydra's sweep, grouped: every job's config composed as the basic launcher composes
    it; the groups and the jobs that train alone shared out among ``n_jobs`` processes
    (-1: one per core), each of one thread's share of the cores; in each, a group is
    trained, then each of its jobs tested and recorded in its own directory by Hydra's
    ``run_job``, as any other job is run."""
    try:
        if memory_gb is None:
            memory_gb = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 4 / 2**30
        check_int("hydra.launcher.max_members", max_members, 1)
        budget = check_real("hydra.launcher.memory_gb", memory_gb, 0.0, low_open=True) * 2**30
        lanes = side_by_side(config.hydra.launcher)
    except ConfigError as error:
        exit_usage(str(error))
    setup_globals()
    configure_log(config.hydra.hydra_logging, config.hydra.verbose)
    Path(str(config.hydra.sweep.dir)).mkdir(parents=True, exist_ok=True)
    jobs = []
    for offset, overrides in enumerate(job_overrides):
        number = initial_job_idx + offset
        job_config = sweeps.COMPOSED.pop(tuple(overrides), None)
        if job_config is None:
            job_config = hydra_context.config_loader.load_sweep_config(config, list(overrides))
        with open_dict(job_config):
            job_config.hydra.job.id = number
            job_config.hydra.job.num = number
        jobs.append(Job(number, list(overrides), job_config))
    for job in jobs:
        _prepare(job)
    units = plan_groups(jobs, max_members, budget)
    if "fork" not in multiprocessing.get_all_start_methods():
        lanes = 1  # the lanes are forked (no pickling of Hydra's task function)
    units = split_for_lanes(units, lanes)
    for unit in units:
        if len(unit) > 1:
            log.info("trained as one: jobs %s", ", ".join(str(j.number) for j in unit))
    run = partial(_run_unit, hydra_context, task_function, config)
    done = _run_lanes([u for u in assign(units, lanes) if u], run)
    if signals.state.received is not None:
        sys.stderr.write(
            f"seqnets: sweep stopped by {signals.name(signals.state.received)}; the same "
            f"command with sweep.resume=true resumes every run from its checkpoint\n"
        )
        sys.exit(signals.exit_code(signals.state.received))
    return [done[job.number] for job in jobs if job.number in done]


def unit_cost(unit: list[Job]) -> float:
    """A unit's relative cost: its jobs' training steps (Lightning's per-step work, the
    same for a tiny network and a larger one), each a little dearer per member."""
    steps = 0.0
    for job in unit:
        trainer = job.run_cfg.trainer if job.run_cfg is not None else {}
        task = job.run_cfg.task if job.run_cfg is not None else {}
        steps += (task.get("train_batches") or 100) * (trainer.get("max_epochs") or 1)
    return steps / len(unit) * (1 + 0.5 * (len(unit) - 1))


def split_for_lanes(units: list[list[Job]], lanes: int) -> list[list[Job]]:
    """The largest group halved while that shortens the sweep (the busiest lane's work): a
    sweep of one group on two cores trains two halves side by side. The halves keep the
    sweep's order, so that members of one cell stay together (one kernel call)."""
    units = [list(u) for u in units]
    for _ in range(64):
        largest = max(units, key=unit_cost)
        if lanes < 2 or len(largest) < 2:
            break
        half = math.ceil(len(largest) / 2)
        split = [u for u in units if u is not largest] + [largest[:half], largest[half:]]
        if makespan(split, lanes) >= 0.95 * makespan(units, lanes):
            break
        units = split
    return units


def makespan(units: list[list[Job]], lanes: int) -> float:
    """The busiest lane's work, with the units shared out by ``assign``."""
    return max(sum(map(unit_cost, lane)) for lane in assign(units, lanes))


def assign(units: list[list[Job]], lanes: int) -> list[list[list[Job]]]:
    """Units shared out among ``lanes`` processes, dearest first to the least loaded."""
    loads = [0.0] * max(1, lanes)
    out: list[list[list[Job]]] = [[] for _ in loads]
    for unit in sorted(units, key=unit_cost, reverse=True):
        lane = loads.index(min(loads))
        out[lane].append(unit)
        loads[lane] += unit_cost(unit)
    for lane in out:
        lane.sort(key=lambda u: u[0].number)
    return out


def _run_lanes(
    lanes: list[list[list[Job]]], run: Callable[[list[Job]], dict[int, JobReturn]]
) -> dict[int, JobReturn]:
    """Each lane's units, one after another: in this process for one lane, else in a forked
    process per lane. A signal here is passed on to every lane, which stops as a run does
    (saving what trains), and the sweep ends once every lane has."""
    if len(lanes) == 1:
        return _run_lane(lanes[0], run)
    context = multiprocessing.get_context("fork")
    queue = context.SimpleQueue()
    workers = [
        context.Process(target=_lane_process, args=(lane, run, queue), daemon=False)
        for lane in lanes
    ]
    for worker in workers:
        worker.start()
    done: dict[int, JobReturn] = {}
    reported = 0
    while reported < len(workers):
        try:
            while queue.empty() and any(w.is_alive() for w in workers):
                time.sleep(0.2)
            if queue.empty():  # a lane died without reporting (killed): its jobs say so
                log.error("a lane of the sweep ended without reporting")
                break
            received, part = queue.get()
            reported += 1
            done |= part
            if received is not None and signals.state.received is None:
                signals.state.received = received
        except KeyboardInterrupt:  # asked to stop: every lane stops as a run stops
            for worker in workers:
                if worker.is_alive() and signals.state.received is not None:
                    os.kill(worker.pid, signals.state.received)
    for worker in workers:
        worker.join()
    return done


def _lane_process(lanes: list[list[Job]], run: Callable, queue: Any) -> None:
    signals.install()
    done = {}
    try:
        done = _run_lane(lanes, run)
    finally:
        queue.put((signals.state.received, done))


def _run_lane(
    units: list[list[Job]], run: Callable[[list[Job]], dict[int, JobReturn]]
) -> dict[int, JobReturn]:
    done: dict[int, JobReturn] = {}
    for unit in units:
        if signals.state.received is not None:
            break  # stopped: what did not start is not started now
        done |= run(unit)
    return done


def _run_unit(
    hydra_context: Any, task_function: Callable, config: DictConfig, unit: list[Job]
) -> dict[int, JobReturn]:
    """A group trained, then each of its jobs run by Hydra (tested and recorded); a job
    alone run as Hydra runs any job."""
    fitted: dict[int, Fitted] = {}
    claims: dict[int, Claim] = {}
    done: dict[int, JobReturn] = {}
    try:
        held = _claim(unit, claims) if len(unit) > 1 else []
        if len(held) > 1:
            group_dir = Path(str(config.hydra.sweep.dir)) / ".groups" / str(held[0].number)
            group_dir.mkdir(parents=True, exist_ok=True)
            launcher = config.hydra.launcher
            results = train_group(
                [j.run_cfg for j in held], [j.run_dir for j in held], group_dir, launcher
            )
            fitted = {j.number: f for j, f in zip(held, results, strict=True)}
        for job in unit:
            if signals.state.received is not None and job.number not in fitted:
                continue
            task = task_function
            if job.number in fitted:
                task = partial(_member_task, fitted[job.number])
            HydraConfig.instance().set_config(job.config)
            done[job.number] = run_job(
                hydra_context=hydra_context,
                task_function=task,
                config=job.config,
                job_dir_key="hydra.sweep.dir",
                job_subdir_key="hydra.sweep.subdir",
            )
            configure_log(config.hydra.hydra_logging, config.hydra.verbose)
    finally:
        for claim in claims.values():
            claim.release()
    return done


def _claim(group: list[Job], claims: dict[int, Claim]) -> list[Job]:
    """The members this process may train: with ``sweep.resume``, each run is claimed
    (another sweep training it leaves it to that sweep; the solo path then waits)."""
    held = []
    for job in group:
        settings = job.run_cfg.get("sweep")
        if settings is None or not settings.resume:
            held.append(job)
            continue
        ident = reuse.identity(OmegaConf.to_container(job.run_cfg))
        claim = Claim(Path(settings.runs_dir) / reuse.CLAIMS, ident, job.run_dir, settings)
        if claim.take() is None:
            claims[job.number] = claim
            held.append(job)
    return held


def _member_task(fitted: Fitted, cfg: DictConfig) -> Any:
    """A group member's job: tested and recorded as its solo run would be."""
    from seqnets.train import run

    return records.entry_point(partial(run, fitted=fitted))(cfg)


__all__ = ["GroupedModule", "MemberCheckpointIO", "group_key", "launch", "train_group"]

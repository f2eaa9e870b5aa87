"""The one entry point: ``python -m seqnets.train task=<task> model=<cell> [overrides] [-m]``.

Hydra composes ``conf/train.yaml``; this file instantiates what the config names, fits, tests
the best checkpoint, and leaves ``metrics.json`` beside the run's ``.hydra/`` config so that
reports are rebuilt from files alone. ``main`` returns the monitored validation metric, which
is what sweepers optimise (None for a run that failed, which sweepers count as failed).

Exit codes: 0 done, 1 the run failed or diverged, 2 a bad value (one line says which), 130
or 143 stopped by SIGINT (Ctrl-C) or SIGTERM (the line says how to resume).
"""

from __future__ import annotations

import logging
import math
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import hydra
import lightning as L
import torch
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from hydra.utils import instantiate
from lightning.pytorch.callbacks import (
    Checkpoint,
    EarlyStopping,
    ModelCheckpoint,
    ProgressBar,
    StochasticWeightAveraging,
    Timer,
    WeightAveraging,
)
from lightning.pytorch.loggers import TensorBoardLogger
from omegaconf import DictConfig

from seqnets import CONFIG_PATH, cost, records, reuse, signals, sweeps
from seqnets.callbacks import Analysis, History, InterruptCheckpoint, first_of_type
from seqnets.checkpoints import run_config
from seqnets.checks import check_config, warn_long_training
from seqnets.errors import (
    EXIT_FAILED,
    ConfigError,
    RunDiverged,
)
from seqnets.models.module import SequenceModule, scored_record
from seqnets.runtime import resolve_threads, skip_failing_nvml_check

log = logging.getLogger(__name__)


class RunInterrupted(Exception):
    """A signal stopped the run (``signals``); ``checkpoint`` is where it can resume from, if
    anywhere."""

    def __init__(self, checkpoint: str | None) -> None:
        self.checkpoint = checkpoint
        super().__init__("interrupted")


def build(cfg: DictConfig) -> tuple[L.LightningDataModule, SequenceModule, L.Trainer]:
    """Instantiate what the config names (``check_config`` has vetted every value)."""
    datamodule = instantiate(cfg.task.datamodule)
    loggers = [instantiate(c) for c in (cfg.get("logger") or {}).values() if c is not None]
    chosen = {k: c for k, c in cfg.callbacks.items() if c is not None}
    if not loggers:  # the default LearningRateMonitor has nowhere to write (Lightning refuses)
        chosen.pop("lr_monitor", None)
    callbacks = [instantiate(c) for c in chosen.values()]
    if not cfg.trainer.get("enable_progress_bar", True):  # Lightning refuses a bar then
        callbacks = [c for c in callbacks if not isinstance(c, ProgressBar)]
    if cfg.trainer.get("enable_checkpointing", True) is False:  # and any checkpoint then
        callbacks = [c for c in callbacks if not isinstance(c, Checkpoint)]
    trainer = instantiate(cfg.trainer, callbacks=callbacks, logger=loggers or False)
    module = SequenceModule.from_config(cfg, datamodule.num_features)
    return datamodule, module, trainer


@dataclass
class Fitted:
    """How a run's training ended: what its record says of it, and the checkpoints it left.
    A solo run's Trainer tells; a sweep's grouped run (``seqnets.grouping``) is told by the
    group's bookkeeping, and then only tested here, as a solo run is."""

    status: str = records.COMPLETED
    diverged: dict[str, Any] | None = None
    stopped_by: str | None = None
    best_path: str | None = None
    best_score: float | None = None
    last_path: str | None = None
    epochs: list[dict[str, float]] = field(default_factory=list)
    steps: list[tuple[int, float]] = field(default_factory=list)
    epochs_trained: int = 0
    steps_trained: int = 0
    train_time: float = 0.0
    fit_wall: float = 0.0
    # What the loggers would have shown during training, when another Trainer trained it:
    # (step, {name: value}) in order.
    curves: list[tuple[int, dict[str, float]]] = field(default_factory=list)
    more: dict[str, Any] = field(default_factory=dict)  # extra record keys ("grouped")
    error: BaseException | None = None  # what stopped it, when not its own end (a signal)


def train(cfg: DictConfig, fitted: Fitted | None = None) -> tuple[dict[str, Any], dict[str, Any]]:
    """Fit and test one run described by ``cfg``: what goes into ``metrics.json``, and the
    objects that made it (datamodule, module, trainer). ``fitted``: the run was trained
    already (with its sweep's group): only tested, from its own checkpoints.

    A diverged run is a result too (``status: diverged``, no test scores); Ctrl-C raises
    ``RunInterrupted`` once Lightning has saved the interrupted state.
    """
    launcher = HydraConfig.get().launcher if HydraConfig.initialized() else None
    torch.set_num_threads(resolve_threads(cfg.get("threads"), launcher, _processes(cfg)))
    skip_failing_nvml_check()
    L.seed_everything(cfg.seed, workers=True)
    datamodule, module, trainer = build(cfg)
    if fitted is None:
        warn_long_training(datamodule)
        training, study = cost.run_minutes(cfg, datamodule)  # timed once per process
        log.info(
            "estimated (seqnets.cost): training %s, length study %s",
            *map(cost.span, (training, study)),
        )
        fitted = fit(cfg, datamodule, module, trainer)
    else:
        replay_curves(trainer, fitted.curves)
    return conclude(cfg, datamodule, module, trainer, fitted)


def fit(
    cfg: DictConfig, datamodule: L.LightningDataModule, module: SequenceModule, trainer: L.Trainer
) -> Fitted:
    """Train: how it ended, read from the Trainer and its callbacks."""
    callbacks = trainer.callbacks
    fitted = Fitted()
    start = time.perf_counter()
    try:
        with _interruptible(callbacks):
            trainer.fit(
                module, datamodule=datamodule, ckpt_path=cfg.get("ckpt_path"), weights_only=True
            )
    except RunDiverged as diverged:
        fitted.status = records.DIVERGED
        fitted.diverged = diverged_record(diverged, trainer.current_epoch)
    fitted.fit_wall = time.perf_counter() - start
    checkpoint = first_of_type(callbacks, ModelCheckpoint)
    fitted.best_path = getattr(checkpoint, "best_model_path", "") or None
    fitted.last_path = getattr(checkpoint, "last_model_path", "") or None
    score = getattr(checkpoint, "best_model_score", None)
    fitted.best_score = float(score) if score is not None else None
    history = first_of_type(callbacks, History)
    # Read now: testing restores the history saved in the best checkpoint, which ends at
    # the best epoch (the last one, often, but not when a later epoch did worse).
    if history is not None:
        fitted.epochs, fitted.steps = list(history.epochs), history.steps
    fitted.train_time = history.seconds["train"] if history else fitted.fit_wall
    fitted.epochs_trained, fitted.steps_trained = trainer.current_epoch, trainer.global_step
    if fitted.status == records.COMPLETED:
        fitted.stopped_by = stopped_by(trainer, cfg.trainer.get("max_time"))
    return fitted


def diverged_record(diverged: RunDiverged, epoch: int) -> dict[str, Any]:
    """The record's ``diverged`` entry: where and how the run diverged."""
    return {
        "step": diverged.step,
        "epoch": epoch,
        "what": diverged.what,
        "value": str(diverged.value),
    }


def replay_curves(trainer: L.Trainer, curves: list[tuple[int, dict[str, float]]]) -> None:
    """Write a run's training curves, recorded while another Trainer trained it, to this
    Trainer's loggers (TensorBoard, CSV): its dashboards show them as a solo run's."""
    for logger in trainer.loggers:
        for step, values in curves:
            logger.log_metrics(values, step=step)


def conclude(
    cfg: DictConfig,
    datamodule: L.LightningDataModule,
    module: SequenceModule,
    trainer: L.Trainer,
    fitted: Fitted,
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Test the trained run's best checkpoint (a completed one) and make its record."""
    callbacks = trainer.callbacks
    metrics: dict[str, Any] = {"status": fitted.status}
    if fitted.diverged is not None:
        metrics["diverged"] = fitted.diverged
    if fitted.stopped_by is not None:
        metrics["stopped_by"] = fitted.stopped_by
        log.info("training stopped: %s", fitted.stopped_by)
    analysis = first_of_type(callbacks, Analysis)
    best_path = fitted.best_path
    test, test_wall = {}, 0.0
    if fitted.status == records.COMPLETED:
        best_path = _averaged_model(trainer, best_path)
        start = time.perf_counter()
        # Stopped from here on, the run resumes from its last checkpoint: nothing to train.
        with _interruptible(callbacks, resume_from=fitted.last_path):
            test = trainer.test(
                module, datamodule=datamodule, ckpt_path=best_path, verbose=False, weights_only=True
            )
        test = test[0]
        test_wall = time.perf_counter() - start

    best_score = fitted.best_score
    if best_score is None and fitted.epochs:  # checkpointing switched off: best by monitor
        scores = [row[cfg.task.monitor] for row in fitted.epochs if cfg.task.monitor in row]
        best_score = (max if cfg.task.monitor_mode == "max" else min)(scores, default=None)
    history = first_of_type(callbacks, History)
    metrics |= scored_record(
        module,
        test,
        monitor=cfg.task.monitor,
        best_val=float(best_score) if best_score is not None else None,
        best_checkpoint=best_path,
        resumed_from=cfg.get("ckpt_path"),
        epochs_trained=fitted.epochs_trained,
        steps_trained=fitted.steps_trained,
        train_time_s=fitted.train_time,
        test_time_s=history.seconds["test"] if history and test else test_wall,
        fit_wall_s=fitted.fit_wall,
        test_wall_s=test_wall,
        history=fitted.epochs,
        train_loss_steps=fitted.steps,
        **fitted.more,
        **(analysis.results if analysis and test else {}),
    )
    if test:
        log_hparams(trainer, cfg, metrics)
    return metrics, {"datamodule": datamodule, "module": module, "trainer": trainer}


def _averaged_model(trainer: L.Trainer, best_path: str | None) -> str | None:
    """The checkpoint to test. With weight averaging the run's model is the average, as
    Lightning documents: StochasticWeightAveraging moves it into the model when training ends
    (its epochs' checkpoints hold single epochs' weights), so it is saved and tested;
    WeightAveraging (EMA) saves it in every checkpoint, but Lightning 2.6 would load the
    unaveraged weights back when restoring one for testing, so it leaves before the test."""
    if first_of_type(trainer.callbacks, StochasticWeightAveraging) is not None and best_path:
        best_path = str(Path(best_path).with_name("averaged.ckpt"))
        trainer.save_checkpoint(best_path)
    trainer.callbacks = [c for c in trainer.callbacks if not isinstance(c, WeightAveraging)]
    return best_path


def stopped_by(trainer: L.Trainer, max_time: Any = None) -> str:
    """Why a finished fit ended, in the words of the setting that ended it: a run cut short
    by a time limit, a step limit or early stopping is still complete, and says so."""
    if trainer.fast_dev_run:
        return f"trainer.fast_dev_run={trainer.fast_dev_run} (a check of every stage, not a run)"
    timer = first_of_type(trainer.callbacks, Timer)
    remaining = timer.time_remaining("train") if timer is not None else None
    if remaining is not None and remaining <= 0:
        limit = f"trainer.max_time={max_time}" if max_time else "a Timer's duration"
        elapsed = timer.time_elapsed("train")
        return f"the time limit ({limit}) was reached; {elapsed:.1f} s with the last validation"
    stopper = first_of_type(trainer.callbacks, EarlyStopping)
    if stopper is not None and stopper.stopped_epoch:
        return f"early stopping on {stopper.monitor} (epoch {stopper.stopped_epoch})"
    if 0 <= trainer.max_steps <= trainer.global_step:
        return f"trainer.max_steps={trainer.max_steps}"
    if trainer.max_epochs is not None and 0 <= trainer.max_epochs <= trainer.current_epoch:
        return f"trainer.max_epochs={trainer.max_epochs}"
    return f"stopped at epoch {trainer.current_epoch} (trainer.should_stop)"


@contextmanager
def _interruptible(callbacks: list, resume_from: str | None = None) -> Iterator[None]:
    """Lightning ends a stop (a KeyboardInterrupt, which ``signals`` raises for SIGTERM too)
    with ``sys.exit(1)`` once it has shut down, and our ``InterruptCheckpoint`` has saved the
    state: turn that back into an interruption. Stopped after training (testing, the test
    analysis), it resumes from ``resume_from``, its last checkpoint: nothing is left to train."""
    try:
        yield
    except (SystemExit, KeyboardInterrupt):
        interrupt = first_of_type(callbacks, InterruptCheckpoint)
        saved = interrupt.saved if interrupt else None
        raise RunInterrupted(saved or resume_from) from None


def _processes(cfg: DictConfig) -> int:
    """DDP processes this run starts on this machine (they share its cores)."""
    devices = cfg.trainer.get("devices", 1)
    strategy = str(cfg.trainer.get("strategy", ""))
    return int(devices) if strategy.startswith("ddp") and isinstance(devices, int) else 1


def log_hparams(trainer: L.Trainer, cfg: DictConfig, metrics: dict[str, Any]) -> None:
    """The HPARAMS tab: the run's settings with its real final metrics, not a placeholder."""
    config = metrics["config"]
    params = {
        "task": {k: v for k, v in config["task"].items() if not isinstance(v, dict)},
        "model": {k: v for k, v in config["model"].items() if k != "_target_"},
        "optimizer": {k: v for k, v in config["optimizer"].items() if not k.startswith("_")},
        "l2": cfg.l2,
        "seed": cfg.seed,
    }
    finals = {f"hparams/{k}": v for k, v in metrics["test"].items()}
    if metrics["best_val"] is not None:
        finals["hparams/best_val"] = metrics["best_val"]
    logger = first_of_type(trainer.loggers, TensorBoardLogger)
    if logger is not None:
        logger.log_hyperparams(params, metrics=finals, step=trainer.global_step)
        logger.finalize("success")  # testing already closed it; flush what came after


def objective_value(metrics: dict[str, Any]) -> float | None:
    """A finite float for sweepers (the best monitored validation value), or None for a run
    without one, which Hydra's sweepers record as a failed job rather than crash on."""
    value = metrics.get("best_val")
    return value if value is not None and math.isfinite(value) else None


def run(cfg: DictConfig, continuing: bool = False, fitted: Fitted | None = None) -> float | None:
    """One job: check, train, record, and end the way the job ended (see the exit codes).

    In a sweep a failed job returns None instead of exiting, so the other jobs still run and
    the sweep's closing summary lists it. ``continuing``: ``cfg`` is already the run's own
    config and ``cfg.ckpt_path`` a checkpoint of it (a resumed sweep job, ``seqnets.reuse``).
    ``fitted``: trained already with its sweep's group (``seqnets.grouping``), which ends
    the sweep itself when a signal stopped the group.
    """
    hydra_cfg = HydraConfig.get()
    multirun = hydra_cfg.mode == RunMode.MULTIRUN
    run_dir = Path(cfg.paths.output_dir)
    base = {"task": cfg.task.name, "seed": cfg.seed}
    overrides = list(hydra_cfg.overrides.task)
    try:
        cfg = cfg if continuing else run_config(cfg, overrides)
        base = {"task": cfg.task.name, "seed": cfg.seed}  # a resumed run's own
        check_config(cfg, overrides, multirun)
        if fitted is not None and fitted.error is not None:
            raise fitted.error  # ended as its solo run would end on it
        metrics, objects = train(cfg, fitted)
    except ConfigError as error:
        if multirun:  # listed by the sweep's summary
            records.write_metrics(run_dir, base | {"status": records.INVALID, "error": str(error)})
            log.error("%s", error)
            return None
        raise  # one line, exit 2, nothing left (records.entry_point)
    except (RunInterrupted, KeyboardInterrupt) as stop:
        saved = getattr(stop, "checkpoint", None)
        why = signals.name(signals.state.received)
        records.write_metrics(
            run_dir, base | {"status": records.INTERRUPTED, "signal": why, "checkpoint": saved}
        )
        how = f"; resume with: python -m seqnets.train ckpt_path={saved}" if saved else ""
        sys.stderr.write(f"seqnets: interrupted by {why}{how}\n")
        if fitted is not None:
            return None
        signals.requeue()  # a preempted cluster job: requeued by submitit, which exits
        sys.exit(signals.exit_code(signals.state.received))
    except Exception as error:  # a bug or a broken environment: keep the traceback in the log
        fault = records.write_fault(error)  # disk full, no permission: one line says where
        if fault is None:
            log.exception("the run failed")
        message = fault or f"{type(error).__name__}: {error}"
        with suppress(records.WriteError):  # on a full disk, the record may not fit either
            records.write_metrics(run_dir, base | {"status": records.FAILED, "error": message})
        if multirun:
            log.error("%s", message)
            return None
        where = "" if fault else f"; see {run_dir}/train.log"
        sys.stderr.write(f"seqnets: error: the run failed ({message}){where}\n")
        sys.exit(EXIT_FAILED)

    if not objects["trainer"].is_global_zero:  # DDP: rank zero writes the record
        return objective_value(metrics)
    path = records.write_metrics(run_dir, metrics)
    if metrics["status"] == records.DIVERGED:
        sys.stderr.write(
            f"seqnets: the run diverged: {records.failure(metrics)} (epoch "
            f"{metrics['diverged']['epoch']}); training stopped there, no test scores "
            f"(status 'diverged' in {path})\n"
        )
        if multirun:
            return None
        sys.exit(EXIT_FAILED)
    log.info("test: %s", metrics["test"])
    log.info(
        "train %.1f s, test %.1f s; metrics in %s",
        metrics["train_time_s"],
        metrics["test_time_s"],
        path,
    )
    return objective_value(metrics)


@hydra.main(version_base="1.3", config_path=CONFIG_PATH, config_name="train")
@records.entry_point
def main(cfg: DictConfig) -> float | None:
    return reuse.job(cfg, run)  # with sweep.resume: reused, resumed or trained, under a claim


if __name__ == "__main__":
    sweeps.cli(main)

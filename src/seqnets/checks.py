"""Every value of a run's config checked before any work, so a bad one costs the user a second
and one line, not a traceback after an epoch (or a silently different run).

Called by the Hydra callback before a run's directory exists (and for every job of a sweep
before the first one starts), and again by the run itself.
"""

from __future__ import annotations

import importlib.util
import inspect
import logging
from collections.abc import Sequence
from typing import Any

import torch
from hydra.utils import get_method, instantiate
from omegaconf import DictConfig, OmegaConf

from seqnets import configs
from seqnets.cost import check_budget, run_minutes
from seqnets.errors import (
    ConfigError,
    check_choice,
    check_int,
    check_real,
)
from seqnets.models.backbone import RecurrentBackbone
from seqnets.models.module import SequenceModule

# The config groups (conf/<group>/): choosing another option of one picks other parts.
CONFIG_GROUPS = frozenset(
    p.name for p in configs().iterdir() if p.is_dir() and p.name != "__pycache__"
)
log = logging.getLogger(__name__)

SEED_LIMIT = 2**32  # numpy's and Lightning's seeds are 32-bit
# Training lengths beyond this take minutes per epoch on a CPU: worth a warning.
LONG_TRAIN_LEN = 200

# Lightning Trainer arguments and callbacks a run refuses, and why: each would break the run
# or be silently ignored. Every other one acts as Lightning documents
# (tests/test_lightning_contract.py places each of them). Arguments: refused when the config
# sets them at all (None), or to a value other than the one given.
REFUSED_TRAINER_ARGS: dict[str, tuple[Any, str]] = {
    "logger": (
        None,
        "seqnets passes the loggers of the logger group, which would replace it (choose "
        "logger=csv, logger=tensorboard or ~logger)",
    ),
    "callbacks": (
        None,
        "seqnets passes the callbacks group, which would replace it (add one with "
        "+callbacks.<name>._target_=<class>)",
    ),
    "limit_predict_batches": (
        None,
        "seqnets.train never predicts (python -m seqnets.predict does, outside a Trainer)",
    ),
    "use_distributed_sampler": (
        False,
        "seqnets' DataModules shard their own batches under DDP (each rank its share, "
        "evaluation sets covered once); Lightning's sampler would not apply to them",
    ),
    "barebones": (
        False,
        "barebones mode turns off the logging and checkpoints every run records its "
        "metrics with (time raw training speed with make bench)",
    ),
    "model_registry": (
        None,
        "it uploads checkpoints to Lightning's cloud model registry; a run keeps its "
        "checkpoints in its own directory",
    ),
}


# Callback classes (and their subclasses) a run refuses, by name: when (given the run's
# config), and why.
def always(cfg: DictConfig) -> bool:
    return True


def _scheduled(cfg: DictConfig) -> bool:
    return bool(cfg.get("scheduler"))


def _cpu_without_psutil(cfg: DictConfig) -> bool:
    cpu = cfg.trainer.get("accelerator") == "cpu" or not torch.cuda.is_available()
    return cpu and importlib.util.find_spec("psutil") is None


REFUSED_CALLBACKS: dict[str, tuple[Any, str]] = {
    "lightning.pytorch.callbacks.BasePredictionWriter": (
        always,
        "seqnets.train never predicts, so it would write nothing (python -m seqnets.predict "
        "writes predictions)",
    ),
    "lightning.pytorch.callbacks.BaseFinetuning": (
        _scheduled,
        "it sets the learning rates of what it thaws every epoch, which the schedule would "
        "overwrite at every step (use it with scheduler=none)",
    ),
    "lightning.pytorch.callbacks.DeviceStatsMonitor": (
        _cpu_without_psutil,
        "on a CPU it reads the device's stats with psutil, which is not installed "
        "(pip install psutil)",
    ),
}


def check_config(cfg: DictConfig, overrides: Sequence[str] = (), multirun: bool = False) -> None:
    """Raise a ConfigError naming the first value of ``cfg`` that is not allowed.

    ``overrides`` are the command line's (``+key=value`` additions are checked against what
    reads them); ``multirun`` is whether the run is one job of a sweep.
    """
    check_additions(cfg, overrides)
    check_int("seed", cfg.seed, 0, SEED_LIMIT - 1)
    if cfg.get("threads") is not None:
        check_int("threads", cfg.threads, 1)
    _check_task(cfg.task)
    SequenceModule.check_arguments(cfg.l2, cfg.task.gradient_clip, cfg.optimizer.lr)
    datamodule = build_checked(cfg.task.datamodule, "task.datamodule")
    objective = build_checked(cfg.task.objective, "task.objective")
    _check_model(cfg.model, datamodule.num_features)
    allowed = ("val/loss", *(f"val/{name}" for name in objective.metrics()))
    check_choice("task.monitor", cfg.task.monitor, allowed, why=f"what {cfg.task.name} logs")
    _check_optimizer(cfg)
    _check_trainer(cfg, multirun)
    datamodule.check()
    if cfg.get("budget_minutes") is not None:
        budget = check_real("budget_minutes", cfg.budget_minutes, 0.0, low_open=True)
        training, study = run_minutes(cfg, datamodule)
        check_budget(
            {"training": training, "the test analysis's length study": study},
            budget,
            "budget_minutes=null (or a larger budget)",
        )


def check_additions(cfg: DictConfig, overrides: Sequence[str]) -> None:
    """``+key=value`` adds a key: refuse one that nothing reads (``+lr=0.1``), which would
    otherwise be ignored without a word. A key added under a node that is instantiated must
    be an argument its target accepts."""
    groups = {"experiment", "debug", "hparams_search", "hydra"}  # added by choosing an option
    for override in overrides:
        if not override.startswith("+"):
            continue
        key = override.lstrip("+").split("=", 1)[0]
        if key.split("/")[0].split(".")[0] in groups:
            continue
        parts = key.split(".")
        for depth in range(len(parts) - 1, 0, -1):
            parent = OmegaConf.select(cfg, ".".join(parts[:depth]), default=None)
            if isinstance(parent, DictConfig) and "_target_" in parent:
                if parts[depth].startswith("_") or accepts(parent._target_, parts[depth]):
                    break
                raise ConfigError(
                    f"{override!r} is not allowed: {parent._target_} takes no argument "
                    f"{parts[depth]!r}"
                )
        else:
            raise ConfigError(
                f"{override!r} is not allowed: nothing reads {key!r} (see "
                f"`python -m seqnets.train --cfg job` for every setting; e.g. the learning "
                f"rate is task.lr)"
            )


def accepts(target: str, name: str) -> bool:
    try:
        signature = inspect.signature(get_method(target))
    except Exception:  # a target Hydra cannot import fails later with its own message
        return True
    params = signature.parameters
    return name in params or any(p.kind is p.VAR_KEYWORD for p in params.values())


def _check_task(task: DictConfig) -> None:
    check_real("task.lr", task.lr, 0.0, low_open=True)
    check_real("task.weight_decay", task.weight_decay, 0.0)
    check_int("task.max_epochs", task.max_epochs, 1)
    check_choice("task.monitor_mode", task.monitor_mode, ("min", "max"))


def build_checked(node: DictConfig, name: str) -> Any:
    """Instantiate a cheap part (a DataModule reads nothing in its constructor) so that it
    checks its own numbers; Hydra's wrapping of the error would name only the group."""
    from hydra.errors import InstantiationException

    try:
        return instantiate(node)
    except InstantiationException as error:
        cause = error.__cause__
        if isinstance(cause, ConfigError):
            raise cause from None
        if isinstance(cause, TypeError):  # e.g. an unknown argument: say which node
            raise ConfigError(f"{name}: {cause}") from None
        raise


def _check_model(model: DictConfig, input_size: int) -> None:
    """The backbone's own check (``RecurrentBackbone.check_arguments``), before anything is
    built."""
    arguments = {k: v for k, v in model.items() if not str(k).startswith("_")}
    try:
        RecurrentBackbone.check_arguments(input_size, **arguments)
    except TypeError as error:  # an argument the backbone does not take
        raise ConfigError(f"model: {error}") from None


def _check_optimizer(cfg: DictConfig) -> None:
    optimizer = cfg.optimizer
    if "weight_decay" in optimizer:
        check_real("optimizer.weight_decay", optimizer.weight_decay, 0.0)
    scheduler = cfg.get("scheduler")
    if scheduler and "pct_start" in scheduler:
        check_real(
            "scheduler.pct_start", scheduler.pct_start, 0.0, 1.0, low_open=True, high_open=True
        )


def check_lightning_refusals(cfg: DictConfig) -> None:
    """Refuse the Trainer arguments and callbacks of ``REFUSED_TRAINER_ARGS`` and
    ``REFUSED_CALLBACKS``, in one line that says why."""
    for name, (allowed, why) in REFUSED_TRAINER_ARGS.items():
        if name in cfg.trainer and (allowed is None or cfg.trainer[name] != allowed):
            value = OmegaConf.select(cfg, f"trainer.{name}")
            raise ConfigError(f"trainer.{name}={value!r} is not allowed: {why}")
    for key, node in (cfg.get("callbacks") or {}).items():
        target = node.get("_target_") if isinstance(node, DictConfig) else None
        try:
            kind = get_method(target) if target else None
        except Exception:  # instantiation names an unknown class itself
            continue
        for refused, (when, why) in REFUSED_CALLBACKS.items():
            if isinstance(kind, type) and issubclass(kind, get_method(refused)) and when(cfg):
                raise ConfigError(
                    f"callbacks.{key} ({target}) is not allowed: {refused.rsplit('.', 1)[1]}: {why}"
                )


def _check_trainer(cfg: DictConfig, multirun: bool) -> None:
    check_lightning_refusals(cfg)
    trainer = cfg.trainer
    epochs = check_int("trainer.max_epochs", trainer.max_epochs, 1)
    scheduler = cfg.get("scheduler")
    if scheduler and "epochs" in scheduler and epochs > scheduler.epochs:
        raise ConfigError(
            f"trainer.max_epochs={epochs} is not allowed: the one-cycle schedule is planned "
            f"for task.max_epochs={scheduler.epochs} epochs (raise task.max_epochs instead; "
            f"trainer.max_epochs may only stop a run early)"
        )
    for stage in ("train", "val", "test"):
        _check_limit(f"trainer.limit_{stage}_batches", trainer.get(f"limit_{stage}_batches"))
    check_int("trainer.log_every_n_steps", trainer.log_every_n_steps, 1)
    accelerator = trainer.get("accelerator")
    if accelerator in ("gpu", "cuda") and not torch.cuda.is_available():
        raise ConfigError(
            f"trainer.accelerator={accelerator!r} is not allowed here: torch sees no CUDA GPU "
            f"on this machine (use trainer=cpu, or trainer=default to pick what is there)"
        )
    strategy = str(trainer.get("strategy", ""))
    if multirun and strategy.startswith("ddp"):
        raise ConfigError(
            f"trainer.strategy={strategy!r} is not allowed in a sweep (-m): DDP starts copies "
            f"of the command, which would start sweeps of their own; run each DDP job alone"
        )


def warn_long_training(datamodule: Any) -> None:
    """Allowed, but slow enough that the user should hear it before waiting: training
    sequences longer than ``LONG_TRAIN_LEN`` steps, whichever task setting makes them."""
    longest = datamodule.train_work()[1]
    if longest > LONG_TRAIN_LEN:
        log.warning(
            "%s: every training step reads sequences of up to %d steps; expect minutes per "
            "epoch on a CPU",
            datamodule.name,
            longest,
        )


def _check_limit(name: str, value: object) -> None:
    """Lightning's limits: a batch count >= 1, or a fraction in (0, 1]; 0 would silently skip
    the stage (and with it the monitored metric or the test scores)."""
    if value is None:
        return
    if isinstance(value, float):
        check_real(name, value, 0.0, 1.0, low_open=True)
    else:
        check_int(name, value, 1)

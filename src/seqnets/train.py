"""The one entry point: ``python -m seqnets.train task=<task> model=<cell> [overrides] [-m]``.

Hydra composes ``conf/train.yaml``; this file instantiates what the config names, fits, tests
the best checkpoint, and leaves ``metrics.json`` beside the run's ``.hydra/`` config so that
reports are rebuilt from files alone. ``main`` returns the monitored validation metric, which
is what sweepers optimise.
"""

from __future__ import annotations

import json
import logging
import math
import platform
import sys
import time
from importlib.metadata import version
from pathlib import Path
from typing import Any

import hydra
import lightning as L
import torch
from hydra.errors import InstantiationException
from hydra.utils import instantiate
from lightning.pytorch.callbacks import LearningRateMonitor, Timer
from lightning.pytorch.loggers import TensorBoardLogger
from omegaconf import DictConfig, OmegaConf

from seqnets.callbacks import History, TestAnalysis, first_of_type
from seqnets.errors import ConfigError
from seqnets.models.module import SequenceModule

log = logging.getLogger(__name__)
PACKAGES = ("seqnets", "torch", "lightning", "hydra-core", "torchmetrics", "omegaconf")


def environment() -> dict[str, Any]:
    """Where the numbers came from: library versions and the machine."""
    return {
        "versions": {name: version(name) for name in PACKAGES}
        | {"python": platform.python_version()},
        "machine": {
            "platform": platform.platform(),
            "processor": platform.processor() or platform.machine(),
            "cpu_threads": torch.get_num_threads(),
            "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
        },
    }


def build(cfg: DictConfig) -> tuple[L.LightningDataModule, SequenceModule, L.Trainer]:
    """Instantiate what the config names; a bad value surfaces as the ConfigError naming it
    (Hydra would otherwise wrap it in an InstantiationException)."""
    try:
        datamodule = instantiate(cfg.task.datamodule)
        module = SequenceModule(
            backbone=instantiate(cfg.model, input_size=datamodule.num_features),
            objective=instantiate(cfg.task.objective),
            optimizer=instantiate(cfg.optimizer),
            scheduler=instantiate(cfg.scheduler) if cfg.get("scheduler") else None,
            l2=cfg.l2,
            config=OmegaConf.to_container(cfg, resolve=True),
        )
    except InstantiationException as error:
        if isinstance(error.__cause__, ConfigError):
            raise error.__cause__ from None
        raise
    callbacks = [instantiate(c) for c in cfg.callbacks.values() if c is not None]
    loggers = [instantiate(c) for c in (cfg.get("logger") or {}).values() if c is not None]
    if not loggers:  # e.g. ~logger: a learning-rate monitor would have nowhere to write
        callbacks = [c for c in callbacks if not isinstance(c, LearningRateMonitor)]
    trainer = instantiate(cfg.trainer, callbacks=callbacks, logger=loggers or False)
    return datamodule, module, trainer


def train(cfg: DictConfig) -> dict[str, Any]:
    """Fit and test one run described by ``cfg``; return what goes into ``metrics.json``."""
    L.seed_everything(cfg.seed, workers=True)
    datamodule, module, trainer = build(cfg)
    callbacks = trainer.callbacks

    start = time.perf_counter()
    trainer.fit(module, datamodule=datamodule)
    fit_wall = time.perf_counter() - start
    timer = first_of_type(callbacks, Timer)
    # Read now: loading the best checkpoint for testing restores the Timer's saved state,
    # which Lightning then adds to the training time as an offset.
    train_time = timer.time_elapsed("train") if timer else fit_wall
    checkpoint = trainer.checkpoint_callback
    best_path = getattr(checkpoint, "best_model_path", "") or None
    start = time.perf_counter()
    test = trainer.test(module, datamodule=datamodule, ckpt_path=best_path, verbose=False)[0]
    test_wall = time.perf_counter() - start

    history = first_of_type(callbacks, History)
    analysis = first_of_type(callbacks, TestAnalysis)
    best_score = getattr(checkpoint, "best_model_score", None)
    if best_score is None and history:  # checkpointing switched off: best epoch by monitor
        scores = [row[cfg.task.monitor] for row in history.epochs if cfg.task.monitor in row]
        best_score = (max if cfg.task.monitor_mode == "max" else min)(scores, default=None)
    metrics: dict[str, Any] = {
        "task": cfg.task.name,
        "cell": cfg.model.cell,
        "hidden": cfg.model.hidden,
        "seed": cfg.seed,
        "monitor": cfg.task.monitor,
        "best_val": float(best_score) if best_score is not None else None,
        "best_checkpoint": best_path,
        "test": {k: float(v) for k, v in test.items()},
        "epochs_trained": trainer.current_epoch,
        "steps_trained": trainer.global_step,
        "train_time_s": train_time,
        "test_time_s": timer.time_elapsed("test") if timer else test_wall,
        "fit_wall_s": fit_wall,
        "test_wall_s": test_wall,
        "num_parameters": sum(p.numel() for p in module.parameters()),
        "history": history.epochs if history else [],
        "train_loss_steps": history.steps if history else [],
        **(analysis.results if analysis else {}),
        **environment(),
        "config": module.hparams["config"],
    }
    log_hparams(trainer, cfg, metrics)
    return metrics


def write_metrics(metrics: dict[str, Any], run_dir: str) -> Path:
    """``metrics.json`` beside the run's ``.hydra/`` directory."""
    path = Path(run_dir) / "metrics.json"
    path.write_text(json.dumps(metrics, indent=2))
    return path


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


def objective_value(metrics: dict[str, Any]) -> float:
    """A finite float for sweepers: the best monitored validation value."""
    value = metrics["best_val"]
    if value is None or not math.isfinite(value):
        raise RuntimeError(
            f"the monitored metric {metrics['monitor']} is {value}: the run diverged"
        )
    return value


@hydra.main(version_base="1.3", config_path="../../conf", config_name="train")
def main(cfg: DictConfig) -> float:
    try:
        metrics = train(cfg)
    except ConfigError as error:
        print(f"seqnets: error: {error}", file=sys.stderr)
        sys.exit(2)
    path = write_metrics(metrics, cfg.paths.output_dir)
    log.info("test: %s", json.dumps(metrics["test"]))
    log.info(
        "train %.1f s, test %.1f s; metrics in %s",
        metrics["train_time_s"],
        metrics["test_time_s"],
        path,
    )
    return objective_value(metrics)


if __name__ == "__main__":
    main()

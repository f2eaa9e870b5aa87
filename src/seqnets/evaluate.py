"""Score a trained checkpoint: ``python -m seqnets.evaluate ckpt_path=<file or run dir>``.

The checkpoint alone rebuilds its task and model; its test set is scored by the same loop and
test analysis as at the end of training (over lengths the user may choose, for the synthetic
tasks), into a new directory under ``outputs/evaluate/``.
"""

from __future__ import annotations

import logging
import tempfile
from pathlib import Path
from typing import Any

import hydra
import lightning as L
import torch
from lightning.pytorch.loggers import TensorBoardLogger
from omegaconf import DictConfig, OmegaConf

from seqnets import CONFIG_PATH, records
from seqnets.checkpoints import load_checkpoint, rebuild
from seqnets.cost import check_budget, step_seconds
from seqnets.data.synthetic import check_length_range
from seqnets.errors import ConfigError, check_int, check_real
from seqnets.models.module import scored_record
from seqnets.runtime import resolve_threads
from seqnets.sweeps import cli
from seqnets.tasks import task_of
from seqnets.tasks.analysis import TestAnalysis

log = logging.getLogger(__name__)


def length_changes(lengths: Any) -> dict[str, int]:
    """``lengths=[min, max]`` as the DataModule's evaluation range."""
    if lengths is None:
        return {}
    if not OmegaConf.is_list(lengths) or len(lengths) != 2:
        raise ConfigError(f"lengths={lengths!r} is not allowed: give [min, max], e.g. [1,200]")
    low, high = check_length_range("lengths", lengths[0], lengths[1])
    return {"min_eval_len": low, "max_eval_len": high}


def evaluate(cfg: DictConfig) -> dict[str, Any]:
    """Score ``cfg.ckpt_path``; what goes into ``metrics.json``."""
    out = Path(cfg.paths.output_dir)
    file, checkpoint = load_checkpoint(cfg.ckpt_path)
    changes = length_changes(cfg.lengths)
    if cfg.eval_samples is not None:
        changes["eval_samples"] = check_int("eval_samples", cfg.eval_samples, 1)
    if cfg.data_seed is not None:
        changes["data_seed"] = check_int("data_seed", cfg.data_seed, 0)
    config, datamodule, module = rebuild(checkpoint, data_dir=cfg.paths.data_dir, **changes)
    user_style = check_int("user_style", cfg.user_style, 0)
    task = task_of(config.task)
    if user_style and not hasattr(task, "user_style_accuracy"):
        raise ConfigError(
            f"user_style={user_style} is for tasks whose inputs are images (MNIST); {file} is a "
            f"{task.name} checkpoint"
        )
    datamodule.check()
    if cfg.budget_minutes is not None:
        scored, _ = step_seconds(config.model, datamodule.num_features, datamodule.eval_batch_size)
        check_budget(
            {"the length study": datamodule.eval_work() * scored / 60},
            check_real("budget_minutes", cfg.budget_minutes, 0.0, low_open=True),
            "budget_minutes=null (or a larger budget)",
        )
    torch.set_num_threads(resolve_threads(cfg.threads))
    L.seed_everything(cfg.seed)
    analysis = TestAnalysis(inside=cfg.inside)
    trainer = L.Trainer(
        accelerator=cfg.accelerator,
        devices=1,
        default_root_dir=str(out),
        logger=TensorBoardLogger(str(out), name="tensorboard", version=""),
        callbacks=[analysis],
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    test = trainer.test(module, datamodule=datamodule, verbose=False)[0]
    metrics = {
        "status": records.COMPLETED,
        "checkpoint": str(file),
        **scored_record(module, test, OmegaConf.to_container(config), **analysis.results),
    }
    if user_style:
        n = check_int("user_style", user_style, 1, len(datamodule.splits["test"]["y"]))
        with tempfile.TemporaryDirectory() as workdir:
            metrics["user_style"] = task.user_style_accuracy(module, datamodule, n, Path(workdir))
        log.info("user-style images: %s", metrics["user_style"])
    return metrics


@hydra.main(version_base="1.3", config_path=CONFIG_PATH, config_name="evaluate")
@records.entry_point
def main(cfg: DictConfig) -> None:
    metrics = evaluate(cfg)
    path = records.write_metrics(cfg.paths.output_dir, metrics)
    log.info("test: %s", metrics["test"])
    log.info("metrics and figures in %s", path.parent)


if __name__ == "__main__":
    cli(main)

"""A trained checkpoint on a user's own input: ``python -m seqnets.predict ckpt_path= input=``.

The checkpoint's task reads ``input`` (``Task.predict``). Bad inputs never stop the others:
each is listed with what is wrong, and the exit code says whether anything failed (0 none,
2 some). Everything goes to a new directory under ``outputs/predict/``.
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path
from typing import Any

import hydra
import torch
from omegaconf import DictConfig, OmegaConf

from seqnets import CONFIG_PATH, records
from seqnets.checkpoints import load_checkpoint, rebuild
from seqnets.errors import EXIT_USAGE
from seqnets.runtime import resolve_threads
from seqnets.sweeps import cli
from seqnets.tasks import Task, task_of

log = logging.getLogger(__name__)


def predict(cfg: DictConfig) -> tuple[dict[str, Any], Any, Task]:
    """Predictions for ``cfg.input`` with ``cfg.ckpt_path``, the figure if the task draws
    one (MNIST: the images as the network saw them), and the checkpoint's task."""
    file, checkpoint = load_checkpoint(cfg.ckpt_path)
    config, datamodule, module = rebuild(checkpoint, data_dir=cfg.paths.data_dir)
    torch.set_num_threads(resolve_threads(cfg.threads))
    if cfg.accelerator != "cpu" and torch.cuda.is_available():
        module.to("cuda")
    task = task_of(config.task)
    # Plain Python for the task: a string, a number, or a list of them.
    value = OmegaConf.to_container(cfg.input) if OmegaConf.is_config(cfg.input) else cfg.input
    result = task.predict(module, datamodule, value)
    figure = result.pop("figure", None)
    return {"checkpoint": str(file), "task": task.name, **result}, figure, task


@hydra.main(version_base="1.3", config_path=CONFIG_PATH, config_name="predict")
@records.entry_point
def main(cfg: DictConfig) -> None:
    out = Path(cfg.paths.output_dir)
    result, figure, task = predict(cfg)
    records.write_metrics(out, result, name="predictions.json")
    text = task.markdown(result)
    (out / "predictions.md").write_text(text)
    if figure is not None:
        figure.savefig(out / "predictions.png", dpi=120)
    print(text)
    failed = [r["error"] for r in result["rows"] if "error" in r]
    for error in failed:
        sys.stderr.write(f"seqnets: error: {error}\n")
    log.info("predictions in %s", out)
    if failed:
        sys.stderr.write(f"seqnets: {len(failed)} of {len(result['rows'])} inputs failed\n")
        sys.exit(EXIT_USAGE)


if __name__ == "__main__":
    cli(main)

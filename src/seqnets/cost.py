"""What a run or an evaluation will cost, estimated before it starts: a length study to
100,000 steps is a valid request that takes hours, worth one line before it starts rather
than a silent wait. The configured network is timed on this machine on a small batch and
scaled by the planned work; a rough upper bound, good to a factor of a few, checked against
``budget_minutes`` (an order of magnitude, never a prompt: sweeps and CI have no terminal).
"""

from __future__ import annotations

import functools
import math
import time
from typing import Any

import torch
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from seqnets.data.batching import limited_batches
from seqnets.errors import ConfigError

# The probe: batches of at most PROBE_BATCH sequences (per-sequence cost only falls with
# larger batches: an upper bound) of PROBE_STEPS steps, timed PROBE_REPEATS times (the best).
PROBE_BATCH, PROBE_STEPS, PROBE_REPEATS = 256, 16, 2


def step_seconds(model: DictConfig, num_features: int, batch: int) -> tuple[float, float]:
    """Seconds per sequence step (one sequence, one time step) of the network ``model``
    names, in batches of ``batch``: scored (forward only) and trained (with backward).
    Timed once per process for each network (a sweep's seeds share it; a run is checked
    before its directory exists and again inside it)."""
    return _timed(OmegaConf.to_yaml(model, resolve=True), num_features, batch)


@functools.lru_cache(maxsize=64)
def _timed(model_yaml: str, num_features: int, batch: int) -> tuple[float, float]:
    backbone = instantiate(OmegaConf.create(model_yaml), input_size=num_features)
    batch = min(batch, PROBE_BATCH)
    x = torch.randn(batch, PROBE_STEPS, num_features)
    per = batch * PROBE_STEPS

    def timed(train: bool) -> float:
        best = math.inf
        for _ in range(PROBE_REPEATS):
            start = time.perf_counter()
            with torch.set_grad_enabled(train):
                outputs, _ = backbone(x)
                if train:
                    outputs.sum().backward()
            best = min(best, time.perf_counter() - start)
        return best / per

    # One thread: what a run gets beside another, and a probe that other work on the
    # machine cannot slow down by a factor of forty (two threads on two busy cores).
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return timed(False), timed(True)
    finally:
        torch.set_num_threads(threads)


def run_minutes(cfg: DictConfig, datamodule: Any) -> tuple[float, float]:
    """Estimated minutes of a run's training and of its test analysis's length study: the
    run's budget check, its log line, and the report's job order and first estimate of the
    time left."""
    _, trained = step_seconds(cfg.model, datamodule.num_features, datamodule.batch_size)
    scored, _ = step_seconds(cfg.model, datamodule.num_features, datamodule.eval_batch_size)
    batches, longest = datamodule.train_work()
    batches = limited_batches(cfg.trainer.get("limit_train_batches"), batches)
    steps = batches * cfg.trainer.max_epochs
    if (cfg.trainer.get("max_steps") or -1) > 0:
        steps = min(steps, cfg.trainer.max_steps)
    train = steps * datamodule.batch_size * longest * trained
    study = datamodule.eval_work() * scored if _analysed(cfg) else 0.0
    return train / 60, study / 60


def _analysed(cfg: DictConfig) -> bool:
    analysis = (cfg.get("callbacks") or {}).get("analysis")
    return analysis is not None


def check_budget(minutes: dict[str, float], budget: float | None, override: str) -> None:
    """Refuse work estimated beyond ``budget`` minutes, with the estimate and the override
    that lets it go ahead."""
    if budget is None:
        return
    total = sum(minutes.values())
    if total <= budget:
        return
    parts = ", ".join(f"{what} ~{span(m)}" for what, m in minutes.items() if m >= 0.05)
    raise ConfigError(
        f"budget_minutes={budget:g} is exceeded: this is estimated at {span(total)} on this "
        f"machine ({parts}); to go ahead anyway, add {override}"
    )


def span(minutes: float) -> str:
    """Minutes as a person reads them: seconds, minutes or hours."""
    if minutes < 1:
        return f"{minutes * 60:.0f} s"
    if minutes < 120:
        return f"{minutes:.0f} min"
    return f"{minutes / 60:.1f} h"

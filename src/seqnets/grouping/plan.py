"""Which jobs of a sweep train together, and which process trains what."""

from __future__ import annotations

import hashlib
import json
import logging
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hydra.core.hydra_config import HydraConfig
from hydra.utils import get_class, instantiate
from lightning.pytorch.callbacks import (
    EarlyStopping,
    LearningRateMonitor,
    ModelCheckpoint,
    ProgressBar,
)
from omegaconf import DictConfig, OmegaConf, open_dict

from seqnets import reuse
from seqnets.callbacks import Analysis, DivergenceGuard, History, InterruptCheckpoint
from seqnets.checkpoints import run_config
from seqnets.models.backbone import BYTES_PER_PARAMETER, parameter_count

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
# EarlyStopping settings the group plays (patience, min_delta, mode, check_finite, strict):
# the thresholds and the check at a train epoch's end would make it act otherwise.
EARLY_STOPPING_NOT_PLAYED = (
    "stopping_threshold",
    "divergence_threshold",
    "check_on_train_epoch_end",
)


# --- which jobs train together --------------------------------------------------------------


def group_key(config: dict[str, Any]) -> tuple[str | None, str]:
    """The key a run's resolved config groups by (None: it trains alone) and why not."""
    trainer = config.get("trainer") or {}
    if config.get("ckpt_path"):
        return None, "it continues a checkpoint"
    several = trainer.get("devices", 1) not in (1, "1")  # "auto": every GPU there is
    if several or str(trainer.get("strategy", "auto")).startswith("ddp"):
        return None, "it trains on several devices"
    if str(trainer.get("precision")) in ("16-mixed", "16"):
        return None, "float16 mixed precision scales the loss once for all members"
    if trainer.get("plugins"):
        return None, "it names Trainer plugins"
    if trainer.get("fast_dev_run"):
        return None, "trainer.fast_dev_run checks one run's every stage"
    for name, node in (config.get("callbacks") or {}).items():
        if node is None:
            continue
        cls = target_class(node.get("_target_", ""))
        if cls is None or not (issubclass(cls, PLAYED + ALONGSIDE) or alongside(cls)):
            return None, f"callbacks.{name} ({node.get('_target_')}) acts on one model"
        if issubclass(cls, ModelCheckpoint) and not issubclass(cls, InterruptCheckpoint):
            for key, allowed in CHECKPOINT_AS_PLAYED.items():
                if node.get(key, allowed[0]) not in allowed:
                    return None, f"callbacks.{name}.{key}={node.get(key)!r}"
        if issubclass(cls, EarlyStopping):
            for key in EARLY_STOPPING_NOT_PLAYED:
                if node.get(key) is not None:
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


def alongside(cls: type) -> bool:
    """A callback of the user's that says it acts on the training as a whole, never on a
    model (``group_alongside = True``: e.g. one that watches the step count): it runs
    once, on the group's Trainer. Any other callback of the user's makes its run train
    alone."""
    return getattr(cls, "group_alongside", False) is True


def target_class(target: str) -> type | None:
    """The class a ``_target_`` names (None: it names none this process can import)."""
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


@dataclass
class Job:
    """One job of the sweep: Hydra's number and overrides, its composed config, and (once
    ``prepare`` has looked) its run directory, its run config and its group key."""

    number: int
    overrides: list[str]
    config: DictConfig  # Hydra's, with hydra.job.num and id
    run_dir: Path = Path()
    run_cfg: DictConfig | None = None
    key: str | None = None


def prepare(job: Job) -> None:
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
    except Exception as error:  # the solo path reports it (a ConfigError, one line)
        log.info("job %d trains alone: %s", job.number, error)
        return
    job.key, why = group_key(OmegaConf.to_container(job.run_cfg))
    if job.key is None:
        log.info("job %d trains alone: %s", job.number, why)


def already_done(job: Job) -> bool:
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
        if job.key is None or already_done(job):
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

"""The trained runs the demo offers: every completed run under ``outputs/`` that kept a
checkpoint, best first (``Task.demo_rank``). Runs are read with
:func:`seqnets.records.read_run`, so the demo agrees with the summaries and the report.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from seqnets import records
from seqnets.checkpoints import CheckpointError, find_checkpoint, load_checkpoint
from seqnets.errors import ConfigError
from seqnets.models.backbone import describe_model
from seqnets.tasks import task_of
from seqnets.tasks.base import Task

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Run:
    """One trained network a user may pick."""

    task: str
    model: str  # e.g. "lstm h=128"
    seed: Any
    score: float | None  # the task's demo score on its test set; None when unknown
    checkpoint: Path
    rank: tuple[float, ...] = (float("-inf"),)  # higher is better (Task.demo_rank)
    record: dict[str, Any] = field(default_factory=dict, compare=False, repr=False)
    task_config: dict[str, Any] = field(default_factory=dict, compare=False, repr=False)

    @property
    def label(self) -> str:
        """What the picker shows: task, cell and size, seed, test score and where it lives."""
        score = "test score unknown" if self.score is None else f"test {self.score:.2%}"
        where = self.checkpoint.parent
        where = where.parent if where.name == "checkpoints" else where
        return f"{self.task} · {self.model} · seed {self.seed} · {score} · {where.name}"

    def task_object(self) -> Task:
        """The run's Task, from the task config it was trained with."""
        return task_of(self.task_config)


def _model_name(config: dict[str, Any]) -> str:
    model = config.get("model") or {}
    return describe_model(
        model.get("cell", "?"),
        model.get("hidden", "?"),
        model.get("num_layers", 1),
        model.get("bidirectional", False),
    )


def _run(config: dict[str, Any], record: dict[str, Any], checkpoint: Path) -> Run:
    """The Run of a config, its record and its checkpoint, scored and ranked by its task."""
    task = task_of(config["task"])
    return Run(
        task=task.name,
        model=_model_name(config),
        seed=config.get("seed", "?"),
        score=(record.get("test") or {}).get(task.demo_score()),
        checkpoint=checkpoint,
        rank=task.demo_rank(record),
        record=record,
        task_config=dict(config["task"]),
    )


def _from_record(record: dict[str, Any], unusable: dict[str, str]) -> Run | None:
    """The run a completed record describes, or None if it is not a trained run, or if its
    task's code cannot be imported here (the page cannot answer with it: ``unusable`` gets
    the task's name and why)."""
    config = record.get("config") or {}
    if record["status"] != records.COMPLETED or not config.get("task") or "test" not in record:
        return None
    try:
        checkpoint = find_checkpoint(record["dir"])
    except CheckpointError:
        return None
    if checkpoint.suffix != ".ckpt":
        return None
    try:
        return _run(config, record, checkpoint)
    except ConfigError as error:
        unusable.setdefault(str(config["task"].get("name", "?")), str(error))
        return None


def find_runs(root: str | Path) -> list[Run]:
    """Every completed run with a checkpoint at or below ``root``, best first within each
    task (by the task's rank, then newest)."""
    # Absolute paths: the page's picker names runs by checkpoint, wherever it was started.
    unusable: dict[str, str] = {}
    found = [
        _from_record(records.read_run(d), unusable) for d in records.run_dirs(Path(root).resolve())
    ]
    for task, why in unusable.items():  # said, not silently left off the page
        log.warning("the runs of task %r are not offered: %s", task, why)
    runs = [run for run in found if run is not None]
    runs.sort(key=lambda r: r.checkpoint.stat().st_mtime, reverse=True)
    runs.sort(key=lambda r: r.rank, reverse=True)  # stable: newest first among equals
    return runs


def from_checkpoint(path: str | Path) -> Run:
    """The run a user named with ``ckpt_path=`` (a .ckpt file or a run directory), read
    safely; its score comes from the run's ``metrics.json`` when there is one."""
    file, checkpoint = load_checkpoint(path)
    config = checkpoint["hyper_parameters"]["config"]
    run_dir = file.parent.parent if file.parent.name == "checkpoints" else file.parent
    return _run(config, records.read_run(run_dir), file.resolve())


def best_per_task(runs: list[Run]) -> dict[str, Run]:
    """The first (best) run of each task in ``runs``."""
    best: dict[str, Run] = {}
    for run in runs:
        best.setdefault(run.task, run)
    return best

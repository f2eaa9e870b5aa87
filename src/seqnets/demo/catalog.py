"""The trained runs the demo offers: every completed run under ``outputs/``, best first.

A run is read through :func:`seqnets.records.read_run`, as the summaries and the report read
it, so the demo agrees with them on which runs completed and what they scored. Only runs
that kept a checkpoint are offered (an ``evaluate`` or ``predict`` directory has a record but
no weights).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from seqnets import records
from seqnets.checkpoints import CheckpointError, find_checkpoint, load_checkpoint
from seqnets.models.backbone import describe_model

TASKS = ("mnist", "binary_add", "remember")
# The test score a run is ranked by: how often the whole answer is right.
SCORE = {"mnist": "test/acc", "remember": "test/acc", "binary_add": "test/exact_acc"}


@dataclass(frozen=True)
class Run:
    """One trained network a user may pick."""

    task: str
    model: str  # e.g. "lstm h=128"
    seed: Any
    score: float | None  # the task's SCORE on its test set; None when unknown
    checkpoint: Path
    longest_exact: float | None = None  # binary_add: exact accuracy at the longest length
    carry_unit: str | None = None  # binary_add: the state unit that holds the carry (inside)

    @property
    def label(self) -> str:
        """What the picker shows: task, cell and size, seed, test score and where it lives."""
        score = "test score unknown" if self.score is None else f"test {self.score:.2%}"
        where = self.checkpoint.parent
        where = where.parent if where.name == "checkpoints" else where
        return f"{self.task} · {self.model} · seed {self.seed} · {score} · {where.name}"

    @property
    def rank(self) -> tuple[float, float]:
        """Higher is better: the test score, then (binary_add) the longest sums' accuracy."""
        return (self.score if self.score is not None else -1.0, self.longest_exact or 0.0)


def _model_name(config: dict[str, Any]) -> str:
    model = config.get("model") or {}
    return describe_model(
        model.get("cell", "?"),
        model.get("hidden", "?"),
        model.get("num_layers", 1),
        model.get("bidirectional", False),
    )


def _from_record(record: dict[str, Any]) -> Run | None:
    """The run a completed record describes, or None if it is not a trained run."""
    config = record.get("config") or {}
    task = (config.get("task") or {}).get("name")
    if record["status"] != records.COMPLETED or task not in TASKS or "test" not in record:
        return None
    try:
        checkpoint = find_checkpoint(record["dir"])
    except CheckpointError:
        return None
    if checkpoint.suffix != ".ckpt":
        return None
    by_length = record.get("by_length") or []
    longest = by_length[-1].get("exact_acc") if by_length else None
    carry = (record.get("inside") or {}).get("carry") or {}
    return Run(
        task=task,
        model=_model_name(config),
        seed=config.get("seed", "?"),
        score=record["test"].get(SCORE[task]),
        checkpoint=checkpoint,
        longest_exact=longest,
        carry_unit=carry.get("best_unit"),
    )


def find_runs(root: str | Path) -> list[Run]:
    """Every completed run with a checkpoint at or below ``root``, best first within each
    task (by test score, then by exactness on the longest sums, then newest)."""
    # Absolute paths: the page's picker names runs by checkpoint, wherever it was started.
    found = [_from_record(records.read_run(d)) for d in records.run_dirs(Path(root).resolve())]
    runs = [run for run in found if run is not None]
    runs.sort(key=lambda r: r.checkpoint.stat().st_mtime, reverse=True)
    runs.sort(key=lambda r: r.rank, reverse=True)  # stable: newest first among equals
    return runs


def from_checkpoint(path: str | Path) -> Run:
    """The run a user named with ``ckpt_path=`` (a .ckpt file or a run directory), read
    safely; its score comes from the run's ``metrics.json`` when there is one."""
    file, checkpoint = load_checkpoint(path)
    config = checkpoint["hyper_parameters"]["config"]
    task = config["task"]["name"]
    if task not in TASKS:
        raise CheckpointError(f"{file} is a {task!r} run: the demo shows {', '.join(TASKS)}")
    run_dir = file.parent.parent if file.parent.name == "checkpoints" else file.parent
    record = records.read_run(run_dir)
    score = (record.get("test") or {}).get(SCORE[task])
    carry = (record.get("inside") or {}).get("carry") or {}
    seed = config.get("seed", "?")
    return Run(
        task, _model_name(config), seed, score, file.resolve(), carry_unit=carry.get("best_unit")
    )


def best_per_task(runs: list[Run]) -> dict[str, Run]:
    """The first (best) run of each task in ``runs``."""
    best: dict[str, Run] = {}
    for run in runs:
        best.setdefault(run.task, run)
    return best

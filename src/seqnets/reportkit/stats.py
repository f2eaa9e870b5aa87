"""Numbers over seeds with their provenance: one experiment's runs (``Row``), the mean and
spread of one number over them (``Stat``) and where it is read in a run's ``metrics.json``
(``Getter``). Only completed runs are averaged; any other is reported as such.
"""

from __future__ import annotations

import statistics
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from seqnets import records
from seqnets.models.backbone import describe_model
from seqnets.reportkit.document import DASH


@dataclass
class Row:
    """One experiment of a section: its runs over the seeds (None where none was found)."""

    experiment: str
    runs: list[dict[str, Any] | None]
    seeds: list[int]
    planned: dict[str, Any] | None = None  # the config as planned, when no run has one

    @property
    def name(self) -> str:  # mnist/lstm_128 -> lstm_128
        return self.experiment.split("/")[-1]

    @property
    def completed(self) -> list[dict[str, Any]]:
        return [r for r in self.runs if r is not None and r["status"] == records.COMPLETED]

    @property
    def config(self) -> dict[str, Any]:
        found = [r for r in self.runs if r is not None and r.get("config")]
        return found[0]["config"] if found else self.planned or {}

    def values(self, get: Getter) -> list[tuple[int, str, float]]:
        """(seed, run directory, value) of every completed run that has the value."""
        out = []
        for seed, run in zip(self.seeds, self.runs, strict=True):
            if run is not None and run["status"] == records.COMPLETED:
                value = get(run)
                if value is not None:
                    out.append((seed, run["dir"], value))
        return out

    def stat(self, get: Getter) -> Stat:
        return Stat(self.values(get), get.source)

    def problems(self) -> list[str]:
        """What went wrong with this experiment's runs, one phrase per seed."""
        out = []
        for seed, run in zip(self.seeds, self.runs, strict=True):
            if run is None:
                out.append(f"seed {seed}: not run")
            elif run["status"] == records.DIVERGED:
                where = run["diverged"]
                out.append(f"seed {seed}: **diverged** at step {where['step']}")
            elif run["status"] != records.COMPLETED:
                out.append(f"seed {seed}: **{run['status']}**")
        return out

    def status(self) -> str:
        return "; ".join(self.problems()) or "ok"


class Stat:
    """Mean and spread over seeds of one number, and where each value came from."""

    def __init__(self, values: list[tuple[int, str, float]], source: str = "") -> None:
        self.values, self.source = values, source
        numbers = [v for _, _, v in values]
        self.n = len(numbers)
        self.mean = statistics.fmean(numbers) if numbers else None
        self.std = statistics.stdev(numbers) if len(numbers) > 1 else 0.0 if numbers else None

    def text(self, scale: float = 1.0, digits: int = 2) -> str:
        if self.mean is None:
            return DASH
        spread = f" ± {self.std * scale:.{digits}f}" if self.n > 1 else ""
        return f"{self.mean * scale:.{digits}f}{spread}"

    def record(self) -> dict[str, Any]:
        return {
            "mean": self.mean,
            "std": self.std,
            "n": self.n,
            "source": self.source,  # where in each run's metrics.json the value comes from
            "runs": [{"seed": s, "dir": d, "value": v} for s, d, v in self.values],
        }

    def beats(self, other: Stat) -> bool | None:
        """Whether this one is higher by more than the spread of both (None: a tie)."""
        if self.mean is None or other.mean is None:
            return None
        margin = (self.std or 0.0) + (other.std or 0.0)
        if abs(self.mean - other.mean) <= margin:
            return None
        return self.mean > other.mean


class Getter:
    """Reads one number from a run's record; ``source`` says where, in results.json, so that
    every number shown can be traced back to its run's metrics.json."""

    def __init__(self, source: str, read: Callable[[dict[str, Any]], float | None]) -> None:
        self.source, self.read = source, read

    def __call__(self, run: dict[str, Any]) -> float | None:
        return self.read(run)


def field(name: str) -> Getter:
    """A top-level number of metrics.json (``best_val``, ``num_parameters``)."""
    return Getter(name, lambda run: run.get(name))


def test_metric(name: str) -> Getter:
    return Getter(f"test/{name}", lambda run: run["test"].get(f"test/{name}"))


def _at_lengths(run: dict[str, Any], low: int, high: int, metric: str) -> list[float]:
    return [r[metric] for r in run.get("by_length", []) if low <= r["length"] <= high]


def by_length(length: int, metric: str) -> Getter:
    def read(run: dict[str, Any]) -> float | None:
        values = _at_lengths(run, length, length, metric)
        return values[0] if values else None

    return Getter(f"by_length[{length}].{metric}", read)


def mean_over_lengths(low: int, high: int, metric: str) -> Getter:
    def read(run: dict[str, Any]) -> float | None:
        values = _at_lengths(run, low, high, metric)
        return statistics.fmean(values) if values else None

    return Getter(f"mean(by_length[{low}..{high}].{metric})", read)


seconds_per_epoch = Getter(
    "train_time_s/epochs_trained",
    lambda run: run["train_time_s"] / run["epochs_trained"] if run.get("epochs_trained") else None,
)


def model_name(config: dict[str, Any]) -> str:
    m = config.get("model") or {}
    if not m:
        return "?"
    return describe_model(m["cell"], m["hidden"], m["num_layers"], m["bidirectional"])


def monitor_mode(rows: list[Row]) -> str:
    """Whether the section's monitored validation metric is better high ("max") or low."""
    modes = {r.config.get("task", {}).get("monitor_mode", "max") for r in rows if r.config}
    return modes.pop() if len(modes) == 1 else "max"


def best_row(rows: list[Row], get: Getter, mode: str = "max") -> Row | None:
    """The row whose mean of ``get`` is best (highest, or lowest with ``mode="min"``),
    among rows that have such a mean at all."""
    scored = [(stat.mean, r) for r in rows if (stat := r.stat(get)).mean is not None]
    pick = max if mode == "max" else min
    return pick(scored, key=lambda t: t[0])[1] if scored else None


def best_on_validation(rows: list[Row]) -> Row | None:
    """The inside pick when the report's config names none; the MNIST section's best run."""
    return best_row(rows, field("best_val"), monitor_mode(rows))


def best_run(row: Row, mode: str = "max") -> dict[str, Any] | None:
    scored = [r for r in row.completed if r.get("best_val") is not None]
    pick = max if mode == "max" else min
    return pick(scored, key=lambda r: r["best_val"]) if scored else None


def compare(
    name_a: str,
    a: Stat,
    name_b: str,
    b: Stat,
    scale: float = 100,
    unit: str = " points",
    lower_is_better: bool = False,
    digits: int = 2,
) -> str:
    """A sentence on two numbers over seeds: which is better and by how much (to ``digits``
    decimals), or a tie when the difference is within the spread over seeds."""
    if a.mean is None or b.mean is None:
        return f"{name_a} vs {name_b}: not enough completed runs to compare"
    verdict = a.beats(b)
    if verdict is None:
        return (
            f"{name_a} ({a.text(scale, digits)}) and {name_b} ({b.text(scale, digits)}) tie: the "
            f"difference, {abs(a.mean - b.mean) * scale:.{digits}f}{unit}, is within the spread "
            f"over seeds"
        )
    verdict = verdict != lower_is_better
    (win, high), (lose, low) = ((name_a, a), (name_b, b)) if verdict else ((name_b, b), (name_a, a))
    return (
        f"{win} beats {lose} by {abs(high.mean - low.mean) * scale:.{digits}f}{unit} "
        f"({high.text(scale, digits)} vs {low.text(scale, digits)})"
    )


def mean_curve(runs: list[dict[str, Any]], metric: str) -> list[tuple[int, float]]:
    """A metric against length, averaged over the runs (same lengths in each)."""
    lengths: dict[int, list[float]] = {}
    for run in runs:
        for row in run.get("by_length", []):
            if metric in row:
                lengths.setdefault(row["length"], []).append(row[metric])
    return [(n, statistics.fmean(v)) for n, v in sorted(lengths.items())]

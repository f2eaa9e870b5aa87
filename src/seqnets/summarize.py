"""A table of runs from their files alone: ``python -m seqnets.summarize outputs/multirun/<sweep>``:
one Markdown row per ``metrics.json`` found, then the mean and spread of each group of runs
that differ only by seed.
"""

from __future__ import annotations

import argparse
import statistics
import sys
from collections import defaultdict
from pathlib import Path
from typing import Any

import yaml

from seqnets import records
from seqnets.errors import ConfigError
from seqnets.reportkit.document import table as markdown_table
from seqnets.reportkit.stats import model_name
from seqnets.tasks import task_of

LENGTHS = (20, 50, 100)
# Overrides already shown in other columns (besides the task's own, ``Task.setting_keys``).
SHOWN_ELSEWHERE = {"task", "model", "seed", "experiment", "l2"} | {
    f"model.{k}" for k in ("cell", "hidden", "num_layers", "bidirectional")
}


def load_runs(paths: list[Path]) -> list[dict[str, Any]]:
    """Every run below ``paths`` (finished or not, a record missing or unreadable included),
    in directory order; a sweep job that reused a run is that run, listed once."""
    dirs = sorted({d for p in paths for d in records.run_dirs(p)})
    found: dict[Path, dict[str, Any]] = {}
    for run_dir in dirs:
        record = records.read_run(run_dir)
        found.setdefault(Path(record["dir"]).resolve(), record)
    return list(found.values())


def setting(run: dict[str, Any]) -> str:
    """What sets a run apart besides task, model and seed: the task's own settings, L2, and any
    other command-line override (so runs differing in, say, ``task.lr`` never share a row of
    the mean-over-seeds table)."""
    cfg = run["config"]
    settings = task_setting(cfg["task"])
    parts = [f"{k}={v}" for k, v in settings.items()]
    parts += [f"l2={cfg['l2']}"] if cfg["l2"] else []
    shown = SHOWN_ELSEWHERE | {f"task.{k}" for k in settings}
    overrides = Path(run["dir"]) / ".hydra" / "overrides.yaml"
    if overrides.exists():
        for line in yaml.safe_load(overrides.read_text()) or []:
            key = line.split("=", 1)[0].lstrip("+~")
            hidden = key.startswith("hydra.") or records.is_volatile(key)
            if key not in shown and not hidden:
                parts.append(line)
    return ", ".join(parts)


def task_setting(task: dict[str, Any]) -> dict[str, Any]:
    """The task's own settings (``Task.setting_keys``) and their values;
    ``{"task settings": "?"}`` for a run whose task class cannot be found here (a task defined
    in a module not on this path), which :func:`unreadable_tasks` explains below the table."""
    try:
        return task_of(task).setting()
    except ConfigError:
        return {"task settings": "?"}


def unreadable_tasks(runs: list[dict[str, Any]]) -> list[str]:
    """One line per task whose class cannot be imported here, saying why and what to do:
    its runs' own settings (``Task.setting_keys``) cannot be read, and a silent empty column would
    look like runs that differ in nothing."""
    lines: dict[str, str] = {}
    for run in runs:
        task = (run.get("config") or {}).get("task")
        if not task:
            continue
        try:
            task_of(task)
        except ConfigError as error:
            name = task.get("name", "?")
            lines.setdefault(
                name,
                f"note: the settings of task {name!r} are not shown (setting: task settings=?): "
                f"{' '.join(str(error).split())}",
            )
    return list(lines.values())


def describe(run: dict[str, Any]) -> dict[str, Any]:
    """The columns of one run: what it was, its status, and what it scored (a run that did
    not complete shows why instead of scores)."""
    cfg = run["config"] or {}
    row: dict[str, Any] = {
        "task": cfg.get("task", {}).get("name", "?"),
        "model": model_name(cfg),
        "setting": setting(run) if cfg else "",
        "seed": cfg.get("seed", "?"),
        "status": run["status"],
    }
    if run["status"] != records.COMPLETED:
        row["status"] = f"**{run['status']}**: {records.failure(run)}"
        return row
    # An evaluate or predict directory has a record but trained nothing: no best value.
    if "monitor" in run:
        row[f"best {run['monitor']}"] = run.get("best_val")
    test = run.get("test") or {}
    row |= {k.removeprefix("test/"): v for k, v in test.items() if not k.endswith("loss")}
    by_length = {r["length"]: r for r in run.get("by_length", [])}
    # A few fixed lengths, and the longest the run measured (how far the rule holds).
    for length in sorted({*LENGTHS, max(by_length, default=LENGTHS[0])}):
        for key, value in by_length.get(length, {}).items():
            if key not in ("length", "samples"):
                row[f"{key}@{length}"] = value
    row["train s"] = run.get("train_time_s")
    row["params"] = run.get("num_parameters")
    return row


def fmt(value: Any, key: str = "") -> str:
    """Accuracies and losses to 4 decimals; seconds and other large numbers to 1; nothing
    for a value the run does not have."""
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.1f}" if key.endswith(" s") or abs(value) > 1.0 else f"{value:.4f}"
    return str(value)


def table(rows: list[dict[str, Any]]) -> str:
    """Rows as a Markdown table (columns: the union, in first-seen order)."""
    columns = list(dict.fromkeys(k for row in rows for k in row))
    return markdown_table(columns, [[fmt(row.get(c, ""), c) for c in columns] for row in rows])


def by_seed(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Mean and standard deviation over seeds of each (task, model, setting) group."""
    groups: dict[tuple, list[dict[str, Any]]] = defaultdict(list)
    for row in rows:
        groups[(row["task"], row["model"], row["setting"])].append(row)
    out = []
    for (task, model, setting), members in groups.items():
        done = [m for m in members if m["status"] == records.COMPLETED]
        summary: dict[str, Any] = {
            "task": task,
            "model": model,
            "setting": setting,
            # runs that failed or diverged are counted, never averaged in
            "runs": f"{len(done)}"
            + (f" (+{len(members) - len(done)} not completed)" if len(done) < len(members) else ""),
        }
        for key, value in (done[0] if done else {}).items():
            if isinstance(value, float):
                values = [m[key] for m in done if m.get(key) is not None]
                mean = fmt(statistics.mean(values), key)
                spread = fmt(statistics.stdev(values), key) if len(values) > 1 else None
                summary[key] = f"{mean} ± {spread}" if spread else mean
        out.append(summary)
    return out


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("paths", nargs="+", type=Path, help="run or sweep directories")
    args = parser.parse_args(argv)
    # A predict directory holds no task's run (its config is predict's): nothing to list.
    runs = [run for run in load_runs(args.paths) if (run["config"] or {"task": None}).get("task")]
    rows = [describe(run) for run in runs]
    if not rows:
        raise SystemExit(f"no run directories under {', '.join(map(str, args.paths))}")
    print(table(rows))
    groups = by_seed(rows)
    if len(groups) < len(rows):  # some runs differ only by seed: show mean ± std
        print()
        print(table(groups))
    for line in unreadable_tasks(runs):
        print(line, file=sys.stderr)


if __name__ == "__main__":
    main()

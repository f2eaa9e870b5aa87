"""A table of runs from their files alone: ``python -m seqnets.summarize outputs/multirun/<sweep>``.

Reads every ``metrics.json`` below the given directories and prints one Markdown row per run
(the report builds its tables the same way), then the mean and spread of each group of runs
that differ only by seed.
"""

from __future__ import annotations

import argparse
import json
import statistics
from collections import defaultdict
from pathlib import Path
from typing import Any

from seqnets.models.backbone import describe_model

LENGTHS = (20, 50, 100)


def load_runs(paths: list[Path]) -> list[dict[str, Any]]:
    """Every run's metrics below ``paths``, in directory order."""
    files = sorted({f for p in paths for f in ([p] if p.is_file() else p.rglob("metrics.json"))})
    return [json.loads(f.read_text()) | {"dir": str(f.parent)} for f in files]


def describe(run: dict[str, Any]) -> dict[str, Any]:
    """The columns of one run: what it was, and what it scored."""
    cfg = run["config"]
    model = cfg["model"]
    row: dict[str, Any] = {
        "task": run["task"],
        "model": describe_model(
            model["cell"], model["hidden"], model["num_layers"], model["bidirectional"]
        ),
        "setting": ", ".join(
            [f"{k}={cfg['task'][k]}" for k in ("K", "train_len", "loss") if k in cfg["task"]]
            + ([f"l2={cfg['l2']}"] if cfg["l2"] else [])
        ),
        "seed": run["seed"],
        f"best {run['monitor']}": run["best_val"],
        **{k.removeprefix("test/"): v for k, v in run["test"].items() if not k.endswith("loss")},
    }
    by_length = {r["length"]: r for r in run.get("by_length", [])}
    for length in LENGTHS:
        for key, value in by_length.get(length, {}).items():
            if key not in ("length", "samples"):
                row[f"{key}@{length}"] = value
    row["train s"] = run["train_time_s"]
    row["params"] = run["num_parameters"]
    return row


def fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4f}" if value <= 1.0 else f"{value:.1f}"
    return str(value)


def table(rows: list[dict[str, Any]]) -> str:
    """Rows as a Markdown table (columns: the union, in first-seen order)."""
    columns = list(dict.fromkeys(k for row in rows for k in row))
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(fmt(row.get(c, "")) for c in columns) + " |" for row in rows]
    return "\n".join(lines)


def by_seed(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Mean and standard deviation over seeds of each (task, model, setting) group."""
    groups: dict[tuple, list[dict[str, Any]]] = defaultdict(list)
    for row in rows:
        groups[(row["task"], row["model"], row["setting"])].append(row)
    out = []
    for (task, model, setting), members in groups.items():
        summary: dict[str, Any] = {
            "task": task,
            "model": model,
            "setting": setting,
            "seeds": len(members),
        }
        for key, value in members[0].items():
            if isinstance(value, float):
                values = [m[key] for m in members if m.get(key) is not None]
                mean = fmt(statistics.mean(values))
                summary[key] = (
                    f"{mean} ± {fmt(statistics.stdev(values))}" if len(values) > 1 else mean
                )
        out.append(summary)
    return out


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("paths", nargs="+", type=Path, help="run or sweep directories")
    args = parser.parse_args(argv)
    rows = [describe(run) for run in load_runs(args.paths)]
    if not rows:
        raise SystemExit(f"no metrics.json under {', '.join(map(str, args.paths))}")
    print(table(rows))
    groups = by_seed(rows)
    if len(groups) < len(rows):  # some runs differ only by seed: show mean ± std
        print()
        print(table(groups))


if __name__ == "__main__":
    main()

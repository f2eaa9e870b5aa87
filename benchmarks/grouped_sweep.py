"""A sweep end to end, by launcher: ``python benchmarks/grouped_sweep.py [--rounds N]`` (also
part of ``make bench``).

The design card's sweep (remember; rnn, lstm, gru; hidden 2, 5, 10; one seed: nine runs)
run by ``python -m seqnets.train -m`` as a user runs it, with each launcher in turn, round by
round (a machine's drift hits them alike): Hydra's basic launcher (one run after another),
joblib (one run per core side by side), and seqnets' grouped launcher in one process and
one per core. Wall time from the command's start to its end (imports, composition, training,
testing, figures, records), the median over rounds; and each run's test accuracy, which
grouping must leave as it is (to rounding, compounded over the run's 3,000 steps).
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path
from typing import Any

SWEEP = ["task=remember", "model=rnn,lstm,gru", "model.hidden=2,5,10", "seed=0"]
LAUNCHERS: dict[str, list[str]] = {
    "basic": [],
    "joblib, a process per core": ["hydra/launcher=joblib", "hydra.launcher.n_jobs=-1"],
    "grouped, one process": ["hydra/launcher=grouped", "hydra.launcher.n_jobs=1"],
    "grouped, a process per core": ["hydra/launcher=grouped"],
}


def sweep(launcher: list[str], sweep_dir: Path) -> tuple[float, dict[str, float]]:
    """Seconds the sweep took, and each run's test accuracy by its directory's name."""
    command = [sys.executable, "-m", "seqnets.train", "-m", *SWEEP, *launcher,
               f"hydra.sweep.dir={sweep_dir}"]  # fmt: skip
    start = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(command)} failed ({done.returncode}):\n{done.stderr[-3000:]}")
    scores = {}
    for record in sorted(sweep_dir.glob("*/metrics.json")):
        run = json.loads(record.read_text())
        scores[record.parent.name] = run["test"]["test/acc"]
    return seconds, scores


def measure(rounds: int, out: Path) -> dict[str, Any]:
    """Every launcher's median wall time over ``rounds`` interleaved rounds, its ratio to the
    basic launcher's, and the runs' test accuracies (the last round's)."""
    seconds: dict[str, list[float]] = {name: [] for name in LAUNCHERS}
    scores: dict[str, dict[str, float]] = {}
    for number in range(rounds):
        for name, launcher in LAUNCHERS.items():
            folder = "".join(c if c.isalnum() else "_" for c in name)
            taken, scores[name] = sweep(launcher, out / f"round{number}" / folder)
            seconds[name].append(taken)
            print(f"round {number + 1}/{rounds}: {name}: {taken:.1f} s", flush=True)
    medians = {name: statistics.median(times) for name, times in seconds.items()}
    return {
        "sweep": " ".join(SWEEP),
        "seconds": seconds,
        "median_s": medians,
        "times_faster_than_basic": {n: medians["basic"] / s for n, s in medians.items()},
        "test_acc": scores,
    }


def print_table(result: dict[str, Any]) -> None:
    print(f"\npython -m seqnets.train -m {result['sweep']} (nine runs), end to end:")
    print(f"{'launcher':<30}{'median s':>10}{'x basic':>10}")
    for name, median in result["median_s"].items():
        print(f"{name:<30}{median:>10.1f}{result['times_faster_than_basic'][name]:>10.2f}")
    runs = sorted(next(iter(result["test_acc"].values())))
    print(f"\n{'test accuracy':<22}" + "".join(f"{n[:14]:>16}" for n in result["test_acc"]))
    for run in runs:
        print(f"{run:<22}" + "".join(f"{s[run]:>16.4f}" for s in result["test_acc"].values()))


def main(argv: list[str] | None = None) -> None:
    from seqnets.runtime import environment

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--out", type=Path, default=Path("outputs/bench"))
    args = parser.parse_args(argv)
    out = args.out / f"grouped_{datetime.now():%Y-%m-%d_%H-%M-%S-%f}"
    out.mkdir(parents=True)
    result = measure(args.rounds, out)
    print_table(result)
    command = " ".join(["python benchmarks/grouped_sweep.py", *(argv or sys.argv[1:])])
    report = {"command": command, **result, **environment()}
    (out / "grouped_sweep.json").write_text(json.dumps(report, indent=2, allow_nan=False))
    print(f"\nwritten {out / 'grouped_sweep.json'}")


if __name__ == "__main__":
    main()

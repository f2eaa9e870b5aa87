"""The summary table from run directories alone, with hand-written records (no training)."""

from __future__ import annotations

import json
import statistics
from pathlib import Path

from seqnets import summarize


def fake_run(root: Path, name: str, seed: int, status: str = "completed", acc: float = 0.9) -> Path:
    run = root / name
    (run / ".hydra").mkdir(parents=True)
    config = {
        "task": {"name": "remember", "K": 3},
        "model": {"cell": "gru", "hidden": 5, "num_layers": 1, "bidirectional": False},
        "seed": seed,
        "l2": 0.0,
    }
    record: dict = {"status": status, "config": config, "seed": seed}
    if status == "completed":
        record |= {
            "monitor": "val/loss",
            "best_val": 1.0 - acc,
            "test": {"test/acc": acc, "test/loss": 0.1},
            "train_time_s": 10.0 + seed,
            "num_parameters": 100,
        }
    elif status == "diverged":
        record["diverged"] = {"step": 7, "value": "nan", "what": "training loss", "epoch": 0}
    if status != "unfinished":
        (run / "metrics.json").write_text(json.dumps(record))
    else:
        (run / ".hydra" / "config.yaml").write_text(json.dumps(config))  # YAML accepts JSON
    return run


def test_mean_and_spread_over_seeds_count_failures_apart(tmp_path, capsys):
    accs = [0.90, 0.94, 0.98]
    for seed, acc in enumerate(accs):
        fake_run(tmp_path, f"ok{seed}", seed, acc=acc)
    fake_run(tmp_path, "bad", 3, status="diverged")
    fake_run(tmp_path, "killed", 4, status="unfinished")
    cut = fake_run(tmp_path, "cut", 5, status="unfinished")  # its record cut short
    (cut / "metrics.json").write_text('{"status": "completed", "test": {"test/a')
    summarize.main([str(tmp_path)])
    out = capsys.readouterr().out
    rows = [line for line in out.splitlines() if line.startswith("| remember")]
    assert len(rows) == 6 + 1  # every run, then the one group
    assert any("**diverged**: training loss became nan at step 7" in r for r in rows)
    assert any("**unfinished**" in r for r in rows)
    assert any("| 5 | **unreadable**: unreadable metrics.json" in r for r in rows)
    group = rows[-1]
    mean, std = statistics.mean(accs), statistics.stdev(accs)
    assert f"{mean:.4f} ± {std:.4f}" in group  # the failed runs are not averaged in
    assert "3 (+3 not completed)" in group

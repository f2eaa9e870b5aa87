"""Sweeps that resume and builds that share ``outputs/`` (``seqnets.reuse``): a sweep killed
with SIGKILL and re-run with the same command reuses what finished, resumes the killed job
from its checkpoint (same final metrics as never stopped) and trains the rest; two reports
started at once train each run once; claims of dead processes are taken over."""

from __future__ import annotations

import hashlib
import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from omegaconf import OmegaConf

from seqnets import claims, records, reuse
from tests import gate
from tests.conftest import DATA_DIR, Running, load_metrics, run_cli, user_code_env

# Three short epochs of the remember task: a checkpoint at each epoch end to resume from.
RUN = [
    "task=remember",
    "model.hidden=5",
    "task.max_epochs=3",
    "task.train_batches=40",
    "task.eval_samples=50",
    "task.max_eval_len=12",
    "trainer=cpu",
    "trainer.limit_val_batches=4",
    "trainer.limit_test_batches=4",
    "trainer.enable_model_summary=false",
    "callbacks.progress_bar.refresh_rate=0",
    "callbacks.analysis.inside=false",
]
SWEEP = ["-m", *RUN, "seed=0,1,2,3", "sweep.resume=true"]
# The first sweep is killed where the gate holds its third job (seed 2): at the start of its
# second epoch, its first epoch's checkpoint written whole.
KILL_SEED, KILL_AT = 2, 40
ENV = {**os.environ, "SEQNETS_DATA_DIR": str(DATA_DIR), "MPLBACKEND": "Agg"}


def snapshot(folder: Path) -> dict[str, tuple[int, int, str]]:
    """Every file below ``folder``: size, modification time and content hash."""
    return {
        str(p.relative_to(folder)): (
            p.stat().st_size,
            p.stat().st_mtime_ns,
            hashlib.sha256(p.read_bytes()).hexdigest(),
        )
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def sweep_dirs(cwd: Path) -> list[Path]:
    return sorted(p for p in (cwd / "outputs" / "multirun").glob("*/*") if p.is_dir())


@pytest.mark.slow
def test_killed_sweep_rerun_reuses_resumes_and_trains(tmp_path):
    sweep = [*SWEEP, *gate.overrides(KILL_AT, tag="${seed}")]
    env = user_code_env()
    with Running(*sweep, cwd=tmp_path, env=env | gate.armed(KILL_SEED)) as first:
        first.wait_for(gate.HOLDING)
        first.kill()  # SIGKILL to the sweep's process group, as a crash or the OOM killer
    (killed,) = (d for d in tmp_path.glob(f"outputs/multirun/*/*/{KILL_SEED}_*") if d.is_dir())
    assert (killed / "checkpoints" / "last.ckpt").exists()
    assert not (killed / "metrics.json").exists()  # killed mid-run: no record, a checkpoint
    (old,) = sweep_dirs(tmp_path)
    done = sorted(old.glob("[01]_*"))
    assert [load_metrics(d)["status"] for d in done] == ["completed", "completed"]
    before = snapshot(old)

    proc = run_cli(*sweep, cwd=tmp_path, env=env)  # the same command again
    assert "4 of 4 jobs completed; 2 reused, 1 resumed, 1 trained" in proc.stderr
    new = next(d for d in sweep_dirs(tmp_path) if d != old)
    assert snapshot(old) == before  # nothing of the first sweep touched
    jobs = {d.name[0]: d for d in new.iterdir() if d.is_dir()}
    for number, original in zip("01", done, strict=True):
        pointer = load_metrics(jobs[number])
        assert pointer == pointer | {"status": "reused", "reused_from": str(original.resolve())}
        assert records.read_run(jobs[number])["test"] == load_metrics(original)["test"]
    resumed = load_metrics(jobs["2"])
    assert resumed["status"] == "completed"
    assert Path(resumed["resumed_from"]).parent == (killed / "checkpoints").resolve()
    assert load_metrics(jobs["3"])["resumed_from"] is None

    # the killed job ends as if never stopped: the same seed run in one go
    run_cli(*RUN, "seed=2", f"hydra.run.dir={tmp_path / 'whole'}", cwd=tmp_path)
    whole = load_metrics(tmp_path / "whole")
    for key in ("test", "best_val", "history", "train_loss_steps", "steps_trained"):
        assert resumed[key] == whole[key], key


@pytest.mark.slow
def test_two_reports_at_once_train_each_run_once(tmp_path):
    command = [
        sys.executable,
        "-m",
        "seqnets.report",
        "quick=true",
        "sections=[remember]",
        "seeds=[0]",
        # three of the section's runs (its tables and figures are all still made), one job at
        # a time: worker processes would cost more than these runs
        "experiments.remember=[remember/rnn_h10,remember/lstm_h10,remember/gru_h10]",
        "parallel=1",
    ]
    both = [
        subprocess.Popen(command, cwd=tmp_path, env=ENV, stdout=subprocess.PIPE, text=True)
        for _ in range(2)
    ]
    logs = [p.communicate(timeout=600)[0] for p in both]
    assert [p.returncode for p in both] == [0, 0], logs
    found = [d for root in reuse.roots(tmp_path / "outputs") for d in records.run_dirs(root)]
    jobs = [records.read_run(d, follow=False) for d in found]
    trained = [j for j in jobs if j["status"] != "reused" and j.get("config")]
    identities = [reuse.identity(j["config"]) for j in trained]
    assert len(trained) == len(set(identities)) == 3  # each planned run trained exactly once
    assert all(j["status"] == "completed" for j in trained)
    results = []
    for report in (tmp_path / "outputs" / "report").glob("2*"):
        found = json.loads((report / "results.json").read_text())
        found.pop("build")  # when, how long, what this build trained itself
        results.append(found)
    assert len(results) == 2 and results[0] == results[1]
    used = {(tmp_path / r["dir"]).resolve() for r in results[0]["runs"]}
    assert used == {Path(j["dir"]).resolve() for j in trained}


def claim(tmp_path: Path, **settings: float) -> claims.Claim:
    config = OmegaConf.create({"heartbeat_s": 60, "stale_after_s": 600} | settings)
    return claims.Claim(tmp_path / "claims", "abc", tmp_path / "run", config)


def test_claims_live_dead_and_other_hosts(tmp_path):
    # alive until the test kills it, however long the test takes
    sleeper = subprocess.Popen(
        [sys.executable, "-c", "import sys; sys.stdin.read()"], stdin=subprocess.PIPE
    )
    try:
        mine = claim(tmp_path)
        assert mine.take() is None
        assert claim(tmp_path).take()["pid"] == os.getpid()  # held: the holder is named
        mine.release()
        assert not mine.path.exists()
        # a live process on this host holds it; once it is dead, the claim is taken over
        live = {"pid": sleeper.pid, "host": socket.gethostname(), "token": "x"}
        mine.path.write_text(json.dumps(live))
        assert claim(tmp_path).take() == live
        sleeper.kill()
        sleeper.wait()
        other = claim(tmp_path)
        assert other.take() is None and json.loads(other.path.read_text())["pid"] == os.getpid()
        other.release()
        # another host: live while its heartbeat is fresh, stale once it is old
        away = {"pid": 1, "host": "elsewhere", "token": "y"}
        mine.path.write_text(json.dumps(away))
        assert claim(tmp_path, stale_after_s=600).take() == away
        old = time.time() - 601
        os.utime(mine.path, (old, old))
        assert claim(tmp_path, stale_after_s=600).take() is None
    finally:
        sleeper.kill()


def test_a_moved_callback_keeps_a_runs_identity():
    """A run stored before a class moved (its config names the old ``_target_``) is the same
    run as one planned today: the report reuses it, a sweep resumes it."""
    old = {"seed": 0, "callbacks": {"analysis": {"_target_": "seqnets.callbacks.TestAnalysis"}}}
    new = {
        "seed": 0,
        "callbacks": {"analysis": {"_target_": "seqnets.tasks.analysis.TestAnalysis"}},
    }
    assert reuse.identity(old) == reuse.identity(new)

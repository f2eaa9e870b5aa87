"""Beyond one process: jobs side by side (joblib), DDP on CPU processes, an Optuna search,
the SLURM launcher's config, and the benchmark. GPU paths run only where there is a GPU."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import torch

from tests.conftest import DATA_DIR, load_metrics, needs_mnist, run_cli, run_dirs, tiny

# Every test here starts several processes or times real runs: the slow tier.
pytestmark = pytest.mark.slow

SMALL = ("task=remember", "model.hidden=4", "task.eval_samples=40", "task.max_eval_len=12")


def test_joblib_runs_two_jobs_side_by_side_one_thread_each(tmp_path):
    run_cli(
        "-m",
        *tiny(*SMALL, "seed=0,1"),
        "hydra/launcher=joblib",
        "hydra.launcher.n_jobs=2",
        "threads=null",  # the default, whatever $SEQNETS_THREADS says
        cwd=tmp_path,
    )
    runs = [load_metrics(d) for d in run_dirs(tmp_path)]
    assert sorted(r["seed"] for r in runs) == [0, 1]
    assert all(r["status"] == "completed" for r in runs)
    # two jobs on this machine's cores: each takes its share, never all of them
    from seqnets.runtime import available_cores

    assert all(r["machine"]["cpu_threads"] == max(1, available_cores() // 2) for r in runs)


def test_ddp_two_cpu_processes_one_record_counting_every_test_sample(tmp_path):
    run_cli(
        *tiny(*SMALL),
        "trainer=ddp",
        "trainer.devices=2",
        "trainer.accelerator=cpu",
        "trainer.limit_test_batches=null",
        "task.datamodule.test_size=3001",  # odd: the ranks' shards differ in size
        "hydra.run.dir=ddp",
        cwd=tmp_path,
    )
    records = list((tmp_path / "ddp").rglob("metrics.json"))
    assert len(records) == 1  # rank zero writes it
    metrics = load_metrics(tmp_path / "ddp")
    matrix = torch.tensor(metrics["confusion_matrix"])
    assert int(matrix.sum()) == 3001  # gathered from both ranks, no sample twice
    accuracy = float(matrix.trace() / matrix.sum())
    assert metrics["test"]["test/acc"] == pytest.approx(accuracy, abs=1e-6)
    assert metrics["config"]["trainer"]["strategy"] == "ddp"


def test_optuna_search_two_trials_continues_in_sqlite(tmp_path):
    optuna = pytest.importorskip("optuna")
    args = [*tiny("hparams_search=remember", "task.eval_samples=40", "task.max_eval_len=12")]
    args += ["hydra.sweeper.n_trials=2"]
    run_cli(*args, cwd=tmp_path)
    db = tmp_path / "outputs" / "optuna" / "remember.db"
    assert db.exists()
    study = optuna.load_study(study_name="remember", storage=f"sqlite:///{db}")
    assert len(study.trials) == 2
    assert all(t.state.name == "COMPLETE" for t in study.trials)
    assert 0.0 <= study.best_value <= 1.0
    run_cli(*args, cwd=tmp_path)  # the same command continues the study
    study = optuna.load_study(study_name="remember", storage=f"sqlite:///{db}")
    assert len(study.trials) == 4
    hidden = {t.params["model.hidden"] for t in study.trials}
    assert hidden <= {2, 5, 10, 20}


def test_slurm_launcher_config_composes(tmp_path):
    pytest.importorskip("hydra_plugins.hydra_submitit_launcher")
    proc = run_cli("hydra/launcher=slurm", "--cfg", "hydra", cwd=tmp_path)
    assert "SlurmLauncher" in proc.stdout and "cpus_per_task: 4" in proc.stdout
    assert "submitit_folder" in proc.stdout


def bench(tmp_path, *args: str, workload: str = "mnist", gen: str = "0") -> dict:
    """``python benchmarks/bench.py`` on one workload with tiny budgets; its ``bench.json``."""
    import subprocess

    out = tmp_path / "bench"
    bench_py = str(Path(__file__).resolve().parents[1] / "benchmarks" / "bench.py")
    command = [sys.executable, bench_py, "--workloads", workload, "--steps", "2"]
    command += ["--rounds", "1", "--gen-seconds", gen, "--data-dir", str(DATA_DIR)]
    subprocess.run(
        [*command, "--out", str(out), *args], check=True, cwd=tmp_path, capture_output=True
    )
    (report,) = out.rglob("bench.json")
    return json.loads(report.read_text())


@needs_mnist
def test_bench_tiny_budget_times_all_three_paths(tmp_path):
    result = bench(tmp_path, "--memory-steps", "0")
    row = result["throughput"]["mnist"]
    for path in ("seqnets", "lightning", "reports", "floor"):
        assert row[path]["ms_per_step"] > 0 and row[path]["sequences_per_s"] > 0
    assert row["seqnets/floor"] > 0 and row["seqnets/reports"] > 0
    assert result["peak_memory_mib"] == {}


def test_bench_of_a_task_that_makes_its_data(tmp_path):
    """The workload, the floor's batches and the generation rates come from the task; no
    reference loop was published for it."""
    result = bench(tmp_path, "--memory-steps", "0", workload="remember", gen="0.05")
    row = result["throughput"]["remember"]
    assert row["seqnets"]["ms_per_step"] > 0 and row["floor"]["ms_per_step"] > 0
    assert "reports" not in row
    rates = result["generation_sequences_per_s"]
    assert set(rates) == {"remember (len 3..10)", "remember (len 20)"}
    assert all(v > 0 for rate in rates.values() for v in rate.values())


@needs_mnist
def test_bench_peak_memory_of_every_path_and_a_cli_run(tmp_path):
    memory = bench(tmp_path, "--memory-steps", "2")["peak_memory_mib"]["mnist"]
    assert set(memory) == {"seqnets", "lightning", "reports", "floor", "cli_run"}
    assert all(m > 50 for m in memory.values())


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA GPU on this machine")
def test_gpu_run_mixed_precision(tmp_path):
    run_cli(
        *tiny(*SMALL),
        "trainer=gpu",
        "trainer.precision=bf16-mixed",
        "hydra.run.dir=gpu",
        cwd=tmp_path,
    )
    metrics = load_metrics(tmp_path / "gpu")
    assert metrics["status"] == "completed" and metrics["machine"]["cuda"]

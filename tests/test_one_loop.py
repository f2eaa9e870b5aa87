"""Lightning's own machinery acts as Lightning documents it, through seqnets' one training
path: a time limit stops a run, mixed precision trains with the default optimiser and
clipping, an epoch without validation has no validation values, and a fixed sweep directory
run again is reused, never trained over. Each of these was broken before (issue 25)."""

from __future__ import annotations

from pathlib import Path

from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from seqnets.train import train
from tests.conftest import cli_in_process, load_metrics, tiny

REMEMBER = ("task=remember", "model.hidden=3", "callbacks.analysis=null", "trainer=cpu")


def fit(compose_cfg, *overrides: str) -> dict:
    cfg = compose_cfg(*tiny(*REMEMBER, *overrides))
    return train(cfg)[0]


def test_max_time_stops_training_and_says_why(compose_cfg):
    # 10,000 epochs of 5 batches: hours on any machine, so only the time limit can end it
    # (seqnets' own Timer made Lightning drop max_time before).
    metrics = fit(
        compose_cfg,
        "task.max_epochs=10000",
        "trainer.max_epochs=10000",
        "budget_minutes=null",
        "+trainer.max_time=00:00:00:01",
        "+trainer.min_epochs=1",  # a whole epoch (and its checkpoint), however slow the machine
    )
    assert metrics["status"] == "completed"
    assert "trainer.max_time" in metrics["stopped_by"]
    assert metrics["epochs_trained"] < 10000
    assert metrics["test"]  # tested like any completed run


def test_a_run_says_which_limit_ended_it(compose_cfg):
    assert fit(compose_cfg)["stopped_by"] == "trainer.max_epochs=1"
    assert fit(compose_cfg, "+trainer.max_steps=3")["stopped_by"] == "trainer.max_steps=3"


def test_bf16_mixed_trains_with_the_fused_optimiser_and_clipping(compose_cfg):
    # The default optimiser is fused and every task clips: Lightning refuses to clip a fused
    # optimiser under mixed precision, so the module builds it unfused there.
    metrics = fit(compose_cfg, "trainer.precision=bf16-mixed")
    assert metrics["status"] == "completed", metrics
    assert metrics["config"]["optimizer"]["fused"] is True  # the config as the user set it


def test_epochs_without_validation_have_no_validation_values(compose_cfg, tmp_path):
    metrics = fit(
        compose_cfg,
        "trainer.max_epochs=4",
        "task.max_epochs=4",
        "+trainer.check_val_every_n_epoch=2",
    )
    history = metrics["history"]
    assert [row["epoch"] for row in history] == [0, 1, 2, 3]
    validated = [row["epoch"] for row in history if "val/loss" in row]
    assert validated == [1, 3]  # Lightning validates after every second epoch
    assert history[1]["val/loss"] != history[3]["val/loss"]
    board = EventAccumulator(str(tmp_path / "tensorboard"))  # every event file in it
    board.Reload()
    assert len(board.Scalars("val/loss")) == 2


def job_dirs(sweep: Path) -> list[Path]:
    return sorted(p for p in sweep.iterdir() if p.is_dir())


def files_of(run_dir: Path) -> dict[str, int]:
    return {
        str(p.relative_to(run_dir)): p.stat().st_mtime_ns
        for p in run_dir.rglob("*")
        if p.is_file() and ".hydra" not in p.parts and p.name != "train.log"
    }


def test_a_resumed_sweep_run_again_in_its_own_directory_is_reused(tmp_path, capsys):
    sweep = tmp_path / "my_sweep"
    args = (
        "-m",
        *tiny(*REMEMBER, "model.hidden=2,3", "sweep.resume=true"),
        f"hydra.sweep.dir={sweep}",
    )
    code, said = cli_in_process(*args, cwd=tmp_path, capsys=capsys)
    assert code == 0, said
    before = {d.name: files_of(d) for d in job_dirs(sweep)}
    assert len(before) == 2 and all("metrics.json" in f for f in before.values())
    code, said = cli_in_process(*args, cwd=tmp_path, capsys=capsys)
    assert code == 0, said
    assert "2 reused, 0 resumed, 0 trained" in said
    assert {d.name: files_of(d) for d in job_dirs(sweep)} == before  # nothing written again
    assert all(load_metrics(d)["status"] == "completed" for d in job_dirs(sweep))


def test_a_directory_holding_a_run_is_never_trained_over(tmp_path, capsys):
    sweep = tmp_path / "my_sweep"
    args = ("-m", *tiny(*REMEMBER, "model.hidden=2"), f"hydra.sweep.dir={sweep}")
    code, said = cli_in_process(*args, cwd=tmp_path, capsys=capsys)
    assert code == 0, said
    (job,) = job_dirs(sweep)
    before = files_of(job)
    # The same sweep without sweep.resume, and another seed whose job has the same directory.
    for extra in ((), ("seed=1", "sweep.resume=true")):
        code, said = cli_in_process(*args, *extra, cwd=tmp_path, capsys=capsys)
        assert code == 2, said
        assert "already holds" in said and "nothing was run" in said
    # A single run pointed at it.
    single = (*tiny(*REMEMBER, "model.hidden=2"), f"hydra.run.dir={job}")
    code, said = cli_in_process(*single, cwd=tmp_path, capsys=capsys)
    assert code == 2 and "already holds this same run (completed)" in said, said
    assert files_of(job) == before

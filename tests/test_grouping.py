"""Sweeps that train as one (``hydra/launcher=grouped``, ``seqnets.grouping``): each grouped
run computes what its solo run computes, step by step; stops alone when it diverges; resumes
after a signal; and leaves a run directory every reader reads as a solo run's."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import pytest
import torch
from omegaconf import OmegaConf

from seqnets.grouping.plan import group_key, plan_groups
from tests import gate
from tests.conftest import Running, load_metrics, run_cli, user_code_env

# 100 training steps (2 epochs of 50), small evaluation sets: quick on two cores.
SHORT = [
    "task=remember",
    "seed=0",
    "task.max_epochs=2",
    "task.train_batches=50",
    "task.eval_samples=50",
    "trainer.limit_val_batches=2",
    "trainer.limit_test_batches=1",
    "trainer.enable_model_summary=false",
    "callbacks.progress_bar.refresh_rate=0",
]
GROUPED = "hydra/launcher=grouped"
ONE_LANE = [GROUPED, "hydra.launcher.n_jobs=1"]  # every member in one group, in this process
NETWORKS = ["model=rnn,lstm,gru", "model.hidden=2,5"]


def jobs(sweep: Path) -> dict[str, dict]:
    """Each job's record, by its directory's name."""
    return {d.name: load_metrics(d) for d in sorted(sweep.iterdir()) if (d / ".hydra").is_dir()}


def losses(record: dict) -> list[float]:
    return [loss for _, loss in record["train_loss_steps"]]


def close(a: list[float], b: list[float], rel: float = 1e-5) -> bool:
    return len(a) == len(b) and all(abs(x - y) <= rel * abs(y) for x, y in zip(a, b, strict=True))


@pytest.mark.slow  # two sweeps of six runs
def test_grouped_runs_compute_what_solo_runs_compute(tmp_path):
    """The same batches, the same first weights, each its own optimiser state and clipping:
    every step's loss equals the solo run's to 1e-5 (same-cell members share one kernel
    call, whose sums run in another order), and so do the records' other keys."""
    run_cli("-m", *SHORT, *NETWORKS, f"hydra.sweep.dir={tmp_path / 'solo'}", cwd=tmp_path)
    run_cli(
        "-m", *SHORT, *NETWORKS, GROUPED, f"hydra.sweep.dir={tmp_path / 'grouped'}", cwd=tmp_path
    )
    solo, grouped = jobs(tmp_path / "solo"), jobs(tmp_path / "grouped")
    assert sorted(solo) == sorted(grouped) and len(solo) == 6
    for name, alone in solo.items():
        together = grouped[name]
        assert together["status"] == alone["status"] == "completed", name
        assert len(losses(alone)) == 100
        assert close(losses(together), losses(alone)), name
        assert together["grouped"]["members"] >= 2 and "grouped" not in alone
        assert set(together) - {"grouped"} == set(alone), name
        for key in ("steps_trained", "epochs_trained", "stopped_by", "num_parameters", "cell"):
            assert together[key] == alone[key], (name, key)
        assert together["best_val"] == pytest.approx(alone["best_val"], rel=1e-4)
        for metric, value in alone["test"].items():
            assert together["test"][metric] == pytest.approx(value, rel=1e-4, abs=1e-4)
        run_dir = tmp_path / "grouped" / name
        assert {p.name for p in (run_dir / "checkpoints").iterdir()} == {
            p.name for p in (tmp_path / "solo" / name / "checkpoints").iterdir()
        }
        assert list((run_dir / "tensorboard").glob("events.out.tfevents.*"))
        # a solo run's checkpoint, key for key (hyper-parameters named as Lightning names them)
        saved = [
            torch.load(d / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=False)
            for d in (run_dir, tmp_path / "solo" / name)
        ]
        assert set(saved[0]) == set(saved[1]), name
        assert saved[0].get("hparams_name") == saved[1].get("hparams_name"), name
        assert set(saved[0]["hyper_parameters"]) == set(saved[1]["hyper_parameters"]), name
    assert not (tmp_path / "grouped" / ".groups").exists()  # the group leaves no folder


@pytest.mark.slow
def test_a_grouped_checkpoint_evaluated_alone_gives_its_recorded_score(tmp_path):
    whole_test_set = [a for a in SHORT if not a.startswith("trainer.limit_test")]  # as evaluate
    run_cli("-m", *whole_test_set, "model=lstm,gru", "model.hidden=8", *ONE_LANE,
            f"hydra.sweep.dir={tmp_path / 's'}", cwd=tmp_path)  # fmt: skip
    for name, record in jobs(tmp_path / "s").items():
        run_dir = tmp_path / "s" / name
        out = tmp_path / f"eval-{name}"
        run_cli(
            f"ckpt_path={record['best_checkpoint']}",
            f"hydra.run.dir={out}",
            module="seqnets.evaluate",
            cwd=tmp_path,
        )
        scored = load_metrics(out)
        for metric, value in record["test"].items():
            assert scored["test"][metric] == pytest.approx(value, rel=1e-6), (name, metric)
        # and its last checkpoint is a solo run's, loadable and continued by Lightning
        assert (run_dir / "checkpoints" / "last.ckpt").is_file()


@pytest.mark.slow
def test_a_diverging_member_stops_alone(tmp_path):
    """One member's network turns NaN at its 8th step: it stops there, diverged, as its solo
    run does; the others train to the end."""
    cells = "model.cell=gru,lstm,tests.exploding_cell.ExplodingGRU"
    env = user_code_env()
    proc = run_cli(
        "-m", *SHORT, cells, "model.hidden=5", *ONE_LANE, f"hydra.sweep.dir={tmp_path / 'g'}",
        cwd=tmp_path, env=env, check=False,
    )  # fmt: skip
    assert proc.returncode == 1, proc.stderr[-2000:]  # a job diverged: the summary says so
    grouped = jobs(tmp_path / "g")
    (bad,) = [n for n in grouped if "ExplodingGRU" in n]
    assert grouped[bad]["status"] == "diverged"
    assert grouped[bad]["grouped"]["members"] == 3
    good = [n for n in grouped if n != bad]
    for name in good:
        assert grouped[name]["status"] == "completed" and grouped[name]["steps_trained"] == 100
    run_cli(
        *SHORT, "model.cell=tests.exploding_cell.ExplodingGRU", "model.hidden=5",
        f"hydra.run.dir={tmp_path / 'alone'}", cwd=tmp_path, env=env, check=False,
    )  # fmt: skip
    alone = load_metrics(tmp_path / "alone")
    assert alone["status"] == "diverged"
    assert grouped[bad]["diverged"] == alone["diverged"]
    assert grouped[bad]["steps_trained"] == alone["steps_trained"] == 8
    assert "diverged" in proc.stderr and bad in proc.stderr


@pytest.mark.slow
def test_sigterm_mid_group_then_the_same_command_resumes_every_member(tmp_path):
    """SIGTERM while the group trains: every member's state is saved in its own directory and
    the sweep ends 143; the same command (``sweep.resume``) resumes each from it, and each
    finishes with the losses of a group that was never stopped."""
    args = ["-m", *SHORT, "model=lstm,gru", "model.hidden=3", *ONE_LANE, "sweep.resume=true",
            "sweep.runs_dir=runs"]  # fmt: skip
    whole = tmp_path / "whole"
    run_cli(*args, f"hydra.sweep.dir={whole}", cwd=tmp_path)
    stopped = [*args, f"hydra.sweep.dir={tmp_path / 'stopped'}", *gate.overrides(30)]
    with Running(*stopped, cwd=tmp_path, env=user_code_env() | gate.armed()) as run:
        run.wait_for(gate.HOLDING)
        run.signal(signal.SIGTERM)
        assert run.finish() == 143, run.tail()
    assert "sweep.resume=true resumes every run" in run.output
    for name, record in jobs(tmp_path / "stopped").items():
        assert record["status"] == "interrupted", name
        assert Path(record["checkpoint"]).is_file()
    again = run_cli(*stopped, cwd=tmp_path, env=user_code_env())
    assert "2 resumed" in again.stderr
    resumed, never = jobs(tmp_path / "stopped"), jobs(whole)
    for name, record in resumed.items():
        assert record["status"] == "completed" and record["resumed_from"], name
        assert close(losses(record), losses(never[name])), name


def _job(**changes: object) -> dict:
    config = {
        "task": {"name": "remember", "datamodule": {"seed": 0}, "loss": None},
        "model": {"cell": "lstm", "hidden": 5},
        "optimizer": {"lr": 0.01},
        "trainer": {"max_epochs": 3, "devices": 1},
        "callbacks": {"history": {"_target_": "seqnets.callbacks.History"}},
        "paths": {"output_dir": "/x", "data_dir": "/d"},
        "seed": 0,
        "l2": 0.0,
    }
    for dotted, value in changes.items():
        node = config
        *parents, last = dotted.split("__")
        for key in parents:
            node = node[key]
        node[last] = value
    return config


def test_runs_group_by_what_decides_their_data_and_schedule():
    key = group_key(_job())[0]
    assert key is not None
    for same in ({"model__hidden": 10}, {"model__cell": "gru"}, {"l2": 0.1},
                 {"paths__output_dir": "/y"}):  # fmt: skip
        assert group_key(_job(**same))[0] == key, same
    for other in ({"seed": 1}, {"optimizer__lr": 0.1}, {"trainer__max_epochs": 4},
                  {"task__datamodule__seed": 2}):  # fmt: skip
        assert group_key(_job(**other))[0] not in (key, None), other
    alone = {
        "ckpt_path": "/some.ckpt",
        "trainer__devices": 2,
        "trainer__precision": "16-mixed",
        "callbacks__swa": {"_target_": "lightning.pytorch.callbacks.StochasticWeightAveraging"},
        "trainer__fast_dev_run": True,
        "callbacks__stop": {
            "_target_": "lightning.pytorch.callbacks.EarlyStopping",
            "monitor": "val/loss",
            "stopping_threshold": 0.1,
        },
    }
    for name, value in alone.items():
        found, why = group_key(_job(**{name: value}))
        assert found is None and why, name


def test_a_group_is_split_at_max_members_and_at_the_memory_budget():
    from seqnets.grouping.plan import Job

    def job(number: int, hidden: int) -> Job:
        cfg = OmegaConf.create(
            {
                "model": {"cell": "lstm", "hidden": hidden},
                "task": {
                    "batch_size": 64,
                    "datamodule": {
                        "_target_": "seqnets.data.remember.RememberDataModule",
                        "K": 3, "min_len": 3, "max_len": 10, "batch_size": 64,
                    },
                },
                "sweep": {"resume": False},
            }
        )  # fmt: skip
        return Job(number, [], OmegaConf.create({}), Path(f"/r/{number}"), cfg, "same")

    members = [job(n, 5) for n in range(5)]
    assert [len(g) for g in plan_groups(members, 2, float("inf"))] == [2, 2, 1]
    assert [len(g) for g in plan_groups(members, 32, float("inf"))] == [5]
    big = [job(0, 5), job(1, 2000), job(2, 5)]
    sizes = [len(g) for g in plan_groups(big, 32, 300e6)]
    assert sum(sizes) == 3 and len(sizes) >= 2  # the 2000-unit LSTM needs ~500 MB


def test_the_launchers_options_are_checked(tmp_path, capsys):
    from tests.conftest import cli_in_process

    code, err = cli_in_process(
        "-m", *SHORT, "model.hidden=2,3", GROUPED, "hydra.launcher.max_members=0",
        f"hydra.sweep.dir={tmp_path / 's'}", cwd=tmp_path, capsys=capsys,
    )  # fmt: skip
    assert code == 2 and "hydra.launcher.max_members=0" in err


@pytest.mark.slow
@pytest.mark.parametrize(
    ("signum", "to_group", "code"),
    [(signal.SIGTERM, False, 143), (signal.SIGINT, True, 130)],
    ids=["sigterm-to-the-sweep", "ctrl-c-to-the-process-group"],
)
def test_a_stop_reaches_every_lane_once_and_the_sweep_resumes(tmp_path, signum, to_group, code):
    """Two processes (``n_jobs=2``), each training its group: a stop sent to the sweep is
    passed on to both; Ctrl-C in a terminal reaches all three, and each lane still stops
    once, at a step's start (not again mid-step). Each saves its members; the sweep ends
    128 + the signal, and the same command finishes every run."""
    args = ["-m", *SHORT, "model=rnn,lstm", "model.hidden=2,3", GROUPED,
            "hydra.launcher.n_jobs=2", "sweep.resume=true", "sweep.runs_dir=runs",
            f"hydra.sweep.dir={tmp_path / 's'}", *gate.overrides(30)]  # fmt: skip
    with Running(*args, cwd=tmp_path, env=user_code_env() | gate.armed()) as run:
        run.wait_for(gate.HOLDING)
        if to_group:
            os.killpg(run.proc.pid, signum)
        else:
            run.signal(signum)
        assert run.finish() == code, run.tail()
    assert "Traceback" not in run.output, run.tail()
    stopped = jobs(tmp_path / "s")
    assert stopped and all(r["status"] == "interrupted" for r in stopped.values()), stopped
    run_cli(*args, cwd=tmp_path, env=user_code_env())
    finished = jobs(tmp_path / "s")
    assert len(finished) == 4
    for name, record in finished.items():
        assert record["status"] == "completed" and record["steps_trained"] == 100, name


@pytest.mark.slow
def test_early_stopping_stops_each_member_where_its_solo_run_stops(tmp_path):
    """Lightning's EarlyStopping, added by a user, acts per member as it acts on a solo run."""
    stop = ["task.max_epochs=4",
            "+callbacks.stop._target_=lightning.pytorch.callbacks.EarlyStopping",
            "+callbacks.stop.monitor=val/loss", "+callbacks.stop.patience=0",
            "+callbacks.stop.min_delta=0.5"]  # fmt: skip
    args = [*[a for a in SHORT if not a.startswith("task.max_epochs")], *stop, "model=lstm,gru"]
    run_cli("-m", *args, f"hydra.sweep.dir={tmp_path / 'solo'}", cwd=tmp_path)
    run_cli("-m", *args, *ONE_LANE, f"hydra.sweep.dir={tmp_path / 'g'}", cwd=tmp_path)
    solo, grouped = jobs(tmp_path / "solo"), jobs(tmp_path / "g")
    for name, alone in solo.items():
        assert grouped[name]["grouped"]["members"] == 2
        assert alone["stopped_by"].startswith("early stopping on val/loss"), alone["stopped_by"]
        for key in ("stopped_by", "steps_trained", "epochs_trained"):
            assert grouped[name][key] == alone[key], (name, key)
        assert close(losses(grouped[name]), losses(alone)), name

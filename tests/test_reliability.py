"""Bad values, divergence, failures and debris: every one ends the way the README says, with
one line naming the value, the right exit code, and nothing left behind by a run that never
started. Runs the real entry points (Hydra, checks, exit codes), in-process where the check
happens before any work."""

from __future__ import annotations

import logging

import pytest
import torch
from hydra.utils import instantiate

from seqnets import records, summarize
from seqnets.checks import warn_long_training
from seqnets.data import mnist as mnist_module
from seqnets.errors import ConfigError
from tests.conftest import cli_in_process, load_metrics, run_cli, run_dirs, strict_json, tiny

BAD_VALUES = [
    # silently wrong before: a string "false" trained a bidirectional model
    (("model.bidirectional='false'",), "model.bidirectional='false'", "true or false"),
    (("model.bidirectional=maybe",), "model.bidirectional='maybe'", "true or false"),
    (("+lr=0.1",), "'+lr=0.1'", "nothing reads 'lr'"),
    (("+task.learning_rate=0.1",), "'+task.learning_rate=0.1'", "nothing reads"),
    (("+model.widht=3",), "'+model.widht=3'", "takes no argument 'widht'"),
    (("task.gradient_clip=-1",), "task.gradient_clip=-1", ">= 0"),
    # tracebacks before
    (("seed=-1",), "seed=-1", "0..4294967295"),
    (("seed=4294967296",), "seed=4294967296", "0..4294967295"),
    (("seed=1.5",), "seed=1.5", "integer"),
    (("task.lr=fast",), "task.lr='fast'", "> 0"),
    (("task.lr=inf",), "task.lr=inf", "finite"),
    (("l2=abc",), "l2='abc'", ">= 0"),
    (("l2=nan",), "l2=nan", "finite"),
    (("trainer.max_epochs=0",), "trainer.max_epochs=0", ">= 1"),
    (("trainer.max_epochs=-1",), "trainer.max_epochs=-1", ">= 1"),
    (("trainer.max_epochs=40",), "trainer.max_epochs=40", "task.max_epochs"),
    (("trainer.limit_train_batches=0",), "trainer.limit_train_batches=0", ">= 1"),
    (("trainer.limit_val_batches=1.5",), "trainer.limit_val_batches=1.5", "<= 1"),
    (("task.weight_decay=-1",), "task.weight_decay=-1", ">= 0"),
    (("scheduler.pct_start=1.5",), "scheduler.pct_start=1.5", "< 1"),
    (("model.dropout=abc",), "model.dropout='abc'", ">= 0 and < 1"),
    (("model.forget_bias=abc",), "model.forget_bias='abc'", "finite number"),
    (("task.monitor=val/accuracy",), "task.monitor='val/accuracy'", "val/loss, val/acc"),
    (("model.hidden=1000000000",), "model.hidden=1000000000", "GiB"),
    (("model.hidden=0",), "model.hidden=0", ">= 1"),
    (("model.num_layers=0",), "model.num_layers=0", ">= 1"),
    (("model.cell=transformer",), "model.cell='transformer'", "rnn, lstm, gru"),
    (("optimizer.lr=-0.1",), "optimizer.lr=-0.1", "> 0"),
    (("task.K=5",), "task.K=5", "task.min_len=3"),
    (("task.K=0",), "task.K=0", "1..3"),
    (("task.min_len=5", "task.max_len=4"), "min 5 > max 4", "min <= max"),
    (("threads=0",), "threads=0", ">= 1"),
    (("steps_per_call=20",), "'steps_per_call=20' is not allowed", "one step"),
    (("loop=fast",), "'loop=fast' is not allowed", "Lightning's own loop"),
    (("sweep.resume=maybe",), "sweep.resume='maybe'", "true or false"),
    (("sweep.retrain=[crashed]",), "sweep.retrain='crashed'", "failed, diverged"),
    (("sweep.stale_after_s=10",), "sweep.stale_after_s=10", ">= 60"),
    (("sweep.resume=true", "trainer=ddp"), "trainer.strategy='ddp'", "each DDP process"),
]


def assert_one_line(said: str, *fragments: str) -> None:
    lines = [line for line in said.splitlines() if line.strip()]
    assert len(lines) == 1, said
    assert lines[0].startswith("seqnets: error: "), said
    for fragment in fragments:
        assert fragment in lines[0], said


@pytest.mark.parametrize(("args", "value", "allowed"), BAD_VALUES)
def test_bad_value_one_line_exit_2_nothing_left(tmp_path, capsys, args, value, allowed):
    code, said = cli_in_process(*tiny("task=remember", *args), cwd=tmp_path, capsys=capsys)
    assert code == 2
    assert_one_line(said, value, allowed)
    assert not (tmp_path / "outputs").exists()  # checked before Hydra made a run directory


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (
            ("task=binary_add", "task.loss=hinge"),
            "task.loss='hinge' is not allowed: choose one of ce, mse",
        ),
        (("task=binary_add", "task.train_len=0"), "task.train_len (min)=0"),
        (("task=binary_add", "task.train_len=[6,2]"), "min 6 > max 2"),
        (
            ("task=mnist", "paths.data_dir=/nonexistent/x", "task.datamodule.download=false"),
            "MNIST was not found",
        ),
    ],
)
def test_bad_task_values(tmp_path, capsys, args, fragment):
    code, said = cli_in_process(*tiny(*args), cwd=tmp_path, capsys=capsys)
    assert code == 2
    assert_one_line(said, fragment)
    assert not (tmp_path / "outputs").exists()


@pytest.mark.parametrize(
    ("args", "options"),
    [
        (("debug=fats",), ["debug/fats", "fast"]),  # optional defaults used to hide typos
        (("experiment=mnist/nope",), ["Could not find 'experiment/mnist/nope'"]),
        (("task=nope",), ["task/nope", "binary_add", "mnist", "remember"]),
        (("model=nope",), ["model/nope", "gru", "lstm", "rnn"]),
        (("lr=0.1",), ["lr", "+lr=0.1"]),
    ],
)
def test_names_hydra_cannot_compose_exit_2(tmp_path, capsys, args, options):
    code, said = cli_in_process(*tiny(*args), cwd=tmp_path, capsys=capsys)
    assert code == 2
    for option in options:
        assert option in said, said
    assert "Traceback" not in said
    assert not (tmp_path / "outputs").exists()


def test_sweep_with_a_bad_value_runs_nothing_and_names_it(tmp_path, capsys):
    code, said = cli_in_process(
        "-m", *tiny("task=remember", "model.hidden=5,0,10"), cwd=tmp_path, capsys=capsys
    )
    assert code == 2
    assert "job 1 (" in said and "model.hidden=0 is not allowed" in said
    assert "nothing was run: 1 of 3 jobs are invalid" in said
    assert not (tmp_path / "outputs").exists()


def test_ddp_refused_in_a_sweep(tmp_path, capsys):
    code, said = cli_in_process(
        "-m", *tiny("task=remember", "trainer=ddp", "seed=0,1"), cwd=tmp_path, capsys=capsys
    )
    assert code == 2 and "not allowed in a sweep" in said


DIVERGE = ("task=remember", "model.hidden=2", "task.gradient_clip=0", "scheduler=none")


def test_divergence_stops_the_run_and_is_recorded(tmp_path):
    proc = run_cli(
        *tiny(*DIVERGE, "task.lr=1e30", "trainer.limit_train_batches=40"), cwd=tmp_path, check=False
    )
    assert proc.returncode == 1
    said = [line for line in proc.stderr.splitlines() if line.startswith("seqnets:")]
    assert len(said) == 1 and "diverged" in said[0] and "at step" in said[0], proc.stderr[-2000:]
    (run,) = run_dirs(tmp_path)
    metrics = load_metrics(run)  # strict JSON: NaN would fail to parse
    assert metrics["status"] == "diverged" and metrics["test"] == {}
    step = metrics["diverged"]["step"]
    assert 1 <= step < 40 and metrics["steps_trained"] == step  # stopped there, not at the end
    assert metrics["diverged"]["value"] == "nan"
    assert not list((run / "checkpoints").glob("best*.ckpt"))  # no checkpoint of NaN weights
    assert None in [loss for _, loss in metrics["train_loss_steps"]]  # the bad value, as null
    row = summarize.describe(records.read_run(run))
    assert row["status"].startswith("**diverged**")


def test_sweep_with_a_diverging_job_finishes_the_others(tmp_path):
    proc = run_cli(
        "-m",
        *tiny(*DIVERGE, "task.lr=1e30,1e-2", "trainer.limit_train_batches=40"),
        cwd=tmp_path,
        check=False,
    )
    assert proc.returncode == 1
    runs = {load_metrics(d)["config"]["task"]["lr"]: load_metrics(d) for d in run_dirs(tmp_path)}
    assert runs[1e30]["status"] == "diverged" and runs[0.01]["status"] == "completed"
    assert "test/acc" in runs[0.01]["test"]
    assert "sweep finished: 1 of 2 jobs completed" in proc.stderr
    assert "0_remember_lstm_h2: diverged" in proc.stderr


def test_a_crash_is_recorded_as_failed(tmp_path, capsys, monkeypatch):
    from seqnets.models.module import SequenceModule

    def broken(self, batch):  # both training loops compute every step's losses here
        raise RuntimeError("kaboom")

    monkeypatch.setattr(SequenceModule, "training_losses", broken)
    code, said = cli_in_process(*tiny("task=remember"), cwd=tmp_path, capsys=capsys)
    assert code == 1
    assert "the run failed (RuntimeError: kaboom)" in said
    (run,) = run_dirs(tmp_path)
    metrics = strict_json(run / "metrics.json")
    assert metrics["status"] == "failed" and "kaboom" in metrics["error"]
    assert records.read_run(run)["status"] == "failed"


def test_failed_download_leaves_nothing(tmp_path, monkeypatch):
    def no_network(self):
        raise OSError("Name or service not known")

    monkeypatch.setattr(mnist_module.MNIST, "download", no_network)
    root = tmp_path / "fresh" / "data"
    with pytest.raises(ConfigError, match="download failed"):
        mnist_module.load_mnist(root, download=True)
    assert not (tmp_path / "fresh").exists()


def test_run_dir_without_metrics_is_unfinished(tmp_path):
    (tmp_path / "run" / ".hydra").mkdir(parents=True)
    assert records.read_run(tmp_path / "run")["status"] == records.UNFINISHED


def test_strict_json_writer_refuses_and_converts_non_finite(tmp_path):
    path = records.write_metrics(tmp_path, {"a": float("nan"), "b": [float("inf"), 1.0]})
    assert strict_json(path) == {"a": None, "b": [None, 1.0]}
    with pytest.raises(ValueError, match="not strict JSON"):
        records.loads_strict('{"a": NaN}')


@pytest.mark.parametrize(
    ("overrides", "longest"),
    [
        (("task=binary_add", "task.train_len=10000"), 10000),
        (("task=remember", "task.max_len=300"), 300),
    ],
)
def test_long_training_length_warns(compose_cfg, caplog, overrides, longest):
    """Whichever task setting makes the training sequences long."""
    cfg = compose_cfg(*overrides)
    with caplog.at_level(logging.WARNING):
        warn_long_training(instantiate(cfg.task.datamodule))
    assert f"up to {longest} steps" in caplog.text and "minutes" in caplog.text


def test_memory_estimate_matches_the_real_parameter_count():
    from seqnets.models.backbone import CELLS, RecurrentBackbone, parameter_count

    for cell in CELLS:
        net = RecurrentBackbone(7, cell=cell, hidden=6, num_layers=2, bidirectional=True)
        assert parameter_count(7, cell, 6, 2, True) == sum(p.numel() for p in net.parameters())


def test_no_thread_oversubscription_side_by_side():
    from seqnets.runtime import available_cores, resolve_threads

    joblib = {"_target_": "hydra_plugins.hydra_joblib_launcher.joblib_launcher.JoblibLauncher"}
    assert resolve_threads(None, joblib | {"n_jobs": 2}) == max(1, available_cores() // 2)
    assert resolve_threads(None, joblib | {"n_jobs": -1}) == 1
    assert resolve_threads(3) == 3
    assert resolve_threads(None, None, processes=2) == max(1, available_cores() // 2)
    torch.set_num_threads(torch.get_num_threads())  # unchanged by the above


def full_disk(monkeypatch, name: str = records.METRICS) -> None:
    """Writes of ``name`` (through its temporary file) fail as on a full disk."""
    import errno
    from pathlib import Path

    write = Path.write_text

    def failing(self, *args, **kwargs):
        if self.name == f"{name}.tmp":
            write(self, "{", **kwargs)  # a part written, as a full disk leaves it
            raise OSError(errno.ENOSPC, "No space left on device", str(self))
        return write(self, *args, **kwargs)

    monkeypatch.setattr(Path, "write_text", failing)


def test_a_full_disk_keeps_the_previous_record_and_leaves_no_debris(tmp_path, monkeypatch):
    records.write_metrics(tmp_path, {"status": "completed", "test": {"test/acc": 0.5}})
    full_disk(monkeypatch)
    with pytest.raises(records.WriteError, match="No space left on device") as raised:
        records.write_metrics(tmp_path, {"status": "completed", "test": {"test/acc": 0.9}})
    assert str(tmp_path / "metrics.json") in str(raised.value)
    assert load_metrics(tmp_path)["test"] == {"test/acc": 0.5}  # nothing already written lost
    assert sorted(p.name for p in tmp_path.iterdir()) == ["metrics.json"]


def test_a_full_disk_ends_a_run_with_one_line(tmp_path, monkeypatch, capsys):
    full_disk(monkeypatch)
    args = tiny("task=remember", "model.hidden=3", "callbacks.analysis.inside=false")
    code, err = cli_in_process(*args, cwd=tmp_path, capsys=capsys)
    assert code == 1
    (line,) = [line for line in err.splitlines() if line.startswith("seqnets:")]
    assert line.startswith("seqnets: error: could not write ") and "metrics.json" in line
    assert "No space left on device" in line and "Traceback" not in err
    (run,) = run_dirs(tmp_path)
    assert not list(run.rglob("*.tmp"))

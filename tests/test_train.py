"""End-to-end runs of the real CLI: real Hydra composition and multirun, real Trainer runs of a
few batches, real MNIST, real TensorBoard event files read back."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from seqnets import summarize
from seqnets.train import build
from tests.conftest import CONF, TINY, load_metrics, needs_mnist, run_cli, run_dirs, run_one


def scalar_tags(run_dir: Path) -> set[str]:
    events = EventAccumulator(str(run_dir / "tensorboard"))
    events.Reload()
    return set(events.Tags()["scalars"])


@needs_mnist
def test_mnist_run_writes_metrics_tensorboard_and_checkpoint(tmp_path):
    run, metrics = run_one("task=mnist", "model=lstm", "model.hidden=16", *TINY, cwd=tmp_path)
    assert (run / ".hydra" / "config.yaml").exists()
    assert metrics["status"] == "completed"
    # the logged test accuracy is the confusion matrix's, and the classification report's
    matrix = torch.tensor(metrics["confusion_matrix"])
    assert matrix.sum() == 2000  # every test image of the 2 batches, counted once
    accuracy = metrics["test"]["test/acc"]
    assert accuracy == pytest.approx(float(matrix.trace() / matrix.sum()), abs=1e-6)
    assert accuracy == pytest.approx(metrics["classification_report"]["accuracy"], abs=1e-6)
    assert metrics["num_parameters"] == 4 * (16 * 28 + 16 * 16 + 2 * 16) + 16 * 10 + 10
    assert metrics["history"][0].keys() >= {"train/loss", "train/acc", "val/loss", "val/acc"}
    assert len(metrics["train_loss_steps"]) == 5
    assert metrics["train_time_s"] > 0 and metrics["test_time_s"] > 0
    assert metrics["versions"]["torch"] and metrics["config"]["model"]["hidden"] == 16
    assert len(metrics["confusion_matrix"]) == 10
    assert metrics["classification_report"]["macro avg"]["support"] == 2000
    assert [s["true"] for s in metrics["samples"]] == list(range(10))
    assert {
        "train/loss_step",
        "train/loss",
        "train/acc",
        "val/acc",
        "val/loss",
        "test/acc",
        "test/loss",
    } <= scalar_tags(run)
    for figure in ("confusion_matrix", "samples", "confused_pairs", "inside_mnist_rows"):
        assert (run / "figures" / f"{figure}.png").read_bytes()[:4] == b"\x89PNG", figure
    rows = metrics["inside"]["rows"]  # what the network knows after each row
    assert rows["rows"] == list(range(1, 29)) and len(rows["acc"]) == 28
    assert "hparams/test/acc" in scalar_tags(run)  # HPARAMS carries the real final metric
    (best,) = (run / "checkpoints").glob("best*.ckpt")
    checkpoint = torch.load(best, weights_only=True, map_location="cpu")
    config = checkpoint["hyper_parameters"]["config"]
    assert config["task"]["name"] == "mnist" and config["model"]["cell"] == "lstm"
    assert not (tmp_path / "lightning_logs").exists()


@pytest.mark.slow
@needs_mnist
def test_same_seed_same_metrics(tmp_path):
    args = ("task=mnist", "model=gru", "model.hidden=8", "seed=3", *TINY)
    run_cli(*args, cwd=tmp_path)
    run_cli(*args, cwd=tmp_path)
    first, second = (load_metrics(d) for d in run_dirs(tmp_path))
    assert first["test"] == second["test"] and first["history"] == second["history"]
    assert first["train_loss_steps"] == second["train_loss_steps"]


@pytest.mark.slow
@needs_mnist
def test_bidirectional_stacked_variant(tmp_path):
    _run, metrics = run_one(
        "model=gru",
        "model.bidirectional=true",
        "model.num_layers=2",
        "model.hidden=8",
        *TINY,
        cwd=tmp_path,
    )
    # GRU: 3 gates x (W_ih, W_hh, b_ih, b_hh) per direction; layer 2 reads both directions.
    layer1 = 3 * (8 * 28 + 8 * 8 + 2 * 8)
    layer2 = 3 * (8 * 16 + 8 * 8 + 2 * 8)
    assert metrics["num_parameters"] == 2 * (layer1 + layer2) + 16 * 10 + 10
    assert metrics["config"]["model"]["bidirectional"] is True


@pytest.mark.slow
@needs_mnist
def test_mnist_multirun_three_cells_three_dirs(tmp_path):
    run_cli(
        "-m",
        "task=mnist",
        "model=rnn,lstm,gru",
        "model.hidden=64",
        "trainer.max_epochs=1",
        *TINY,
        cwd=tmp_path,
    )
    runs = run_dirs(tmp_path)
    assert len(runs) == 3 and len({r.name for r in runs}) == 3
    assert sorted(load_metrics(r)["cell"] for r in runs) == ["gru", "lstm", "rnn"]


def test_users_binary_add_command(tmp_path):
    # The users' own command as written, with the tiny-run overrides before its -m.
    run, metrics = run_one(
        "task=binary_add", "model=lstm", "model.hidden=5", *TINY, "-m", cwd=tmp_path
    )
    assert metrics["task"] == "binary_add" and metrics["hidden"] == 5
    assert {"test/bit_acc", "test/exact_acc"} <= set(metrics["test"])
    rows = metrics["by_length"]
    assert [r["length"] for r in rows] == list(range(1, 101))
    assert all(r["samples"] >= 100 and 0 <= r["exact_acc"] <= r["bit_acc"] <= 1 for r in rows)
    assert "length/bit_acc" in scalar_tags(run)
    assert (run / "figures" / "accuracy_vs_length.png").exists()
    assert " + " in metrics["samples"][0]["text"] and metrics["samples"][0]["bits"] == 20


@pytest.mark.slow
def test_remember_run_without_best_checkpoint(tmp_path):
    _run, metrics = run_one(
        "task=remember",
        "model=gru",
        "model.hidden=5",
        "task.K=2",
        "callbacks.model_checkpoint=null",
        *TINY,
        "trainer.max_epochs=3",
        "trainer.limit_train_batches=30",
        cwd=tmp_path,
    )
    assert [r["length"] for r in metrics["by_length"]] == list(range(2, 21))
    sample = metrics["samples"][0]
    assert sample["K"] == 2 and sample["true"] == sample["sequence"][1]
    # No best checkpoint: sweepers still get the monitored value, the best of three epochs.
    assert metrics["best_checkpoint"] is None and len(metrics["history"]) == 3
    assert metrics["best_val"] == min(row["val/loss"] for row in metrics["history"])


@pytest.mark.slow
def test_seed_changes_the_run_and_constant_rate_works(tmp_path):
    """Another seed gives another run; scheduler=none (the reports' constant rate) trains too."""
    run_cli(
        "-m", "task=remember", "model.hidden=5", *TINY, "seed=0,1", "scheduler=onecycle,none",
        cwd=tmp_path,
    )  # fmt: skip
    runs = {}
    for run in run_dirs(tmp_path):
        metrics = load_metrics(run)
        runs[metrics["seed"], metrics["config"]["scheduler"] is None] = metrics
    first, second, constant = runs[0, False], runs[1, False], runs[0, True]
    assert first["train_loss_steps"] != second["train_loss_steps"]
    assert first["test"] != second["test"]
    assert constant["status"] == "completed"
    assert constant["train_loss_steps"] != first["train_loss_steps"]


@pytest.mark.slow
@pytest.mark.parametrize(
    ("args", "grid"),
    [
        (("task=remember", "model=rnn,lstm,gru", "model.hidden=2,5,10"), 9),
        (("task=binary_add", "model=lstm", "model.hidden=3,5", "task.loss=ce,mse"), 4),
    ],
)
def test_section_sweeps(tmp_path, capsys, args, grid):
    run_cli("-m", *args, *TINY, "task.eval_samples=100", "task.max_eval_len=20", cwd=tmp_path)
    runs = run_dirs(tmp_path)
    assert len(runs) == grid
    assert all((r / "metrics.json").exists() for r in runs)
    summarize.main([str(tmp_path / "outputs")])  # the sweep's table, from its files alone
    lines = capsys.readouterr().out.splitlines()
    rows = [line for line in lines if line.startswith(("| remember |", "| binary_add |"))]
    assert len(rows) == grid  # one row per run; no seed groups, as every run differs
    assert any("@20" in line for line in lines)


EXPERIMENTS = sorted(
    p.relative_to(CONF / "experiment").with_suffix("").as_posix()
    for p in (CONF / "experiment").rglob("*.yaml")
)


@pytest.mark.parametrize("name", EXPERIMENTS)
def test_every_experiment_builds(compose_cfg, name):
    cfg = compose_cfg(f"experiment={name}")
    datamodule, module, _ = build(cfg)
    assert datamodule.name == cfg.task.name == name.split("/")[0]
    assert module.backbone.cell == cfg.model.cell


def test_missing_mnist_offline(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    proc = run_cli(
        f"paths.data_dir={empty}",
        "task.datamodule.download=false",
        *TINY,
        cwd=tmp_path,
        check=False,
    )
    assert proc.returncode == 2
    assert str(empty / "MNIST" / "raw") in proc.stderr and "SEQNETS_DATA_DIR" in proc.stderr


@pytest.mark.slow
def test_users_binary_add_command_learns_an_adder(tmp_path):
    """The design card's command, exactly as written, trains an adder that is exact at every
    length from 1 to 100 (a full run: about a minute; `make test-full`)."""
    _, metrics = run_one("task=binary_add", "model=lstm", "model.hidden=5", "-m", cwd=tmp_path)
    rows = metrics["by_length"]
    assert [r["length"] for r in rows] == list(range(1, 101))
    worst = min(rows, key=lambda r: r["exact_acc"])
    assert worst["exact_acc"] >= 0.99, worst

"""Checkpoints in use: resuming (after a planned stop and after Ctrl-C) gives the same final
metrics as a run never stopped; evaluate and predict rebuild everything from a checkpoint
alone; and every way a checkpoint or an input can be bad gets one clear line."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import pytest
import torch

from seqnets.checkpoints import CheckpointError, check_targets, load_checkpoint
from tests import gate
from tests.conftest import (
    DATA_DIR,
    Running,
    cli_in_process,
    load_metrics,
    needs_mnist,
    run_cli,
    strict_json,
    tiny,
    user_code_env,
)

# Five short epochs of the remember task: enough to resume in the middle of.
SHORT = [
    "task=remember",
    "model.hidden=5",
    "task.max_epochs=5",
    "task.train_batches=60",
    "task.eval_samples=50",
    "task.max_eval_len=12",
    "trainer=cpu",
    "callbacks.progress_bar.refresh_rate=0",
    "callbacks.analysis.inside=false",
]


def run_in(tmp_path: Path, name: str, *args: str) -> Path:
    run_cli(*SHORT, *args, f"hydra.run.dir={tmp_path / name}", cwd=tmp_path)
    return tmp_path / name


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory) -> dict:
    folder = tmp_path_factory.mktemp("full")
    return load_metrics(run_in(folder, "full"))


def same_result(resumed: dict, full: dict) -> None:
    assert resumed["test"] == full["test"]
    assert resumed["best_val"] == full["best_val"]
    assert resumed["steps_trained"] == full["steps_trained"] == 5 * 60
    assert resumed["history"] == full["history"]  # every epoch, before and after the stop
    assert resumed["train_loss_steps"] == full["train_loss_steps"]


@pytest.mark.slow
def test_resume_after_a_planned_stop(tmp_path, uninterrupted):
    part = run_in(tmp_path, "part", "trainer.max_epochs=2")
    assert load_metrics(part)["epochs_trained"] == 2
    proc = run_cli(
        f"ckpt_path={part}", f"hydra.run.dir={tmp_path / 'resumed'}", cwd=tmp_path, check=False
    )
    # the checkpoint's run already trained its 2 epochs: the user is told how to go on
    assert proc.returncode == 2 and "trainer.max_epochs=N with N > 2" in proc.stderr
    resumed = run_cli(
        f"ckpt_path={part}",
        "trainer.max_epochs=5",
        f"hydra.run.dir={tmp_path / 'resumed'}",
        cwd=tmp_path,
    )
    assert resumed.returncode == 0
    metrics = load_metrics(tmp_path / "resumed")
    same_result(metrics, uninterrupted)
    assert metrics["resumed_from"].endswith("last.ckpt")
    assert sorted(p.name for p in (part / "checkpoints").iterdir()) == [
        "best-epoch01.ckpt",
        "last.ckpt",
    ]  # the original run's files are untouched


# Mid-epoch: the third epoch (of 60 steps each) starts at step 120.
STOP_AT = 150


@pytest.mark.slow
def test_sigterm_mid_epoch_then_resume(tmp_path, uninterrupted):
    # SIGTERM, as timeout, docker stop and cluster schedulers send it, does what Ctrl-C does
    # (one handler for both, seqnets.signals): a resumable checkpoint, the same final
    # metrics as a run never stopped. The gate holds the run at step STOP_AT until the signal
    # has come, so it lands there on a machine of any speed.
    part = tmp_path / "part"
    args = [*SHORT, *gate.overrides(STOP_AT), f"hydra.run.dir={part}"]
    with Running(*args, cwd=tmp_path, env=user_code_env() | gate.armed()) as run:
        run.wait_for(gate.HOLDING)
        run.signal(signal.SIGTERM)
        assert run.finish() == 143, run.tail()
    saved = part / "checkpoints" / "interrupted.ckpt"
    assert f"resume with: python -m seqnets.train ckpt_path={saved}" in run.output
    record = load_metrics(part)
    assert record["status"] == "interrupted" and record["signal"] == "SIGTERM"
    # stopped where it was asked, before the step's update: none lost, none trained twice
    assert torch.load(saved, weights_only=True)["global_step"] == STOP_AT
    run_cli(
        f"ckpt_path={saved}",
        f"hydra.run.dir={tmp_path / 'resumed'}",
        cwd=tmp_path,
        env=user_code_env(),
    )
    same_result(load_metrics(tmp_path / "resumed"), uninterrupted)


@pytest.mark.slow
@pytest.mark.parametrize(("signum", "code"), [(signal.SIGTERM, 143), (signal.SIGINT, 130)])
def test_a_signal_stops_the_test_analysis(tmp_path, signum, code):
    # Lengths up to 30,000 make the analysis hours long on any machine: a signal sent once it
    # has started must end it (within STOP_S, a backstop), not wait for it.
    args = tiny(
        "task=binary_add", "model.hidden=4", "task.max_eval_len=30000", "budget_minutes=null"
    )
    run_dir = tmp_path / "run"
    with Running(*args, f"hydra.run.dir={run_dir}", cwd=tmp_path) as run:
        run.wait_for("scores against length (30000 lengths): started")
        run.signal(signum)
        assert run.finish() == code, run.tail()
    record = load_metrics(run_dir)
    assert record["status"] == "interrupted" and record["signal"] == signum.name
    assert "by_length" not in record, "the study ran to its end"
    # training was over: the run resumes from its last checkpoint (nothing left to train)
    assert record["checkpoint"].endswith("last.ckpt")


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> dict[str, Path]:
    """Tiny real runs of each synthetic task, tested on their whole test sets (as evaluate
    scores them)."""
    folder = tmp_path_factory.mktemp("trained")
    runs = {}
    for task in ("remember", "binary_add"):
        args = tiny(
            f"task={task}",
            "model.hidden=4",
            "task.eval_samples=40",
            "task.max_eval_len=12",
            "trainer.limit_test_batches=null",
        )
        run_cli(*args, f"hydra.run.dir={folder / task}", cwd=folder)
        runs[task] = folder / task
    return runs


def test_evaluate_rebuilds_from_the_checkpoint_alone(tmp_path, trained, capsys):
    code, said = cli_in_process(
        f"ckpt_path={trained['binary_add']}",
        "lengths=[2,30]",
        "eval_samples=64",
        module="seqnets.evaluate",
        cwd=tmp_path,
        capsys=capsys,
    )
    assert code == 0, said
    (out,) = (tmp_path / "outputs" / "evaluate").rglob("metrics.json")
    metrics = strict_json(out)
    original = load_metrics(trained["binary_add"])
    assert metrics["test"] == original["test"]  # same weights, same test set
    assert [r["length"] for r in metrics["by_length"]] == list(range(2, 31))
    assert metrics["by_length"][0]["samples"] == 64
    figures = out.parent / "figures"
    for name in ("inside_carry_units", "inside_carry_trace", "accuracy_vs_length"):
        assert (figures / f"{name}.png").read_bytes()[:4] == b"\x89PNG", name
    carry = metrics["inside"]["carry"]
    assert carry["best_unit"] in carry["r"] and -1.0 <= carry["best_r"] <= 1.0


def test_evaluate_draws_the_remember_state_figures(tmp_path, trained, capsys):
    code, said = cli_in_process(
        f"ckpt_path={trained['remember']}", module="seqnets.evaluate", cwd=tmp_path, capsys=capsys
    )
    assert code == 0, said
    (out,) = (tmp_path / "outputs" / "evaluate").rglob("metrics.json")
    inside = strict_json(out)["inside"]
    assert len(inside["pca"]["explained_variance_ratio"]) == 2
    assert inside["hold"]["steps"][0] == 3 and len(inside["hold"]["readout_acc"]) == len(
        inside["hold"]["steps"]
    )
    for name in ("inside_remember_pca", "inside_remember_hold"):
        assert (out.parent / "figures" / f"{name}.png").read_bytes()[:4] == b"\x89PNG"


def test_predict_digit_lists_and_sums(tmp_path, trained, capsys):
    code, said = cli_in_process(
        f"ckpt_path={trained['remember']}",
        "input=[[6,8,0,2,8,7],[1,x,3],[4,5]]",
        module="seqnets.predict",
        cwd=tmp_path,
        capsys=capsys,
    )
    assert code == 2  # two of the three inputs are bad: listed, the good one still predicted
    assert "[1, 'x', 3]" in said and "every element must be a digit 0-9" in said
    assert "fewer than K=3" in said
    (out,) = (tmp_path / "outputs" / "predict").rglob("predictions.json")
    rows = strict_json(out)["rows"]
    assert rows[0]["sequence"] == [6, 8, 0, 2, 8, 7] and rows[0]["true"] == 0
    assert " -> " in rows[0]["text"] and "error" in rows[1] and "error" in rows[2]

    code, said = cli_in_process(
        f"ckpt_path={trained['binary_add']}",
        "input=['263604+493034','0b1011+0b110','12+1a']",
        module="seqnets.predict",
        cwd=tmp_path,
        capsys=capsys,
    )
    assert code == 2 and "'1a' is not allowed" in said
    (out,) = sorted((tmp_path / "outputs" / "predict").rglob("predictions.json"))[-1:]
    rows = strict_json(out)["rows"]
    assert rows[0]["true"] == 756638 and rows[1]["true"] == 0b1011 + 0b110
    # 493034 has 19 bits: the sum is read over 20 steps
    assert len(rows[0]["pred_bits"]) == len(rows[0]["true_bits"]) == 20
    assert rows[0]["marks"].count("^") == rows[0]["wrong_bits"]


@pytest.mark.parametrize(
    ("make", "fragment"),
    [
        (lambda d: d / "missing.ckpt", "does not exist"),
        (lambda d: _write(d / "empty.ckpt", b""), "not a readable checkpoint"),
        (
            lambda d: _write(d / "text.ckpt", b"hello, not a checkpoint"),
            "not a readable checkpoint",
        ),
        (lambda d: _save(d / "weights.ckpt", {"w": torch.zeros(2)}), "not a seqnets checkpoint"),
        (lambda d: d, "without checkpoints"),
    ],
)
def test_bad_checkpoints_one_line(tmp_path, capsys, make, fragment):
    path = make(tmp_path)
    for module in ("seqnets.evaluate", "seqnets.predict", "seqnets.train"):
        extra = ["input=[1,2,3]"] if module == "seqnets.predict" else []
        code, said = cli_in_process(
            f"ckpt_path={path}", *extra, module=module, cwd=tmp_path, capsys=capsys
        )
        assert code == 2, (module, said)
        lines = [line for line in said.splitlines() if line.strip()]
        assert len(lines) == 1 and fragment in lines[0], (module, said)
    assert not (tmp_path / "outputs").exists()


def _write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


def _save(path: Path, obj: object) -> Path:
    torch.save(obj, path)
    return path


def test_truncated_checkpoint(tmp_path, trained):
    good = next((trained["remember"] / "checkpoints").glob("best*.ckpt"))
    cut = _write(tmp_path / "cut.ckpt", good.read_bytes()[: good.stat().st_size // 2])
    with pytest.raises(CheckpointError, match="not a readable checkpoint"):
        load_checkpoint(cut)


def test_foreign_target_refused(tmp_path, trained, capsys):
    """A checkpoint is code: a hand-edited config naming os.system is refused, not run."""
    good = next((trained["remember"] / "checkpoints").glob("best*.ckpt"))
    checkpoint = torch.load(good, weights_only=True)
    checkpoint["hyper_parameters"]["config"]["callbacks"]["evil"] = {
        "_target_": "os.system",
        "command": "touch pwned",
    }
    evil = _save(tmp_path / "evil.ckpt", checkpoint)
    for module in ("seqnets.evaluate", "seqnets.train"):
        code, said = cli_in_process(f"ckpt_path={evil}", module=module, cwd=tmp_path, capsys=capsys)
        assert code == 2 and "'os.system' at callbacks.evil" in said, said
    assert not (tmp_path / "pwned").exists()
    check_targets({"optimizer": {"_target_": "torch.optim.AdamW"}})  # allowed


def test_a_cell_by_import_path_is_a_target(monkeypatch):
    """``model.cell=mycells.IndRNN`` is imported and built when a checkpoint is rebuilt, so it
    is refused unless trusted, as a task's ``_target_`` is; built-in names need no trust."""
    backbone = "seqnets.models.backbone.RecurrentBackbone"
    check_targets({"model": {"_target_": backbone, "cell": "lstm"}})
    check_targets({"model": {"_target_": backbone, "cell": "seqnets.models.cells.GRU"}})
    with pytest.raises(CheckpointError, match=r"'mycells.IndRNN' at model.cell.*=mycells\."):
        check_targets({"model": {"_target_": backbone, "cell": "mycells.IndRNN"}})
    monkeypatch.setenv("SEQNETS_TRUSTED_TARGETS", "mycells.")
    check_targets({"model": {"_target_": backbone, "cell": "mycells.IndRNN"}})


@pytest.mark.slow
@needs_mnist
def test_predict_own_images(tmp_path, capsys):
    """Images as a user supplies them, with a bad one among them: every good one predicted."""
    import numpy as np
    from PIL import Image

    from seqnets.data.images import redraw_as_user, save_user_image
    from seqnets.data.mnist import load_mnist

    run_cli(
        *tiny("task=mnist", "model.hidden=16"), f"hydra.run.dir={tmp_path / 'run'}", cwd=tmp_path
    )
    test = load_mnist(DATA_DIR)
    folder = tmp_path / "mine"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for i in range(3):
        digit, label = test["test_x"][i], int(test["test_y"][i])
        save_user_image(redraw_as_user(digit, rng), "jpg", folder / f"{label}_mine_{i}")
    (folder / "5_broken.png").write_bytes(b"not an image")
    Image.new("L", (60, 40), 255).save(folder / "blank.png")  # white paper, no ink
    code, said = cli_in_process(
        f"ckpt_path={tmp_path / 'run'}",
        f"input={folder}",
        module="seqnets.predict",
        cwd=tmp_path,
        capsys=capsys,
    )
    assert code == 2 and "5_broken.png" in said and "blank.png" in said
    (out,) = (tmp_path / "outputs" / "predict").rglob("predictions.json")
    result = strict_json(out)
    done = [r for r in result["rows"] if "pred" in r]
    assert len(done) == 3 and all(0 <= r["confidence"] <= 1 for r in done)
    assert result["labelled"] == 3 and result["accuracy"] is not None
    assert (out.parent / "predictions.png").read_bytes()[:4] == b"\x89PNG"


def test_the_best_checkpoint_is_found_by_score_not_by_name(compose_cfg, tmp_path):
    from seqnets.checkpoints import find_checkpoint
    from seqnets.train import train

    # Three kept, ranked by the highest validation loss: the best is an early epoch, whose
    # file sorts before the newer ones.
    cfg = compose_cfg(
        *tiny("task=remember", "model.hidden=3", "callbacks.analysis=null"),
        "trainer.max_epochs=3",
        "task.max_epochs=3",
        "task.monitor_mode=max",
        "callbacks.model_checkpoint.save_top_k=3",
    )
    metrics, _ = train(cfg)
    best = Path(metrics["best_checkpoint"])
    kept = sorted((tmp_path / "checkpoints").glob("best*.ckpt"))
    assert len(kept) == 3 and best != kept[-1]
    assert find_checkpoint(tmp_path) == best
    assert find_checkpoint(tmp_path, prefer="last").name == "last.ckpt"


def limited_run(compose_cfg, out: Path, *extra: str, ckpt: Path | None = None) -> dict:
    """Two epochs of 30 remember batches (trainer.limit_train_batches), trained in process
    into ``out`` (resumed from ``ckpt`` when given); its metrics."""
    from omegaconf import open_dict

    from seqnets.train import train

    cfg = compose_cfg(
        *tiny("task=remember", "model.hidden=3", "callbacks.analysis=null"),
        "trainer.max_epochs=2",
        "task.max_epochs=2",
        "trainer.limit_train_batches=30",
        *extra,
    )
    with open_dict(cfg):
        cfg.paths.output_dir = str(out)
        cfg.ckpt_path = str(ckpt) if ckpt else None
    return train(cfg)[0]


def test_resume_mid_epoch_with_a_batch_limit(compose_cfg, tmp_path, monkeypatch):
    # A stop 20 batches into a 30-batch epoch (trainer.limit_train_batches): the resumed run
    # takes the 10 left of that epoch, not 30 more, and ends as a run never stopped.
    from seqnets import signals
    from seqnets.models.module import SequenceModule
    from seqnets.train import RunInterrupted

    def run(name: str, ckpt: Path | None = None) -> dict:
        return limited_run(compose_cfg, tmp_path / name, ckpt=ckpt)

    full = run("full")
    step = SequenceModule.training_step

    def stopped_after_20(self, batch, batch_idx):  # as a SIGTERM received during the step
        out = step(self, batch, batch_idx)
        if self.global_step == 20:
            signals.state.received = signal.SIGTERM
        return out

    monkeypatch.setattr(SequenceModule, "training_step", stopped_after_20)
    with pytest.raises(RunInterrupted) as stop:
        run("part")
    monkeypatch.undo()
    signals.install()
    resumed = run("resumed", ckpt=Path(stop.value.checkpoint))
    assert resumed["steps_trained"] == full["steps_trained"] == 60
    assert resumed["train_loss_steps"] == full["train_loss_steps"]
    assert resumed["best_val"] == full["best_val"]


def test_resume_past_max_steps_keeps_the_whole_schedule(compose_cfg, tmp_path):
    # trainer.max_steps stops a run early; the one-cycle schedule is still planned for every
    # epoch of the task, so a resumed run goes on past it instead of overrunning the schedule.
    def run(name: str, *extra: str, ckpt: Path | None = None) -> dict:
        return limited_run(compose_cfg, tmp_path / name, *extra, ckpt=ckpt)

    part = run("part", "+trainer.max_steps=20")
    assert part["steps_trained"] == 20
    resumed = run("resumed", ckpt=tmp_path / "part" / "checkpoints" / "last.ckpt")
    # Lightning counts the stopped epoch as done: the resumed run trains the second one
    assert resumed["status"] == "completed" and resumed["steps_trained"] == 50


def test_a_preempted_cluster_job_is_requeued_and_resumes_in_its_own_directory(
    tmp_path, monkeypatch, capsys
):
    # Under submitit (Hydra's SLURM launcher) a job about to be preempted or timed out gets
    # SIGUSR2, and submitit's handler requeues it and exits. The run first saves where it
    # stands; started again with the same arguments, in the same directory, it goes on.
    from seqnets.models.module import SequenceModule

    args = (
        *tiny("task=remember", "model.hidden=3", "callbacks.analysis=null"),
        "trainer.max_epochs=2",
        "task.max_epochs=2",
        "trainer.limit_train_batches=30",
    )
    code, said = cli_in_process(
        *args, f"hydra.run.dir={tmp_path / 'full'}", cwd=tmp_path, capsys=capsys
    )
    assert code == 0, said
    monkeypatch.setenv("SUBMITIT_EXECUTOR", "slurm")
    requeued = []

    def submitit(signum, frame):  # what submitit's handler does, once the job is requeued
        requeued.append(signum)
        raise SystemExit(-1)

    previous = signal.signal(signal.SIGUSR2, submitit)
    step = SequenceModule.training_step

    def preempted_at_20(self, batch, batch_idx):
        out = step(self, batch, batch_idx)
        if self.global_step == 20 and not requeued:
            os.kill(os.getpid(), signal.SIGUSR2)  # the cluster's warning, mid-epoch
        return out

    monkeypatch.setattr(SequenceModule, "training_step", preempted_at_20)
    job = tmp_path / "job"
    try:
        code, said = cli_in_process(*args, f"hydra.run.dir={job}", cwd=tmp_path, capsys=capsys)
        assert requeued == [signal.SIGUSR2] and code == -1, said
        record = load_metrics(job)
        assert record["status"] == "interrupted" and record["signal"] == "SIGUSR2"
        assert (job / "checkpoints" / "interrupted.ckpt").is_file()
        monkeypatch.setattr(SequenceModule, "training_step", step)
        code, said = cli_in_process(*args, f"hydra.run.dir={job}", cwd=tmp_path, capsys=capsys)
        assert code == 0, said
    finally:
        signal.signal(signal.SIGUSR2, previous)
    resumed, full = load_metrics(job), load_metrics(tmp_path / "full")
    assert resumed["resumed_from"].endswith("interrupted.ckpt")
    assert resumed["train_loss_steps"] == full["train_loss_steps"]
    assert resumed["test"] == full["test"] and resumed["best_val"] == full["best_val"]

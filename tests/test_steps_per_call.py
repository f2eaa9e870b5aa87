"""Several optimiser steps per call of the training step change nothing but the speed: the
same losses at every step, the same metrics, TensorBoard curves at the real steps, and
Lightning's backward hooks still honoured for whoever implements them."""

from __future__ import annotations

from pathlib import Path

import lightning as L
import pytest
from omegaconf import open_dict
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from seqnets.fastpath import plain_backward
from seqnets.train import train

# 7 batches an epoch, 2 epochs: a call of 3 steps straddles nothing, the last call is short.
RUN = (
    "task=remember",
    "model.hidden=4",
    "debug=fast",
    "trainer=cpu",
    "trainer.max_epochs=2",
    "task.max_epochs=2",
    "trainer.limit_train_batches=7",
    "task.eval_samples=40",
    "task.max_eval_len=12",
    "callbacks.analysis.inside=false",
)


class CountBackward(L.Callback):
    """Implements a backward hook, so Lightning's own backward (with its hooks) must run."""

    def __init__(self) -> None:
        self.calls = 0

    def on_after_backward(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.calls += 1


def run(compose_cfg, out: Path, *overrides: str, count: bool = False) -> tuple[dict, L.Trainer]:
    cfg = compose_cfg(*RUN, *overrides)
    with open_dict(cfg):
        cfg.paths.output_dir = str(out)  # a directory per run
        if count:
            cfg.callbacks.count = {"_target_": f"{__name__}.CountBackward"}
    metrics, objects = train(cfg)
    return metrics, objects["trainer"]


def same_training(metrics: dict, reference: dict) -> None:
    assert metrics["steps_trained"] == reference["steps_trained"] == 14
    assert metrics["train_loss_steps"] == reference["train_loss_steps"]
    assert [s for s, _ in metrics["train_loss_steps"]] == list(range(1, 15))
    assert metrics["test"] == reference["test"]
    assert metrics["best_val"] == reference["best_val"]
    for row, ref in zip(metrics["history"], reference["history"], strict=True):
        # the epoch's mean loss is summed in another order; every other value is the same
        assert row["train/loss"] == pytest.approx(ref["train/loss"], rel=1e-6)
        assert {k: v for k, v in row.items() if k != "train/loss"} == {
            k: v for k, v in ref.items() if k != "train/loss"
        }


def test_three_steps_per_call_train_exactly_as_one(compose_cfg, tmp_path):
    reference, _ = run(compose_cfg, tmp_path / "one", "steps_per_call=1")
    metrics, trainer = run(compose_cfg, tmp_path / "three", "steps_per_call=3")
    same_training(metrics, reference)
    assert plain_backward(trainer)  # nothing hooks the backward here: torch's is called
    # TensorBoard: every step's loss and learning rate at its own step (log_every_n_steps=1
    # here), the epoch curves at the step each epoch ended, not at Lightning's call count
    events = EventAccumulator(str(trainer.logger.log_dir))
    events.Reload()
    steps = {tag: [e.step for e in events.Scalars(tag)] for tag in events.Tags()["scalars"]}
    assert steps["train/loss_step"] == steps["train/lr"] == list(range(1, 15))
    assert steps["train/loss"] == steps["val/loss"] == [7, 14]
    assert "step" not in steps and "step" not in metrics["test"]


def test_backward_hooks_are_honoured(compose_cfg, tmp_path):
    reference, _ = run(compose_cfg, tmp_path / "one", "steps_per_call=1")
    metrics, trainer = run(compose_cfg, tmp_path / "three", "steps_per_call=3", count=True)
    same_training(metrics, reference)
    assert not plain_backward(trainer)
    (counter,) = [c for c in trainer.callbacks if isinstance(c, CountBackward)]
    assert counter.calls == 14  # once per step, as Lightning's backward calls it


def test_max_steps_cuts_a_call_short(compose_cfg, tmp_path):
    metrics, _ = run(compose_cfg, tmp_path, "steps_per_call=5", "+trainer.max_steps=9")
    assert metrics["steps_trained"] == 9 and len(metrics["train_loss_steps"]) == 9


def test_the_record_keeps_every_epoch_when_the_best_is_not_the_last(compose_cfg, tmp_path):
    # The "best" epoch by the highest validation loss: the first, of two. Testing loads its
    # checkpoint, and with it the history it held; the record must not stop there.
    metrics, _ = run(compose_cfg, tmp_path, "task.monitor_mode=max")
    assert metrics["best_checkpoint"].endswith("best-epoch00.ckpt")
    assert [row["epoch"] for row in metrics["history"]] == [0, 1]
    assert len(metrics["train_loss_steps"]) == metrics["steps_trained"] == 14

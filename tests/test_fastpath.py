"""Lightning's contract: every feature a user switches on works as Lightning documents it,
whether the run could take the fast path or not. Each test trains the same short run with
the default settings and with one step per call (Lightning's own loop), and compares what a
user would look at: validation steps, checkpoints, logged steps, hook calls."""

from __future__ import annotations

import logging
from pathlib import Path

import lightning as L
import pytest
from omegaconf import open_dict
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from seqnets.data.remember import RememberDataModule
from seqnets.errors import ConfigError
from seqnets.fastpath import FastSequenceModule
from seqnets.models.module import SequenceModule
from seqnets.train import build

# 20 batches an epoch, 2 epochs: one call of the fast path per epoch.
RUN = (
    "task=remember",
    "model.hidden=4",
    "debug=fast",
    "trainer=cpu",
    "trainer.max_epochs=2",
    "task.max_epochs=2",
    "trainer.limit_train_batches=20",
    "trainer.limit_val_batches=1",
    "trainer.log_every_n_steps=5",
)


class CountBatches(L.Callback):
    """A user's own callback: Lightning calls its batch hooks once per training batch."""

    def __init__(self) -> None:
        self.starts, self.ends, self.losses = 0, 0, 0

    def on_train_batch_start(self, *args) -> None:
        self.starts += 1

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        self.ends += 1
        self.losses += "loss" in outputs


class CountingRemember(RememberDataModule):
    """A DataModule with its own batch-transfer hooks, counted in training."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.before = self.after = 0

    def on_before_batch_transfer(self, batch, dataloader_idx):
        self.before += self.trainer.training
        return batch

    def on_after_batch_transfer(self, batch, dataloader_idx):
        self.after += self.trainer.training
        return super().on_after_batch_transfer(batch, dataloader_idx)


def fit(compose_cfg, out: Path, *overrides: str, extra: dict | None = None):
    """Build the run as ``python -m seqnets.train`` would, and fit it."""
    cfg = compose_cfg(*RUN, *overrides)
    with open_dict(cfg):
        cfg.paths.output_dir = str(out)
        for key, value in (extra or {}).items():
            cfg.callbacks[key] = value
    datamodule, module, trainer = build(cfg)
    trainer.fit(module, datamodule=datamodule)
    return datamodule, module, trainer


def scalar_steps(trainer: L.Trainer) -> dict[str, list[int]]:
    events = EventAccumulator(str(trainer.logger.log_dir))
    events.Reload()
    return {tag: [e.step for e in events.Scalars(tag)] for tag in events.Tags()["scalars"]}


def both(compose_cfg, tmp_path, *overrides: str, extra: dict | None = None):
    """The run with the default settings, and with one step per call."""
    default = fit(compose_cfg, tmp_path / "default", *overrides, extra=extra)
    one = fit(compose_cfg, tmp_path / "one", *overrides, "steps_per_call=1", extra=extra)
    return default, one


def test_the_default_run_takes_the_fast_path_without_a_word(compose_cfg, tmp_path, caplog):
    with caplog.at_level(logging.WARNING, logger="seqnets.fastpath"):
        _, module, trainer = fit(compose_cfg, tmp_path)
    assert type(module) is FastSequenceModule
    assert not caplog.records
    assert trainer.global_step == 40


@pytest.mark.parametrize(
    ("override", "named"),
    [
        ("+trainer.val_check_interval=0.5", "trainer.val_check_interval=0.5"),
        ("+trainer.profiler=simple", "a profiler (SimpleProfiler)"),
        ("+trainer.gradient_clip_val=0.5", "trainer.gradient_clip_val=0.5"),
    ],
)
def test_a_trainer_flag_the_fast_path_cannot_keep_falls_back_and_says_so(
    compose_cfg, tmp_path, caplog, override, named
):
    with caplog.at_level(logging.WARNING, logger="seqnets.fastpath"):
        (_, module, trainer), (_, one_module, one) = both(compose_cfg, tmp_path, override)
    assert type(module) is SequenceModule is type(one_module)
    (line,) = [r.getMessage() for r in caplog.records]  # said once, by the default run
    assert named in line and "Lightning's own loop" in line and "longer" in line
    steps = scalar_steps(trainer)
    assert steps == scalar_steps(one)
    if "val_check_interval" in override:  # validation every half epoch, at the real steps
        assert steps["val/loss"] == [10, 20, 30, 40]
    if "profiler" in override:  # one timing per batch, not one per twenty
        timed = trainer.profiler.recorded_durations["run_training_batch"]
        assert len(timed) == len(one.profiler.recorded_durations["run_training_batch"]) == 40


def test_learning_rate_monitor_logs_at_every_real_step(compose_cfg, tmp_path):
    monitor = {"_target_": "lightning.pytorch.callbacks.LearningRateMonitor"}
    (_, module, trainer), (_, _, one) = both(compose_cfg, tmp_path, extra={"lrm": monitor})
    assert type(module) is SequenceModule
    steps = scalar_steps(trainer)
    assert steps == scalar_steps(one)
    # Lightning logs the rate before the step, at the count of steps taken so far
    assert steps["lr-AdamW"] == [4, 9, 14, 19, 24, 29, 34, 39]


def batch_size(batch: dict) -> int:
    return batch["x"].shape[0]


def test_throughput_monitor_counts_every_batch(compose_cfg, tmp_path):
    monitor = {
        "_target_": "lightning.pytorch.callbacks.ThroughputMonitor",
        "batch_size_fn": {"_target_": "hydra.utils.get_method", "path": f"{__name__}.batch_size"},
    }
    (_, module, trainer), (_, _, one) = both(compose_cfg, tmp_path, extra={"tp": monitor})
    assert type(module) is SequenceModule
    steps = scalar_steps(trainer)
    assert steps == scalar_steps(one)
    assert "train/samples" in steps  # 64 samples a batch, counted for every batch
    events = EventAccumulator(str(trainer.logger.log_dir))
    events.Reload()
    assert events.Scalars("train/samples")[-1].value == 40 * 64


def test_step_based_checkpoints_are_saved_at_their_steps(compose_cfg, tmp_path):
    every = {
        "_target_": "lightning.pytorch.callbacks.ModelCheckpoint",
        "dirpath": "${paths.output_dir}/every",
        "filename": "{step}",
        "every_n_train_steps": 15,
        "save_top_k": -1,
    }
    (_, module, _), _ = both(compose_cfg, tmp_path, extra={"every": every})
    assert type(module) is SequenceModule
    names = {
        run: sorted(p.name for p in (tmp_path / run / "every").iterdir())
        for run in ("default", "one")
    }
    assert names["default"] == names["one"]
    assert "step=15.ckpt" in names["default"]  # mid-epoch: on the fast path it could not be


def test_a_users_batch_hooks_are_called_once_per_batch(compose_cfg, tmp_path):
    count = {"_target_": f"{__name__}.CountBatches"}
    (_, module, trainer), (_, _, one) = both(compose_cfg, tmp_path, extra={"count": count})
    assert type(module) is SequenceModule
    for t in (trainer, one):
        (counter,) = [c for c in t.callbacks if isinstance(c, CountBatches)]
        assert (counter.starts, counter.ends, counter.losses) == (40, 40, 40)


def test_batch_transfer_hooks_run_for_every_batch_on_the_fast_path(compose_cfg, tmp_path):
    target = f"task.datamodule._target_={__name__}.CountingRemember"
    (dm, module, trainer), (one_dm, _, one) = both(compose_cfg, tmp_path, target)
    assert type(module) is FastSequenceModule  # exact: the fast path applies them too
    assert (dm.before, dm.after) == (one_dm.before, one_dm.after) == (40, 40)
    assert scalar_steps(trainer) == scalar_steps(one)


def test_a_user_can_force_either_loop(compose_cfg, tmp_path, caplog):
    _, module, _ = fit(compose_cfg, tmp_path / "lightning", "loop=lightning")
    assert type(module) is SequenceModule
    with caplog.at_level(logging.WARNING, logger="seqnets.fastpath"):
        _, module, _ = fit(compose_cfg, tmp_path / "fast", "loop=fast", "+trainer.profiler=simple")
    assert type(module) is FastSequenceModule
    assert "loop=fast: forced despite a profiler" in caplog.text
    with pytest.raises(ConfigError, match=r"loop=fast is not allowed with trainer\.gradient_clip"):
        fit(compose_cfg, tmp_path / "clip", "loop=fast", "+trainer.gradient_clip_val=0.5")

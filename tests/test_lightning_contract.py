"""Lightning's contract, argument by argument: every ``Trainer`` argument and every built-in
callback either acts as Lightning documents when a user sets it through seqnets' config (a
tiny real run through ``seqnets.train``'s own path checks it), is refused by the config check
before any work with one line saying why (``seqnets.checks.REFUSED_TRAINER_ARGS`` and
``REFUSED_CALLBACKS``), or needs hardware this machine may not have (built here, run where a
GPU is). A Lightning release that adds an argument or a callback fails
``test_every_trainer_argument_is_placed`` / ``test_every_callback_is_placed`` until it is
placed in one of the tables below.
"""

from __future__ import annotations

import csv
import importlib.util
import inspect
import json
import logging
from pathlib import Path
from typing import Any

import lightning as L
import pytest
import torch
from lightning.pytorch import callbacks as lightning_callbacks
from omegaconf import OmegaConf, open_dict

from seqnets.callbacks import first_of_type
from seqnets.checks import REFUSED_CALLBACKS, REFUSED_TRAINER_ARGS, always, check_config
from tests.conftest import cli_in_process, tiny

PROBE = f"{__name__}.Probe"
CB = "lightning.pytorch.callbacks"
HAS_GPU = torch.cuda.is_available()
needs_gpu = pytest.mark.skipif(not HAS_GPU, reason="needs a CUDA GPU (none on this machine)")

# -- where each argument and callback is placed -----------------------------------------------
# "run": a test of this module runs it and checks what Lightning documents (the test's name);
# "refused": seqnets.checks refuses it (test_refused_*); "hardware": built and passed through
# here, run on a GPU where there is one (test_hardware_*).
TRAINER_ARGS: dict[str, str] = {
    "accelerator": "hardware",
    "strategy": "hardware",
    "devices": "hardware",
    "num_nodes": "hardware",
    "sync_batchnorm": "hardware",
    "plugins": "test_plugins_checkpoint_io",
    "precision": "test_precision_bf16_mixed_autocasts",
    "logger": "refused",  # the logger group sets it: test_logger_group_logs
    "callbacks": "refused",  # the callbacks group sets it: every test here adds callbacks
    "fast_dev_run": "test_fast_dev_run",
    "max_epochs": "test_max_epochs_and_max_steps",
    "min_epochs": "test_min_epochs_and_min_steps_hold_off_early_stopping",
    "max_steps": "test_max_epochs_and_max_steps",
    "min_steps": "test_min_epochs_and_min_steps_hold_off_early_stopping",
    "max_time": "test_max_time_stops_the_run",
    "limit_train_batches": "test_limit_batches",
    "limit_val_batches": "test_limit_batches",
    "limit_test_batches": "test_limit_batches",
    "limit_predict_batches": "refused",
    "overfit_batches": "test_overfit_batches_repeats_the_same_batches",
    "val_check_interval": "test_val_check_interval",
    "check_val_every_n_epoch": "test_check_val_every_n_epoch",
    "num_sanity_val_steps": "test_num_sanity_val_steps",
    "log_every_n_steps": "test_log_every_n_steps",
    "enable_checkpointing": "test_enable_checkpointing_false_writes_no_checkpoint",
    "enable_progress_bar": "test_progress_bars",
    "enable_model_summary": "test_model_summaries",
    "accumulate_grad_batches": "test_accumulate_grad_batches",
    "gradient_clip_val": "test_gradient_clipping",
    "gradient_clip_algorithm": "test_gradient_clipping",
    "deterministic": "test_deterministic",
    "benchmark": "test_benchmark_sets_cudnn",
    "inference_mode": "test_inference_mode",
    "use_distributed_sampler": "refused",  # true is refused; false is seqnets' own setting
    "profiler": "test_profilers_profile",
    "detect_anomaly": "test_detect_anomaly",
    "barebones": "refused",
    "reload_dataloaders_every_n_epochs": "test_reload_dataloaders_every_n_epochs",
    "default_root_dir": "test_default_root_dir_is_the_run_dir",
    "enable_autolog_hparams": "test_enable_autolog_hparams",
    "model_registry": "refused",
}

CALLBACKS: dict[str, str] = {
    # Base classes: seqnets' own callbacks and the probe are Callbacks; the others are
    # exercised through the subclass named.
    "Callback": "test_probe_and_lambda_callback",
    "Checkpoint": "test_model_checkpoint_and_on_exception_checkpoint",
    "ProgressBar": "test_progress_bars",
    "BaseFinetuning": "test_backbone_finetuning",
    "WeightAveraging": "test_ema_weight_averaging",
    "BasePredictionWriter": "refused",
    "BackboneFinetuning": "test_backbone_finetuning",  # refused with a schedule
    "BatchSizeFinder": "test_batch_size_finder_finds",
    "DeviceStatsMonitor": "test_device_stats_monitor",  # refused on a CPU without psutil
    "EarlyStopping": "test_early_stopping_stops",
    "GradientAccumulationScheduler": "test_gradient_accumulation_scheduler",
    "LambdaCallback": "test_probe_and_lambda_callback",
    "LearningRateFinder": "test_learning_rate_finder_finds",
    "LearningRateMonitor": "test_logger_group_logs",
    "ModelCheckpoint": "test_model_checkpoint_and_on_exception_checkpoint",
    "ModelPruning": "test_model_pruning_prunes",
    "ModelSummary": "test_model_summaries",
    "OnExceptionCheckpoint": "test_model_checkpoint_and_on_exception_checkpoint",
    "RichModelSummary": "test_model_summaries",
    "RichProgressBar": "test_progress_bars",
    "StochasticWeightAveraging": "test_stochastic_weight_averaging_averages",
    "SpikeDetection": "test_spike_detection_raises",
    "ThroughputMonitor": "test_throughput_monitor_logs",
    "Timer": "test_timer_callback_stops_the_run",
    "TQDMProgressBar": "test_progress_bars",
    "EMAWeightAveraging": "test_ema_weight_averaging",
}


def trainer_arguments() -> set[str]:
    return set(inspect.signature(L.Trainer.__init__).parameters) - {"self"}


def _placed(table: dict[str, str], refused: dict) -> None:
    for name, place in table.items():
        if place == "refused":
            assert name in refused, f"{name} is placed as refused but seqnets.checks allows it"
        elif place != "hardware":
            assert callable(globals().get(place)), f"{name}: no test named {place}"
    assert not set(refused) - set(table), "refused by seqnets.checks but not placed here"


def test_every_trainer_argument_is_placed():
    assert trainer_arguments() == set(TRAINER_ARGS)
    _placed(TRAINER_ARGS, REFUSED_TRAINER_ARGS)


def test_every_callback_is_placed():
    assert set(lightning_callbacks.__all__) == set(CALLBACKS)
    refused = {name for name, (when, _) in REFUSED_CALLBACKS.items() if when is always}
    _placed(CALLBACKS, {name.rsplit(".", 1)[1] for name in refused})


# -- the run -------------------------------------------------------------------------------
class Probe(L.Callback):
    """Records what a run did, as seen from inside Lightning's loop."""

    def __init__(self) -> None:
        self.steps: list[dict[str, Any]] = []  # one per training batch
        self.validations: list[dict[str, Any]] = []  # one per validation batch
        self.tests: list[dict[str, Any]] = []  # one per test batch
        self.epochs: list[dict[str, Any]] = []  # one per training epoch
        self.loaders: list[int] = []  # id of the training loader at each epoch's start
        self.autocast_dtypes: list[torch.dtype] = []
        self._hook = None
        self.final: list[torch.Tensor] = []

    def on_fit_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        def record(module: Any, args: Any, output: torch.Tensor) -> None:
            if pl_module.training:
                self.autocast_dtypes.append(output.dtype)

        self._hook = pl_module.readout.register_forward_hook(record)

    def on_fit_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self._hook is not None:
            self._hook.remove()
        self.final = [p.detach().clone() for p in pl_module.parameters()]  # as training left it

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.loaders.append(id(trainer.train_dataloader))

    def on_train_batch_end(
        self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any, i: int
    ) -> None:
        grads = [p.grad for p in pl_module.parameters() if p.grad is not None]
        self.steps.append(
            {
                "epoch": trainer.current_epoch,
                "batch": i,
                "global_step": trainer.global_step,
                "size": batch["x"].shape[0],
                "x": batch["x"].clone(),
                "grad_norm": float(torch.linalg.vector_norm(torch.stack([g.norm() for g in grads])))
                if grads
                else None,
                "grad_max": max(float(g.abs().max()) for g in grads) if grads else None,
                "anomaly": torch.is_anomaly_enabled(),
                "deterministic": torch.are_deterministic_algorithms_enabled(),
                "params": [p.detach().clone() for p in pl_module.parameters()],
            }
        )

    def on_validation_batch_end(self, trainer: L.Trainer, *args: Any) -> None:
        self.validations.append(
            {
                "sanity": trainer.sanity_checking,
                "epoch": trainer.current_epoch,
                "global_step": trainer.global_step,
            }
        )

    def on_test_batch_start(self, trainer: L.Trainer, *args: Any) -> None:
        self.tests.append({"inference_mode": torch.is_inference_mode_enabled()})

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.epochs.append(
            {
                "params": [p.detach().clone() for p in pl_module.parameters()],
                "backbone_grad": [p.requires_grad for p in pl_module.backbone.parameters()],
            }
        )

    def checked_validations(self) -> list[dict[str, Any]]:
        return [v for v in self.validations if not v["sanity"]]


def record_epoch(trainer: L.Trainer, pl_module: L.LightningModule) -> None:
    """What a LambdaCallback calls (``test_probe_and_lambda_callback``)."""
    pl_module.lambda_epochs = getattr(pl_module, "lambda_epochs", 0) + 1


def batch_size(batch: dict[str, torch.Tensor]) -> int:
    """ThroughputMonitor's ``batch_size_fn``."""
    return batch["x"].shape[0]


class Run:
    """A finished tiny run: its metrics, its trainer and module, the probe's records."""

    def __init__(self, metrics: dict, objects: dict, out: Path) -> None:
        self.metrics, self.out = metrics, out
        self.trainer: L.Trainer = objects["trainer"]
        self.module = objects["module"]
        self.datamodule = objects["datamodule"]
        self.probe: Probe = first_of_type(self.trainer.callbacks, Probe)

    def callback(self, kind: type) -> Any:
        return first_of_type(self.trainer.callbacks, kind)


@pytest.fixture
def fit(compose_cfg, tmp_path):
    """``fit(*overrides, callbacks={name: node})``: seqnets' own path for one run (its config
    composed as the CLI would, ``check_config``, ``seqnets.train.train``) of remember with a
    hidden size of 3, a few batches (debug=fast), the probe added as a user adds a callback
    (``+callbacks.<name>._target_=...``). Each run has a directory of its own (``fit.out``),
    as each CLI run has: one that holds a ``last.ckpt`` would be resumed from it."""
    from seqnets.train import train

    def _fit(*overrides: str, callbacks: dict[str, dict] | None = None) -> Run:
        analysis = (
            [] if any("callbacks.analysis" in o for o in overrides) else ["callbacks.analysis=null"]
        )
        args = tiny("task=remember", "model.hidden=3", *analysis, *overrides)
        cfg = compose_cfg(*args)
        _fit.out = tmp_path / f"run{len(list(tmp_path.glob('run*')))}"
        with open_dict(cfg):
            cfg.paths.output_dir = str(_fit.out)
            for name, node in {"probe": {"_target_": PROBE}, **(callbacks or {})}.items():
                cfg.callbacks[name] = OmegaConf.create(node)
        check_config(cfg, args)
        metrics, objects = train(cfg)
        return Run(metrics, objects, _fit.out)

    return _fit


def epochs(n: int) -> tuple[str, str]:
    """``n`` epochs; the one-cycle schedule is planned for ``task.max_epochs``."""
    return f"task.max_epochs={n}", f"trainer.max_epochs={n}"


def csv_rows(run: Run) -> list[dict[str, str]]:
    (path,) = (run.out / "csv").rglob("metrics.csv")
    with path.open() as f:
        return list(csv.DictReader(f))


@pytest.fixture
def lightning_log(caplog):
    """Lightning's own log lines (its logger does not propagate to the root)."""
    logger = logging.getLogger("lightning.pytorch")
    logger.addHandler(caplog.handler)
    caplog.set_level(logging.INFO, logger="lightning.pytorch")
    yield caplog
    logger.removeHandler(caplog.handler)


# -- Trainer arguments ---------------------------------------------------------------------
def test_max_time_stops_the_run(fit):
    run = fit(
        *epochs(1000),
        "trainer.limit_val_batches=1",
        "++trainer.max_time=00:00:00:01",
        "++trainer.min_epochs=1",  # an epoch at least, however slow the machine
    )
    assert run.metrics["status"] == "completed"
    assert "time limit (trainer.max_time=00:00:00:01)" in run.metrics["stopped_by"]
    assert 1 <= run.metrics["epochs_trained"] < 1000
    assert run.metrics["test"]  # a run stopped by its time limit is tested like any other


def test_timer_callback_stops_the_run(fit):
    timer = {"_target_": f"{CB}.Timer", "duration": "00:00:00:01"}
    run = fit(*epochs(1000), "trainer.limit_val_batches=1", callbacks={"timer": timer})
    assert "time limit" in run.metrics["stopped_by"]
    assert 1 <= run.metrics["epochs_trained"] < 1000


def test_max_epochs_and_max_steps(fit):
    run = fit(*epochs(3))
    assert run.metrics["epochs_trained"] == 3 and run.metrics["steps_trained"] == 15
    assert run.metrics["stopped_by"] == "trainer.max_epochs=3"
    assert [row["epoch"] for row in run.metrics["history"]] == [0, 1, 2]
    run = fit(*epochs(3), "++trainer.max_steps=7")
    assert run.metrics["steps_trained"] == 7 and run.metrics["stopped_by"] == "trainer.max_steps=7"


STOP_AT_ONCE = {  # stops at the first epoch without an improvement by 1e9: the second
    "_target_": f"{CB}.EarlyStopping",
    "monitor": "val/loss",
    "patience": 0,
    "min_delta": 1e9,
}


def test_early_stopping_stops(fit):
    run = fit(*epochs(5), callbacks={"early": STOP_AT_ONCE})
    assert run.metrics["status"] == "completed" and run.metrics["epochs_trained"] == 2
    assert run.metrics["stopped_by"].startswith("early stopping on val/loss")


@pytest.mark.parametrize(("arg", "epochs_trained"), [("min_epochs=4", 4), ("min_steps=13", 3)])
def test_min_epochs_and_min_steps_hold_off_early_stopping(fit, arg, epochs_trained):
    run = fit(*epochs(5), f"++trainer.{arg}", callbacks={"early": STOP_AT_ONCE})
    assert run.metrics["epochs_trained"] == epochs_trained


def test_fast_dev_run(fit):
    run = fit(*epochs(3), "++trainer.fast_dev_run=2")
    assert run.metrics["status"] == "completed"
    assert run.metrics["steps_trained"] == 2 and len(run.probe.steps) == 2
    assert len(run.probe.checked_validations()) == 2 and len(run.probe.tests) == 2
    # fast_dev_run saves no checkpoint to test from (Lightning 2.6 still writes last.ckpt when
    # training ends: its own ModelCheckpoint.on_train_end, not seqnets')
    assert not list(run.out.rglob("best*.ckpt")) and run.metrics["best_checkpoint"] is None
    assert "fast_dev_run" in run.metrics["stopped_by"]


def test_limit_batches(fit):
    run = fit(
        "trainer.limit_train_batches=3",
        "trainer.limit_val_batches=1",
        "trainer.limit_test_batches=1",
    )
    assert len(run.probe.steps) == 3 and len(run.probe.checked_validations()) == 1
    assert len(run.probe.tests) == 1
    run = fit("trainer.limit_train_batches=0.04")  # a fraction of the task's 100 batches
    assert len(run.probe.steps) == 4


def test_overfit_batches_repeats_the_same_batches(fit):
    run = fit(*epochs(2), "++trainer.overfit_batches=2")
    steps = run.probe.steps
    assert [(s["epoch"], s["batch"]) for s in steps] == [(0, 0), (0, 1), (1, 0), (1, 1)]
    assert torch.equal(steps[0]["x"], steps[2]["x"]) and torch.equal(steps[1]["x"], steps[3]["x"])
    assert len(run.probe.checked_validations()) == 2 * 2


@pytest.mark.parametrize(("interval", "checks"), [(2, [2, 4, 7, 9]), (0.5, [2, 4, 7, 9])])
def test_val_check_interval(fit, interval, checks):
    # 5 batches an epoch: every 2 batches (or half an epoch) validates after batches 2 and 4.
    run = fit(*epochs(2), "trainer.limit_val_batches=1", f"++trainer.val_check_interval={interval}")
    assert [v["global_step"] for v in run.probe.checked_validations()] == checks


def test_check_val_every_n_epoch(fit):
    run = fit(*epochs(4), "trainer.limit_val_batches=1", "++trainer.check_val_every_n_epoch=2")
    assert [v["epoch"] for v in run.probe.checked_validations()] == [1, 3]
    validated = ["val/loss" in row for row in run.metrics["history"]]
    assert validated == [False, True, False, True]
    assert run.metrics["best_val"] is not None and run.metrics["test"]


@pytest.mark.parametrize(("steps", "batches"), [(0, 0), (1, 1), (-1, 2)])
def test_num_sanity_val_steps(fit, steps, batches):
    run = fit(f"trainer.num_sanity_val_steps={steps}")
    assert sum(v["sanity"] for v in run.probe.validations) == batches
    assert "val/loss" in run.metrics["history"][0]  # the sanity check is not an epoch's value


def test_log_every_n_steps(fit):
    run = fit("logger=csv", "trainer.log_every_n_steps=2", "trainer.limit_train_batches=6")
    logged = [r["step"] for r in csv_rows(run) if r.get("train/loss_step")]
    assert logged == ["1", "3", "5"]
    assert [r["step"] for r in csv_rows(run) if r.get("lr-AdamW")] == ["1", "3", "5"]


def test_logger_group_logs(fit):
    run = fit("logger=csv")
    rows = csv_rows(run)
    assert any(r.get("val/loss") for r in rows) and any(r.get("lr-AdamW") for r in rows)
    assert [type(x).__name__ for x in run.trainer.loggers] == ["CSVLogger"]
    run = fit("~logger")  # no logger: no LearningRateMonitor either (Lightning refuses it)
    assert run.trainer.loggers == [] and run.metrics["status"] == "completed"


def test_enable_checkpointing_false_writes_no_checkpoint(fit):
    run = fit("++trainer.enable_checkpointing=false")
    assert run.metrics["status"] == "completed" and run.metrics["test"]
    assert not list(run.out.rglob("*.ckpt")) and run.metrics["best_checkpoint"] is None


def test_accumulate_grad_batches(fit):
    run = fit(*epochs(2), "trainer.limit_train_batches=6", "++trainer.accumulate_grad_batches=3")
    assert run.metrics["steps_trained"] == 4  # 12 batches, one optimiser step per 3
    assert [s["global_step"] for s in run.probe.steps] == [0, 0, 1, 1, 1, 2, 2, 2, 3, 3, 3, 4]


def test_gradient_accumulation_scheduler(fit):
    # The documented use: many batches per step first, fewer later (more steps per epoch than
    # the first epoch's): the one-cycle schedule must be planned for every one of them.
    schedule = {"_target_": f"{CB}.GradientAccumulationScheduler", "scheduling": {0: 3, 1: 1}}
    run = fit(*epochs(2), "trainer.limit_train_batches=6", callbacks={"accumulate": schedule})
    assert run.metrics["status"] == "completed"
    assert run.metrics["steps_trained"] == 2 + 6


def test_gradient_clipping(fit):
    # The gradients the optimiser stepped with (still there after the step) are clipped.
    run = fit("++trainer.gradient_clip_val=0.001")  # Lightning's value wins over the task's
    assert max(s["grad_norm"] for s in run.probe.steps) <= 0.001 * 1.0001
    run = fit("++trainer.gradient_clip_val=0.0001", "++trainer.gradient_clip_algorithm=value")
    assert max(s["grad_max"] for s in run.probe.steps) <= 0.0001 * 1.0001
    assert min(s["grad_norm"] for s in run.probe.steps) > 0.0001 * 1.5  # by value, not norm
    run = fit()  # neither set: the task's own gradient_clip (1.0, by norm)
    assert max(s["grad_norm"] for s in run.probe.steps) <= 1.0001


def test_precision_bf16_mixed_autocasts(fit):
    run = fit("trainer.precision=bf16-mixed")  # with the default fused AdamW and clipping
    assert run.metrics["status"] == "completed"
    assert set(run.probe.autocast_dtypes) == {torch.bfloat16}
    assert max(s["grad_norm"] for s in run.probe.steps) <= 1.0001
    run = fit("trainer.precision=64-true")
    assert set(run.probe.autocast_dtypes) == {torch.float64}


def test_deterministic(fit):
    try:
        first = fit("++trainer.deterministic=true")
        assert all(s["deterministic"] for s in first.probe.steps)
        again = fit("++trainer.deterministic=true")
        assert first.metrics["history"] == again.metrics["history"]
    finally:
        torch.use_deterministic_algorithms(False)  # Lightning sets it process-wide


def test_benchmark_sets_cudnn(fit):
    try:
        fit("++trainer.benchmark=true")
        assert torch.backends.cudnn.benchmark
    finally:
        torch.backends.cudnn.benchmark = False


@pytest.mark.parametrize("mode", [True, False])
def test_inference_mode(fit, mode):
    run = fit(f"++trainer.inference_mode={mode}", "callbacks.analysis.inside=false")
    assert [t["inference_mode"] for t in run.probe.tests] == [mode, mode]
    assert run.metrics["samples"] and run.metrics["by_length"]  # the test analysis ran


def test_detect_anomaly(fit):
    run = fit("++trainer.detect_anomaly=true")
    assert all(s["anomaly"] for s in run.probe.steps)
    assert not torch.is_anomaly_enabled()  # only during the run


@pytest.mark.parametrize(
    ("profiler", "expect"),
    [
        ("SimpleProfiler", "run_training_epoch"),
        ("AdvancedProfiler", "training_step"),
        ("PyTorchProfiler", "ProfilerStep"),
    ],
)
def test_profilers_profile(fit, profiler, expect):
    run = fit(
        *epochs(1),
        f"++trainer.profiler._target_=lightning.pytorch.profilers.{profiler}",
        "++trainer.profiler.filename=perf",
    )
    written = {p.name: p.read_text() for p in run.out.rglob("*perf*.txt")}
    assert "fit-perf.txt" in written, sorted(written)
    assert expect in written["fit-perf.txt"]


def test_profiler_by_name(fit, lightning_log):
    run = fit("++trainer.profiler=simple")
    assert type(run.trainer.profiler).__name__ == "SimpleProfiler"
    assert "run_training_epoch" in lightning_log.text


def test_reload_dataloaders_every_n_epochs(fit):
    reloaded = fit(*epochs(3), "++trainer.reload_dataloaders_every_n_epochs=1")
    assert len(set(reloaded.probe.loaders)) == 3  # a new training loader every epoch
    same = fit(*epochs(3))
    assert len(set(same.probe.loaders)) == 1
    # the same batches either way: a loader made afresh starts its epoch where it should
    for a, b in zip(reloaded.probe.steps, same.probe.steps, strict=True):
        assert torch.equal(a["x"], b["x"])


def test_default_root_dir_is_the_run_dir(fit):
    run = fit("logger=csv")
    assert Path(run.trainer.default_root_dir) == run.out
    assert Path(run.trainer.log_dir).is_relative_to(run.out)


def test_enable_autolog_hparams(fit):
    def logged(run: Run) -> str:
        paths = list((run.out / "csv").rglob("hparams.yaml"))
        return paths[0].read_text() if paths else ""

    assert "gradient_clip" in logged(fit("logger=csv"))
    assert "gradient_clip" not in logged(
        fit("logger=csv", "++trainer.enable_autolog_hparams=false")
    )


def test_plugins_checkpoint_io(fit):
    plugin = "++trainer.plugins=[{_target_:lightning.pytorch.plugins.io.AsyncCheckpointIO}]"
    run = fit(plugin)
    assert type(run.trainer.strategy.checkpoint_io).__name__ == "AsyncCheckpointIO"
    assert (run.out / "checkpoints" / "last.ckpt").exists() and run.metrics["test"]


def test_progress_bars(fit, capsys):
    run = fit("trainer.enable_progress_bar=true", "callbacks.progress_bar.refresh_rate=1")
    assert type(run.trainer.progress_bar_callback).__name__ == "TQDMProgressBar"
    assert "Epoch 0: 100%" in capsys.readouterr().out
    run = fit(
        "trainer.enable_progress_bar=true",
        f"callbacks.progress_bar._target_={CB}.RichProgressBar",
    )
    assert type(run.trainer.progress_bar_callback).__name__ == "RichProgressBar"
    run = fit("trainer.enable_progress_bar=false")
    assert run.trainer.progress_bar_callback is None


def test_model_summaries(fit, lightning_log, capsys):
    def said() -> str:
        text = capsys.readouterr().out + lightning_log.text
        lightning_log.clear()
        return text

    said()
    fit("trainer.enable_model_summary=true")  # rich is installed: Lightning's RichModelSummary
    assert "readout" in said()
    fit("trainer.enable_model_summary=false")
    assert "readout" not in said()
    fit(callbacks={"summary": {"_target_": f"{CB}.ModelSummary", "max_depth": 2}})
    text = said()
    assert "Trainable params" in text and "backbone.rnn" in text, text
    fit(callbacks={"summary": {"_target_": f"{CB}.RichModelSummary", "max_depth": 1}})
    text = said()
    assert "readout" in text and "backbone.rnn" not in text


# -- callbacks -----------------------------------------------------------------------------
def test_probe_and_lambda_callback(fit):
    node = {
        "_target_": f"{CB}.LambdaCallback",
        "on_train_epoch_end": {"_target_": f"{__name__}.record_epoch", "_partial_": True},
    }
    run = fit(*epochs(2), callbacks={"lambda": node})
    assert run.module.lambda_epochs == 2 and len(run.probe.steps) == 10


def test_model_checkpoint_and_on_exception_checkpoint(fit, tmp_path):
    run = fit(*epochs(2))
    assert Path(run.metrics["best_checkpoint"]).exists()
    assert (run.out / "checkpoints" / "last.ckpt").exists()
    node = {"_target_": f"{CB}.OnExceptionCheckpoint", "dirpath": str(tmp_path / "crash")}
    with pytest.raises(RuntimeError, match="Training spike"):  # any exception will do
        fit(callbacks={"on_exception": node, "spike": SPIKE})
    assert (tmp_path / "crash" / "on_exception.ckpt").exists()


SPIKE = {  # every batch whose loss is higher than the one before is a spike
    "_target_": f"{CB}.SpikeDetection",
    "mode": "min",
    "rtol": 0.0,
}


def test_spike_detection_raises(fit):
    with pytest.raises(RuntimeError, match="Training spike detected in batch"):
        fit(*epochs(4), callbacks={"spike": SPIKE})
    bad = json.loads((fit.out / "skip_batches.json").read_text())  # in default_root_dir
    assert len(bad) == 2 and bad[1] == bad[0] + 1


def test_backbone_finetuning(fit):
    node = {"_target_": f"{CB}.BackboneFinetuning", "unfreeze_backbone_at_epoch": 1}
    # It sets the backbone's rate each epoch: with a constant rate (a schedule is refused)
    run = fit(*epochs(2), "scheduler=none", callbacks={"finetune": node})
    first, second = run.probe.epochs
    assert not any(first["backbone_grad"]) and all(second["backbone_grad"])
    backbone = len(list(run.module.backbone.parameters()))
    start = run.probe.steps[0]["params"]  # after the first step: the backbone did not move
    for before, after in zip(start[:backbone], first["params"][:backbone], strict=True):
        assert torch.equal(before, after)
    assert any(
        not torch.equal(a, b)
        for a, b in zip(first["params"][:backbone], second["params"][:backbone], strict=True)
    )
    groups = run.trainer.optimizers[0].param_groups
    assert len(groups) == 2 and groups[1]["lr"] == pytest.approx(groups[0]["lr"] * 0.1)


def test_batch_size_finder_finds(fit):
    node = {"_target_": f"{CB}.BatchSizeFinder", "max_trials": 3, "steps_per_trial": 1}
    run = fit(callbacks={"finder": node})
    found = run.datamodule.batch_size
    assert found == 8  # trials at 2, 4 and 8: none ran out of memory
    assert {s["size"] for s in run.probe.steps} == {found}


def test_learning_rate_finder_finds(fit):
    node = {
        "_target_": f"{CB}.LearningRateFinder",
        "num_training_steps": 20,
        "early_stop_threshold": None,
    }
    run = fit("trainer.limit_train_batches=30", callbacks={"finder": node})
    finder = run.callback(lightning_callbacks.LearningRateFinder)
    found = finder.optimal_lr.suggestion()
    assert found is not None and run.module.lr == pytest.approx(found)
    # the one-cycle schedule now peaks at the found rate
    assert run.trainer.optimizers[0].param_groups[0]["max_lr"] == pytest.approx(found)


def test_device_stats_monitor(fit, capsys):
    node = {"_target_": f"{CB}.DeviceStatsMonitor"}
    if importlib.util.find_spec("psutil") is None:
        pytest.skip("psutil is not installed: refused on a CPU (test_refused_*)")
    run = fit("logger=csv", callbacks={"stats": node})
    assert any(k.startswith("DeviceStatsMonitor.on_train_batch_start/") for k in csv_rows(run)[0])


def test_model_pruning_prunes(fit):
    node = {"_target_": f"{CB}.ModelPruning", "pruning_fn": "l1_unstructured", "amount": 0.5}
    run = fit(*epochs(2), callbacks={"prune": node})
    weight = run.module.readout.weight
    assert float((weight == 0).float().mean()) >= 0.5
    assert run.metrics["test"]


def test_stochastic_weight_averaging_averages(fit):
    node = {"_target_": f"{CB}.StochasticWeightAveraging", "swa_lrs": 0.01, "swa_epoch_start": 1}
    run = fit(*epochs(3), callbacks={"swa": node})
    swa = run.callback(lightning_callbacks.StochasticWeightAveraging)
    assert int(swa.n_averaged) >= 2  # from epoch 1 on
    assert not torch.equal(run.probe.final[0], run.probe.epochs[-1]["params"][0])
    # the averaged weights training ended with are the run's model: saved, and tested
    saved = torch.load(run.metrics["best_checkpoint"], weights_only=True)["state_dict"]
    for (name, param), final in zip(run.module.named_parameters(), run.probe.final, strict=True):
        torch.testing.assert_close(param.detach(), final)
        torch.testing.assert_close(saved[name], final)
    assert Path(run.metrics["best_checkpoint"]).name == "averaged.ckpt"


def test_ema_weight_averaging(fit):
    node = {"_target_": f"{CB}.EMAWeightAveraging", "decay": 0.5}
    run = fit(callbacks={"ema": node})
    ema = None
    for step in run.probe.steps:
        ps = step["params"]
        ema = ps if ema is None else [0.5 * e + 0.5 * p for e, p in zip(ema, ps, strict=True)]
    for param, expected in zip(run.probe.final, ema, strict=True):
        torch.testing.assert_close(param, expected)
    # checkpoints hold the average: the tested model is it too
    for param, expected in zip(run.module.parameters(), ema, strict=True):
        torch.testing.assert_close(param.detach(), expected)


def test_throughput_monitor_logs(fit):
    node = {
        "_target_": f"{CB}.ThroughputMonitor",
        "batch_size_fn": {"_target_": f"{__name__}.batch_size", "_partial_": True},
        "window_size": 2,
    }
    run = fit("logger=csv", callbacks={"throughput": node})
    keys = set().union(*csv_rows(run))
    assert {"train/device/samples_per_sec", "train/device/batches_per_sec"} <= keys, sorted(keys)


# -- refused -------------------------------------------------------------------------------
REFUSALS = [
    ("+trainer.logger=false", "logger group"),
    ("+trainer.callbacks=[]", "callbacks group"),
    ("+trainer.limit_predict_batches=2", "never predicts"),
    ("trainer.use_distributed_sampler=true", "shard"),
    ("+trainer.barebones=true", "barebones"),
    ("+trainer.model_registry=mine", "registry"),
    (f"+callbacks.writer._target_={CB}.BasePredictionWriter", "never predicts"),
    (f"+callbacks.tune._target_={CB}.BackboneFinetuning", "scheduler=none"),
]
if importlib.util.find_spec("psutil") is None:
    REFUSALS.append((f"+callbacks.stats._target_={CB}.DeviceStatsMonitor", "psutil"))


@pytest.mark.parametrize(("override", "why"), REFUSALS)
def test_refused_before_any_work_with_one_line(tmp_path, capsys, override, why):
    code, said = cli_in_process(*tiny("task=remember", override), cwd=tmp_path, capsys=capsys)
    lines = [line for line in said.splitlines() if line.strip()]
    assert code == 2 and len(lines) == 1 and lines[0].startswith("seqnets: error: "), said
    assert why in lines[0]
    assert not (tmp_path / "outputs").exists()


def test_every_refusal_is_tried():
    tried = " ".join(o for o, _ in REFUSALS)
    for name in REFUSED_TRAINER_ARGS:
        assert f"trainer.{name}=" in tried, name
    for kind, (when, _) in REFUSED_CALLBACKS.items():
        assert kind.rsplit(".", 1)[1] in tried or not when(OmegaConf.create({})), kind


# -- hardware ------------------------------------------------------------------------------
def test_hardware_arguments_compose_and_pass_through(compose_cfg):
    from seqnets.train import build

    cfg = compose_cfg(
        *tiny(
            "task=remember", "trainer=ddp", "++trainer.num_nodes=2", "++trainer.sync_batchnorm=true"
        )
    )
    check_config(cfg)
    _, _, trainer = build(cfg)
    assert type(trainer.strategy).__name__ == "DDPStrategy"
    assert trainer.num_devices == 2 and trainer.num_nodes == 2
    assert trainer.world_size == 4


@needs_gpu
def test_hardware_gpu_run(fit):
    run = fit("trainer=gpu", "trainer.precision=bf16-mixed")
    assert run.trainer.strategy.root_device.type == "cuda"
    assert run.metrics["status"] == "completed" and run.metrics["test"]

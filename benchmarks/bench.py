"""How fast seqnets trains, against the loops it replaces: ``python benchmarks/bench.py``
(``make bench``).

Four paths per workload, measured in one process, interleaved round by round so that a
machine's drift (about +-15 % here) hits them alike; each figure is the median over rounds:

- ``seqnets``: the real path, as ``python -m seqnets.train`` builds it (SequenceModule,
  DataModule, Trainer with the default callbacks and TensorBoard logger); timed from the
  end of one step to the end of the last, so fetching the batches, the hooks, the metrics
  and the logging all count.
- ``lightning``: the floor's model, data and recipe in a minimal LightningModule and Trainer
  (automatic optimisation, one step per call; no callbacks, logger or metrics): what the
  plain Lightning loop costs per step.
- ``reports``: a task's published reference loop (``REFERENCE_LOOPS``): the reference
  reports' MNIST loop; they published no loop for the others.
- ``floor``: a bare loop with seqnets' own recipe and data (the same model, batches, AdamW,
  one-cycle schedule and gradient clipping) and nothing else: no metrics, no logging.

Peak resident memory is measured per path in a child process, and for a real MNIST run of
the CLI. It also measures how fast the synthetic tasks make data. Writes a table to the
screen and ``bench.json`` to a new directory under ``outputs/bench/``.
"""

from __future__ import annotations

import argparse
import json
import resource
import runpy
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from datetime import datetime
from functools import partial
from pathlib import Path
from typing import Any

import lightning as L
import torch
from hydra import compose, initialize_config_module
from hydra.core.global_hydra import GlobalHydra
from hydra.core.hydra_config import HydraConfig
from hydra.utils import instantiate
from omegaconf import DictConfig, open_dict

from seqnets import CONFIG_MODULE
from seqnets.data.base import prepare_batch
from seqnets.runtime import environment, resolve_threads, skip_failing_nvml_check

# Each task's benchmarked run: the overrides of ``python -m seqnets.train``.
WORKLOADS: dict[str, list[str]] = {
    "mnist": ["task=mnist", "model=lstm", "model.hidden=128"],
    "remember": ["task=remember", "model=lstm", "model.hidden=10"],
    "binary_add": ["task=binary_add", "model=lstm", "model.hidden=5", "task.train_len=10"],
    "adding": ["task=adding", "model=lstm", "model.hidden=64"],
}
PATHS = ("seqnets", "lightning", "reports", "floor")
# Steps per round left out of the timing (allocator and kernel warm-up).
WARMUP = 20


def compose_run(overrides: list[str], output_dir: str) -> DictConfig:
    """The config ``python -m seqnets.train <overrides>`` would run, writing to ``output_dir``."""
    GlobalHydra.instance().clear()
    with initialize_config_module(config_module=CONFIG_MODULE, version_base="1.3"):
        cfg = compose("train", overrides=overrides, return_hydra_config=True)
    HydraConfig.instance().set_config(cfg)
    with open_dict(cfg):
        cfg.paths.output_dir = output_dir
        del cfg.hydra
    return cfg


class StepTimer(L.Callback):
    """Seconds per optimiser step after ``warmup`` steps: the wall time from the end of the
    first step past the warm-up to the end of the last, over the steps taken in between, so
    fetching the batches, every hook and the logging all count."""

    def __init__(self, warmup: int) -> None:
        self.warmup = warmup
        self.start: tuple[float, int] | None = None
        self.end: tuple[float, int] | None = None

    def on_train_batch_end(self, trainer: L.Trainer, *args: Any) -> None:
        mark = (time.perf_counter(), trainer.global_step)
        if self.start is None:
            if trainer.global_step >= self.warmup:
                self.start = mark
        else:
            self.end = mark

    def seconds_per_step(self) -> float:
        if self.start is None or self.end is None:
            raise RuntimeError("too few steps to time: raise --steps")
        (t0, s0), (t1, s1) = self.start, self.end
        return (t1 - t0) / (s1 - s0)


def seqnets_path(
    workload: str, workdir: str, extra: tuple[str, ...] = ()
) -> Callable[[int], float]:
    """The real training path (with ``extra`` overrides: a ``--variant``); returns a function
    timing ``steps`` steps (seconds/step)."""
    from seqnets.train import build

    def run(steps: int) -> float:
        overrides = [
            *WORKLOADS[workload],
            *extra,
            "trainer.max_epochs=1",
            f"trainer.limit_train_batches={steps + WARMUP}",
            "trainer.limit_val_batches=1",
            "trainer.num_sanity_val_steps=0",
        ]
        cfg = compose_run(overrides, tempfile.mkdtemp(dir=workdir))
        if "train_batches" in cfg.task:  # an epoch long enough to time every step asked for
            cfg = compose_run(
                [*overrides, f"task.train_batches={steps + WARMUP}"], cfg.paths.output_dir
            )
        L.seed_everything(cfg.seed)
        datamodule, module, trainer = build(cfg)
        timer = StepTimer(WARMUP)
        trainer.callbacks.append(timer)
        trainer.fit(module, datamodule=datamodule)
        return timer.seconds_per_step()

    return run


class BareLoop:
    """The same model, data and recipe as seqnets (batches, AdamW, one-cycle schedule,
    gradient clipping) and nothing else: no metrics, no logging. The floor path runs it in a
    plain loop; the lightning path hands the same parts to a minimal Lightning Trainer."""

    def __init__(self, workload: str) -> None:
        cfg = compose_run(WORKLOADS[workload], "unused")
        dm = instantiate(cfg.task.datamodule)
        dm.setup("fit")
        self.objective = instantiate(cfg.task.objective)
        self.backbone = instantiate(cfg.model, input_size=dm.num_features)
        self.readout = torch.nn.Linear(self.backbone.output_size, self.objective.num_outputs)
        self.params = [*self.backbone.parameters(), *self.readout.parameters()]
        self.optimizer = instantiate(cfg.optimizer)(params=self.params)
        self.schedule = torch.optim.lr_scheduler.OneCycleLR(
            self.optimizer, max_lr=cfg.optimizer.lr, total_steps=10**7, pct_start=0.3
        )
        self.clip = cfg.task.gradient_clip
        source = self._batches(dm)
        self.next_batch = lambda: next(source)

    @staticmethod
    def _batches(dm: Any) -> Iterator[dict]:
        """The DataModule's training batches, epoch after epoch, prepared (e.g. normalised)
        by its own hooks, as the Trainer prepares them."""
        cpu = torch.device("cpu")
        while True:
            for batch in dm.train_dataloader():
                yield prepare_batch(dm, batch, cpu)

    def loss(self, batch: dict) -> torch.Tensor:
        outputs, final = self.backbone(batch["x"], batch.get("lengths"))
        logits = self.readout(final if self.objective.readout == "last" else outputs)
        return self.objective.loss(logits, batch)


def floor_path(workload: str) -> Callable[[int], float]:
    """The bare loop: the floor any training path can reach."""
    bare = BareLoop(workload)

    def step() -> None:
        loss = bare.loss(bare.next_batch())
        bare.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(bare.params, bare.clip)
        bare.optimizer.step()
        bare.schedule.step()

    return lambda steps: _time_steps(step, steps)


def lightning_path(workload: str, workdir: str) -> Callable[[int], float]:
    """The bare loop's parts in a minimal LightningModule and Trainer (no callbacks, logger,
    metrics or progress bar): what Lightning's own per-step machinery costs."""
    bare = BareLoop(workload)

    class Minimal(L.LightningModule):
        def __init__(self) -> None:
            super().__init__()
            self.backbone, self.readout = bare.backbone, bare.readout

        def training_step(self, batch: dict, batch_idx: int) -> torch.Tensor:
            return bare.loss(batch)

        def configure_optimizers(self) -> Any:
            scheduler = {"scheduler": bare.schedule, "interval": "step"}
            return {"optimizer": bare.optimizer, "lr_scheduler": scheduler}

    class Stream(torch.utils.data.IterableDataset):
        def __iter__(self) -> Iterator[dict]:
            while True:
                yield bare.next_batch()

    def run(steps: int) -> float:
        timer = StepTimer(WARMUP)
        trainer = L.Trainer(
            accelerator="cpu",
            max_epochs=1,
            limit_train_batches=steps + WARMUP,
            gradient_clip_val=bare.clip,
            logger=False,
            enable_checkpointing=False,
            enable_progress_bar=False,
            enable_model_summary=False,
            callbacks=[timer],
            default_root_dir=workdir,
        )
        loader = torch.utils.data.DataLoader(Stream(), batch_size=None)
        trainer.fit(Minimal(), train_dataloaders=loader)
        return timer.seconds_per_step()

    return run


def mnist_reference_loop(data_dir: str) -> Callable[[], None]:
    """Reports A and B's loop: torchvision's MNIST with ``ToTensor`` per image through
    ``DataLoader(shuffle=True)``, an LSTM of 128, plain Adam. Returns one training step."""
    from torchvision import datasets, transforms

    data = datasets.MNIST(data_dir, train=True, transform=transforms.ToTensor())
    loader = torch.utils.data.DataLoader(data, batch_size=64, shuffle=True)
    lstm = torch.nn.LSTM(28, 128, batch_first=True)
    head = torch.nn.Linear(128, 10)
    optimizer = torch.optim.Adam([*lstm.parameters(), *head.parameters()], lr=1e-3)
    source = iter(loader)

    def step() -> None:
        nonlocal source
        try:
            images, labels = next(source)
        except StopIteration:
            source = iter(loader)
            images, labels = next(source)
        out, _ = lstm(images.view(-1, 28, 28))
        loss = torch.nn.functional.cross_entropy(head(out[:, -1, :]), labels)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()

    return step


# The reference reports' published loops, by workload (they published none for the others).
REFERENCE_LOOPS: dict[str, Callable[[str], Callable[[], None]]] = {"mnist": mnist_reference_loop}


def reports_path(workload: str, data_dir: str) -> Callable[[int], float] | None:
    """The workload's published reference loop, where it has one."""
    if workload not in REFERENCE_LOOPS:
        return None
    step = REFERENCE_LOOPS[workload](data_dir)
    return lambda steps: _time_steps(step, steps)


# Columns of seqnets with other settings (``--variant``), beside the four paths.
VARIANTS: dict[str, tuple[str, ...]] = {}


def all_paths() -> list[str]:
    """The columns in order: seqnets, its variants, then the loops it is compared with."""
    return [PATHS[0], *VARIANTS, *PATHS[1:]]


def make_path(
    name: str, workload: str, workdir: str, data_dir: str
) -> Callable[[int], float] | None:
    """Path ``name`` for ``workload`` (None where it has none: the reports' loop is MNIST's)."""
    if name == "seqnets":
        return seqnets_path(workload, workdir)
    if name in VARIANTS:
        return seqnets_path(workload, workdir, VARIANTS[name])
    if name == "lightning":
        return lightning_path(workload, workdir)
    if name == "reports":
        return reports_path(workload, data_dir)
    return floor_path(workload)


def _time_steps(step: Callable[[], None], steps: int) -> float:
    for _ in range(WARMUP):
        step()
    start = time.perf_counter()
    for _ in range(steps):
        step()
    return (time.perf_counter() - start) / steps


def throughput(
    workloads: list[str], steps: int, rounds: int, data_dir: str, workdir: str
) -> dict[str, dict[str, Any]]:
    """Seconds per step of every path, interleaved round by round; median over rounds."""
    results: dict[str, dict[str, Any]] = {}
    for workload in workloads:
        paths = {name: make_path(name, workload, workdir, data_dir) for name in all_paths()}
        samples: dict[str, list[float]] = {name: [] for name, f in paths.items() if f}
        for _ in range(rounds):
            for name in samples:
                samples[name].append(paths[name](steps))
        batch = compose_run(WORKLOADS[workload], "unused").task.batch_size
        row: dict[str, Any] = {"batch_size": batch, "steps_per_round": steps, "rounds": rounds}
        for name in all_paths():
            if name in samples:
                seconds = statistics.median(samples[name])
                row[name] = {
                    "ms_per_step": 1000 * seconds,
                    "sequences_per_s": batch / seconds,
                    "rounds_ms": [1000 * s for s in samples[name]],
                }
        for other in all_paths()[1:]:
            if other in row:
                row[f"seqnets/{other}"] = row[other]["ms_per_step"] / row["seqnets"]["ms_per_step"]
        results[workload] = row
    return results


def peak_memory(workload: str, path: str, steps: int, data_dir: str) -> float:
    """Peak resident memory (MiB) of a child process that trains ``steps`` steps on a path
    (``cli``: a real run of ``python -m seqnets.train`` on the workload, data load, training,
    validation and test analysis included)."""
    args = [sys.executable, __file__, "--child", workload, path, str(steps)]
    done = subprocess.run(
        [*args, "--data-dir", data_dir], check=True, capture_output=True, text=True
    )
    return json.loads(done.stdout.strip().splitlines()[-1])["peak_mib"]


def child(workload: str, path: str, steps: int, data_dir: str) -> None:
    """Run one path for ``steps`` steps, then print this process's peak memory."""
    with tempfile.TemporaryDirectory() as workdir:
        if path == "cli":
            sys.argv = [
                "seqnets.train",
                *WORKLOADS[workload],
                "trainer.max_epochs=1",
                f"trainer.limit_train_batches={steps}",
                f"hydra.run.dir={workdir}/run",
                f"paths.data_dir={data_dir}",
                "callbacks.progress_bar.refresh_rate=0",
            ]
            runpy.run_module("seqnets.train", run_name="__main__")
        else:
            make_path(path, workload, workdir, data_dir)(steps)
    print(json.dumps({"peak_mib": peak_rss_mib()}))


def peak_rss_mib() -> float:
    """This process's peak resident memory. Linux's VmHWM, which starts afresh at exec; the
    rusage maximum would also count the bench process this child was forked from."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def generation_rate(make: Callable, batch_size: int, seconds: float) -> float:
    """Sequences per second made by ``make(batch_size, generator)``, best of short bursts."""
    generator = torch.Generator().manual_seed(0)
    make(batch_size, generator)  # warm-up
    best = 0.0
    deadline = time.perf_counter() + seconds
    while time.perf_counter() < deadline:
        start, calls = time.perf_counter(), 0
        while time.perf_counter() - start < 0.2:
            make(batch_size, generator)
            calls += 1
        best = max(best, calls * batch_size / (time.perf_counter() - start))
    return best


def generators(workloads: list[str]) -> dict[str, Callable]:
    """How each task that makes its data on the fly makes it: at its workload's training
    lengths, and all at its longest evaluation length."""
    found = {}
    for workload in workloads:
        dm = instantiate(compose_run(WORKLOADS[workload], "unused").task.datamodule)
        if not hasattr(dm, "make"):
            continue
        found[f"{workload} (len {dm.min_len}..{dm.max_len})"] = dm.make
        longest = dm.max_eval_len
        found[f"{workload} (len {longest})"] = partial(_make_at, dm.make, longest)
    return found


def _make_at(make: Callable, length: int, n: int, generator: torch.Generator) -> Any:
    return make(n, generator, length)


def print_table(results: dict[str, dict[str, Any]], memory: dict[str, dict[str, float]]) -> None:
    print(
        f"\n{'workload':<12}{'path':<22}{'ms/step':>10}{'seq/s':>10}{'peak MiB':>10}{'ratio':>36}"
    )
    for workload, row in results.items():
        for path in all_paths():
            if path not in row:
                continue
            ratio = ""
            if path != "seqnets":
                ratio = f"seqnets/{path} = {row[f'seqnets/{path}']:.2f}x"
            mib = memory.get(workload, {}).get(path)
            print(
                f"{workload:<12}{path:<22}{row[path]['ms_per_step']:>10.2f}"
                f"{row[path]['sequences_per_s']:>10,.0f}"
                f"{'' if mib is None else f'{mib:.0f}':>10}{ratio:>36}"
            )
    print("(ratio: how many times faster seqnets trains than that path; 1.0 = as fast)")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workloads", nargs="+", default=list(WORKLOADS), choices=WORKLOADS)
    parser.add_argument("--steps", type=int, default=100, help="timed steps per round")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--threads", type=int, default=None, help="default: all cores")
    parser.add_argument("--memory-steps", type=int, default=50, help="0: skip memory")
    parser.add_argument("--gen-seconds", type=float, default=1.0, help="0: skip generation")
    parser.add_argument("--data-dir", default=None, help="default: paths.data_dir")
    parser.add_argument("--out", type=Path, default=Path("outputs/bench"))
    parser.add_argument("--child", nargs=3, metavar=("WORKLOAD", "PATH", "STEPS"))
    parser.add_argument(
        "--variant",
        action="append",
        default=[],
        metavar="NAME=OVERRIDE[;OVERRIDE...]",
        help="another seqnets column, with these train overrides (e.g. "
        "bf16=trainer.precision=bf16-mixed); timed in the same rounds as the others",
    )
    args = parser.parse_args(argv)
    for variant in args.variant:
        name, _, overrides = variant.partition("=")
        VARIANTS[f"seqnets[{name}]"] = tuple(o for o in overrides.split(";") if o)
    torch.set_num_threads(resolve_threads(args.threads))
    skip_failing_nvml_check()  # as every training run does (seqnets.train)
    data_dir = args.data_dir or compose_run([], "unused").paths.data_dir
    if args.child:
        child(args.child[0], args.child[1], int(args.child[2]), data_dir)
        return

    out = args.out / datetime.now().strftime("%Y-%m-%d_%H-%M-%S-%f")
    out.mkdir(parents=True)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads; results in {out}")
    results = throughput(args.workloads, args.steps, args.rounds, data_dir, str(out))
    memory: dict[str, dict[str, float]] = {}
    if args.memory_steps:
        for workload, row in results.items():
            memory[workload] = {
                path: peak_memory(workload, path, args.memory_steps, data_dir)
                for path in PATHS
                if path in row
            }
            memory[workload]["cli_run"] = peak_memory(workload, "cli", args.memory_steps, data_dir)
    print_table(results, memory)
    for workload, peaks in memory.items():
        print(f"peak memory of a real {workload} run of the CLI: {peaks['cli_run']:.0f} MiB")

    generation: dict[str, dict[str, float]] = {}
    if args.gen_seconds:
        sizes = (64, 256, 1024, 16384)
        print(f"\n{'data generation, sequences/s':<28}" + "".join(f"{f'b={b}':>12}" for b in sizes))
        for name, make in generators(args.workloads).items():
            generation[name] = {str(b): generation_rate(make, b, args.gen_seconds) for b in sizes}
            print(f"{name:<28}" + "".join(f"{v:>12,.0f}" for v in generation[name].values()))

    report = {
        "command": " ".join(["python benchmarks/bench.py", *(argv or sys.argv[1:])]),
        "threads": torch.get_num_threads(),
        "throughput": results,
        "peak_memory_mib": memory,
        "generation_sequences_per_s": generation,
        **environment(),
    }
    (out / "bench.json").write_text(json.dumps(report, indent=2, allow_nan=False))
    print(f"\nwritten {out / 'bench.json'}")


if __name__ == "__main__":
    main()

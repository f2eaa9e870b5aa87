"""The machine a run uses: how many threads torch may take, and what to record about it."""

from __future__ import annotations

import ctypes
import os
import platform
import time
from importlib.metadata import PackageNotFoundError, version
from typing import Any

import torch

from seqnets.errors import check_int

PACKAGES = ("seqnets", "torch", "lightning", "hydra-core", "torchmetrics", "omegaconf")


def available_cores() -> int:
    """Cores this process may run on (a SLURM job or a taskset sees fewer than the machine)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def side_by_side(launcher: Any) -> int:
    """How many jobs a Hydra launcher runs at once on this machine: its ``n_jobs`` (the
    joblib launcher's, seqnets' grouped one's; -1: one per core), else 1."""
    n_jobs = launcher.get("n_jobs") if launcher is not None else None
    if n_jobs is None:
        return 1
    n_jobs = check_int("hydra.launcher.n_jobs", n_jobs, -1)
    return available_cores() if n_jobs < 0 else max(1, n_jobs)


def resolve_threads(threads: int | None, launcher: Any = None, processes: int = 1) -> int:
    """torch's thread count for one job: ``threads`` if set, else this job's share of the
    cores. Two jobs each running two threads on two cores collapse (a 24 s run took 267 s
    here), so jobs run side by side (joblib) or DDP processes on one machine split the cores."""
    if threads is not None:  # every command's own value (train checks it before any work)
        return check_int("threads", threads, 1)
    return max(1, available_cores() // (side_by_side(launcher) * max(1, processes)))


def skip_failing_nvml_check() -> None:
    """Drop ``PYTORCH_NVML_BASED_CUDA_CHECK`` where NVML cannot load (no NVIDIA driver).

    Lightning sets it on import, so that asking whether CUDA is there never initialises CUDA
    (which would poison forked processes). torch then asks NVML on every
    ``torch.cuda.is_available()``, which Adam and AdamW call in every step; without a driver
    the library fails to load each time (the loader searches for it anew, at a cost that
    shows in a small model's step) before torch falls back to the CUDA runtime's count
    anyway, so the variable buys nothing there. Where NVML loads (a GPU machine) it stays.
    """
    if os.environ.get("PYTORCH_NVML_BASED_CUDA_CHECK") != "1":
        return
    try:
        ctypes.CDLL("libnvidia-ml.so.1")
    except OSError:
        del os.environ["PYTORCH_NVML_BASED_CUDA_CHECK"]


def environment() -> dict[str, Any]:
    """Where the numbers came from: library versions and the machine."""
    versions = {}
    for name in PACKAGES:
        try:
            versions[name] = version(name)
        except PackageNotFoundError:
            versions[name] = None
    return {
        "versions": versions | {"python": platform.python_version()},
        "machine": {
            "platform": platform.platform(),
            "processor": platform.processor() or platform.machine(),
            "cores": available_cores(),
            "cpu_threads": torch.get_num_threads(),
            "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
        },
    }


class Progress:
    """How far a long piece of work is, and how long it has left at the pace so far: the
    length study logs it every few seconds, the report's training after each run."""

    def __init__(self, total: float) -> None:
        self.total, self.done = total, 0.0
        self.start = self.last = time.monotonic()

    def advance(self, amount: float) -> None:
        self.done += amount

    def elapsed(self) -> float:
        return time.monotonic() - self.start

    def left(self) -> float:
        """Seconds left at the pace so far (0 until some work is done)."""
        return self.elapsed() * (self.total - self.done) / self.done if self.done else 0.0

    def due(self, every: float) -> bool:
        """Whether ``every`` seconds have passed since the last time this said so, with
        work still left: a line now and then, never one per item."""
        now = time.monotonic()
        if now - self.last < every or self.done >= self.total:
            return False
        self.last = now
        return True

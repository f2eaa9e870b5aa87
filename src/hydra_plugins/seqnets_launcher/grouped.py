"""``hydra/launcher=grouped``: a sweep's runs that read the same data train as one fit.

Hydra finds launchers in the ``hydra_plugins`` namespace package; the work is in
``seqnets.grouping``, which this only hands the sweep's jobs to.
"""

from __future__ import annotations

from collections.abc import Sequence

from hydra.core.utils import JobReturn
from hydra.plugins.launcher import Launcher
from hydra.types import HydraContext, TaskFunction
from omegaconf import DictConfig


class GroupedLauncher(Launcher):
    """Jobs that differ only in the network train together (``max_members`` at most, within
    ``memory_gb``, default a quarter of this machine's memory); any other job runs as
    Hydra's basic launcher runs it. ``n_jobs`` processes share the work (-1: one per core)."""

    def __init__(
        self, max_members: int = 32, memory_gb: float | None = None, n_jobs: int = -1
    ) -> None:
        super().__init__()
        self.max_members = max_members
        self.memory_gb = memory_gb
        self.n_jobs = n_jobs
        self.config: DictConfig | None = None
        self.task_function: TaskFunction | None = None
        self.hydra_context: HydraContext | None = None

    def setup(
        self, *, hydra_context: HydraContext, task_function: TaskFunction, config: DictConfig
    ) -> None:
        self.config, self.hydra_context, self.task_function = config, hydra_context, task_function

    def launch(
        self, job_overrides: Sequence[Sequence[str]], initial_job_idx: int
    ) -> Sequence[JobReturn]:
        from seqnets.grouping.launch import launch

        assert self.config is not None and self.task_function is not None
        return launch(
            self.hydra_context,
            self.task_function,
            self.config,
            job_overrides,
            initial_job_idx,
            max_members=self.max_members,
            memory_gb=self.memory_gb,
            n_jobs=self.n_jobs,
        )

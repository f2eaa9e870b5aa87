"""What a task is beyond its data: how a person's input is read and an answer shown, what to
measure inside a trained network, and its report section.

Training needs only the task's config (``conf/task/<name>.yaml``: a DataModule and an
objective, each named by ``_target_``). Everything else that differs between tasks lives in
one :class:`Task` subclass, found by :func:`seqnets.tasks.task_of` from the same config, so
that ``predict``, ``evaluate``, ``inside``, ``summarize``, and the report call the
task instead of branching on its name. Every method has a default that works for any task,
so a new task starts with its DataModule and config alone and adds methods as it grows.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, ClassVar

import torch
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

if TYPE_CHECKING:  # annotations only: the report and the module import tasks themselves
    from matplotlib.figure import Figure

    from seqnets.data.base import TensorDataModule
    from seqnets.models.module import SequenceModule


class Task:
    """One task's behaviour outside training. ``config`` is the run's ``task`` node (a
    checkpoint's or a run record's, resolved), so a task object can be made for any run.

    Subclasses set ``name`` (the registry's key and ``task.name``), ``title`` (the report's
    heading) and ``setting_keys`` (the task settings that set its runs apart in tables), and
    override what they need:

    - ``predict(module, datamodule, value)``: a user's own input (``input=`` of
      ``python -m seqnets.predict``, as plain Python: a string, a number or a list) -> rows,
      one per item, each with ``text`` or ``error`` (a bad item never stops the others).
    - ``markdown(result)``: those rows as a person reads them.
    - ``inside(module, datamodule, generator)``: numbers and figures on what a trained
      network keeps in its state (``seqnets.tasks.analysis``).
    - ``report_section(...)``, ``report_inside(...)``: the task's part of the report.
    """

    name: ClassVar[str] = "task"
    title: ClassVar[str] = "task"
    setting_keys: ClassVar[tuple[str, ...]] = ()

    def __init__(self, config: Mapping[str, Any] | DictConfig) -> None:
        if isinstance(config, DictConfig):
            config = OmegaConf.to_container(config, resolve=True)
        self.config: dict[str, Any] = dict(config)

    # -- data --------------------------------------------------------------------------------
    def datamodule(self, **changes: Any) -> TensorDataModule:
        """The task's DataModule as its config names it (``changes`` override arguments)."""
        return instantiate({**self.config["datamodule"], **changes})

    def setting(self) -> dict[str, Any]:
        """The values of ``setting_keys`` this config has: what sets a run apart in a table."""
        return {k: self.config[k] for k in self.setting_keys if k in self.config}

    # -- a user's own input -------------------------------------------------------------------
    def predict(
        self, module: SequenceModule, datamodule: TensorDataModule, value: Any
    ) -> dict[str, Any]:
        """Predictions for a user's input; by default the task takes none."""
        from seqnets.errors import ConfigError

        raise ConfigError(
            f"input={value!r}: task {self.name!r} does not read a user's own input "
            f"(its Task class, {type(self).__module__}.{type(self).__qualname__}, defines no "
            f"predict)"
        )

    def markdown(self, result: dict[str, Any]) -> str:
        """The predictions as a list a person reads: one line per input."""
        lines = [
            f"- error: {r['error']}" if "error" in r else f"- {r.get('text', r)}"
            for r in result["rows"]
        ]
        return "\n".join(lines) + "\n"

    # -- inside the network -------------------------------------------------------------------
    def inside(
        self, module: SequenceModule, datamodule: TensorDataModule, generator: torch.Generator
    ) -> tuple[dict[str, Any], dict[str, Figure]]:
        """Numbers (plain JSON values) and figures on what the trained network keeps in its
        state; by default none, with a note saying so."""
        return {"note": f"no inside analysis for task {self.name!r}"}, {}

    # -- figures after testing (seqnets.tasks.analysis) -----------------------------------------
    def sample_figure(self, batch: dict[str, torch.Tensor], preds: torch.Tensor) -> Figure | None:
        """A picture of the fixed samples and their predictions, for tasks whose inputs are
        pictures; None for the others."""
        return None

    def errors_figure(self, datamodule: TensorDataModule, pairs: list[dict]) -> Figure | None:
        """The test inputs behind the most frequent mistakes (``pairs`` as made by
        ``seqnets.tasks.analysis.confused_pairs``), for tasks whose inputs are pictures."""
        return None

    # -- the report -----------------------------------------------------------------------------
    def report_section(self, doc: Any, rows: list[Any], context: Any) -> None:
        """The task's section of the report, from its runs (``rows``: one per experiment,
        with its runs over the seeds); by default a table of every test score."""
        from seqnets.reportkit.generic import section

        section(self, doc, rows, context)

    def report_inside(self, doc: Any, row: Any) -> None:
        """The task's part of "Inside the networks", from one experiment's runs; by default
        the figures the run's test analysis drew."""
        from seqnets.reportkit.generic import inside

        inside(self, doc, row)

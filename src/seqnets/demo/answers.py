"""What the demo's page shows, computed without the page: a trained network's answer to a
user's input, as its task gives it (``Task.demo_answer``). The tasks answer through the code
the command line uses, so the page and ``predict`` agree on every answer and every refusal.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from seqnets.checkpoints import load_checkpoint, rebuild
from seqnets.demo.catalog import Run
from seqnets.errors import ConfigError
from seqnets.models.module import SequenceModule
from seqnets.tasks.base import DemoAnswer, Task


@dataclass
class Loaded:
    """A run's network, ready to answer."""

    run: Run
    task: Task
    datamodule: Any
    module: SequenceModule
    state: dict[str, Any] = field(default_factory=dict)  # the task's demo_state

    def answer(self, value: Any, max_steps: int) -> DemoAnswer:
        """The task's answer to ``value`` (see ``Task.demo_answer``)."""
        return self.task.demo_answer(self.module, self.datamodule, value, self.state, max_steps)


class Models:
    """Checkpoints loaded on first use and kept, so that switching runs in the picker (an RNN
    against an LSTM on the same drawing) costs a load only once per run, and no answer ever
    pays for one (the server loads each task's default run before it serves)."""

    def __init__(self, runs: list[Run], data_dir: str | None = None) -> None:
        self.runs = {str(run.checkpoint): run for run in runs}
        self.data_dir = data_dir
        self._loaded: dict[str, Loaded] = {}

    def get(self, checkpoint: str) -> Loaded:
        """The loaded network of the run whose checkpoint is ``checkpoint``."""
        if checkpoint not in self._loaded:
            run = self.runs.get(checkpoint)
            if run is None:
                raise ConfigError(f"{checkpoint} is not one of the runs this page offers")
            _, stored = load_checkpoint(run.checkpoint)
            _, datamodule, module = rebuild(stored, data_dir=self.data_dir)
            task = run.task_object()
            loaded = Loaded(run, task, datamodule, module)
            loaded.state = task.demo_state(module, datamodule, run.record)
            self._loaded[checkpoint] = loaded
        return self._loaded[checkpoint]


def bad_input_line(error: BaseException) -> str:
    """One line for the page: the message of a refused input as it is, anything else (a bug)
    as its type and first line, never a traceback."""
    text = str(error).strip().splitlines()[0] if str(error).strip() else ""
    if isinstance(error, ConfigError):
        return text
    return f"{type(error).__name__}: {text}" if text else type(error).__name__

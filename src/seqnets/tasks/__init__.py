"""The tasks: the registry, the only place that names them (see ``seqnets.tasks.base``).

A config's ``task`` node finds its :class:`~seqnets.tasks.base.Task` by ``task._target_``
when it has one (a task written outside this package) and else by ``task.name`` here.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from hydra.utils import get_class
from omegaconf import DictConfig

from seqnets.errors import ConfigError, import_by_path
from seqnets.tasks.base import Task

TASKS = {
    "mnist": "seqnets.tasks.mnist.MNIST",
    "remember": "seqnets.tasks.remember.Remember",
    "binary_add": "seqnets.tasks.binary_add.BinaryAdd",
    "adding": "seqnets.tasks.adding.Adding",
}


def task_class(name: str) -> type[Task]:
    """The Task class registered under ``name``; an unknown name gets one clear line."""
    if name not in TASKS:
        raise ConfigError(
            f"task {name!r} is not known: choose from {', '.join(TASKS)}, or name a Task class "
            f"in the task config's _target_"
        )
    return get_class(TASKS[name])


def task_of(config: Mapping[str, Any] | DictConfig) -> Task:
    """The Task of a run's ``task`` config node (a composed config's, a checkpoint's or a run
    record's)."""
    target = config.get("_target_")
    if target:
        cls = import_by_path("task._target_", target)
        if not (isinstance(cls, type) and issubclass(cls, Task)):
            raise ConfigError(f"task._target_={target!r} is not a seqnets.tasks.base.Task")
        return cls(config)
    name = config.get("name")
    if name is None:
        raise ConfigError("the task config has neither name nor _target_: nothing names its Task")
    return task_class(name)(config)


def task_of_run(module: Any, datamodule: Any) -> Task:
    """The Task of a trained module: from the config it was trained with (it travels in every
    checkpoint), else from its DataModule's ``name``."""
    config = (getattr(module, "hparams", None) or {}).get("config")
    if config and config.get("task"):
        return task_of(config["task"])
    return task_class(datamodule.name)({"name": datamodule.name})

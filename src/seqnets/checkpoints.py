"""Checkpoints as inputs: found, read safely, and turned back into the run that made them.

A checkpoint is code if what it names is instantiated blindly, so it is read with
``weights_only=True`` and its stored config may only name targets from an allowlist (this
package's classes, ``torch.optim``, Lightning's Trainer, callbacks and loggers). Every way a
file can be unusable (missing, truncated, not a checkpoint, not a seqnets checkpoint, naming a
foreign target) is a ``CheckpointError`` whose one line names the file and what is wrong.
"""

from __future__ import annotations

import inspect
import os
from pathlib import Path
from typing import Any

import torch
from hydra.utils import get_method
from omegaconf import DictConfig, OmegaConf

from seqnets import records
from seqnets.errors import ConfigError
from seqnets.models.module import SequenceModule

ALLOWED_TARGETS = (
    "seqnets.",
    "torch.optim.",
    "lightning.pytorch.callbacks.",
    "lightning.pytorch.loggers.",
    "lightning.pytorch.Trainer",
)

# A user's own modules, comma-separated, whose targets a checkpoint may name too.
TRUSTED_ENV = "SEQNETS_TRUSTED_TARGETS"


class CheckpointError(ConfigError):
    """A checkpoint that cannot be used; the message names the file and says why."""


def find_checkpoint(path: str | Path, prefer: str = "best") -> Path:
    """The checkpoint file a user meant: ``path`` itself, or in a run directory (or its
    ``checkpoints/``) the best checkpoint (``prefer="best"``, for evaluating and predicting)
    or ``last.ckpt`` (``prefer="last"``, for resuming; an interrupted run's own checkpoint
    when it is newer)."""
    path = Path(path).expanduser()
    if path.is_file():
        return path
    if not path.exists():
        raise CheckpointError(
            f"ckpt_path={str(path)!r} does not exist: give a .ckpt file or a run directory"
        )
    folder = path / "checkpoints" if (path / "checkpoints").is_dir() else path
    last = [p for p in (folder / "interrupted.ckpt", folder / "last.ckpt") if p.is_file()]
    last.sort(key=lambda p: p.stat().st_mtime, reverse=True)
    best = best_checkpoint(folder, last)
    order = (best + last) if prefer == "best" else (last + best)
    if not order:
        raise CheckpointError(
            f"ckpt_path={str(path)!r} is a directory without checkpoints (looked for best-*.ckpt, "
            f"last.ckpt and interrupted.ckpt in {folder})"
        )
    return order[0]


def best_checkpoint(folder: Path, last: list[Path]) -> list[Path]:
    """The best of ``folder``'s ``best*.ckpt`` files by score, as Lightning's
    ModelCheckpoint ranked them (its state in the newest of ``last`` names it: with
    ``save_top_k > 1`` the newest file is not the best); by name where no state says."""
    candidates = sorted(folder.glob("best*.ckpt"))
    for file in last:
        try:
            state = torch.load(file, map_location="cpu", weights_only=True, mmap=True)
        except Exception:  # an unreadable last.ckpt is reported when it is used
            continue
        for key, value in (state.get("callbacks") or {}).items():
            if "Checkpoint" in str(key) and isinstance(value, dict):
                named = folder / Path(value.get("best_model_path") or "").name
                if named in candidates:
                    return [named]
    return candidates[-1:]


def allowed_targets() -> tuple[str, ...]:
    """``ALLOWED_TARGETS`` and the module prefixes a user trusts besides (their own tasks and
    cells): ``SEQNETS_TRUSTED_TARGETS=mytasks.,mycells.``."""
    trusted = os.environ.get(TRUSTED_ENV, "")
    return ALLOWED_TARGETS + tuple(t.strip() for t in trusted.split(",") if t.strip())


def check_targets(config: Any, where: str = "") -> None:
    """Refuse a config that names any ``_target_`` (or a model's ``cell`` by import path)
    outside ``allowed_targets()``: rebuilding a checkpoint imports and calls what its config
    names."""
    if isinstance(config, dict):
        allowed = allowed_targets()
        # A model's cell named by import path is imported and built as a _target_ is.
        cell = config.get("cell") if "_target_" in config else None
        for key, target in (("_target_", config.get("_target_")), ("cell", cell)):
            if target is None or (key == "cell" and "." not in str(target)):
                continue
            if not str(target).startswith(allowed):
                module = str(target).rsplit(".", 1)[0]
                place = f"{where}.{key}" if where and key == "cell" else (where or "the top")
                raise CheckpointError(
                    f"its config names the target {target!r} at {place}; only targets "
                    f"under {', '.join(allowed)} are rebuilt from a checkpoint (if you trust "
                    f"{module}, say so: {TRUSTED_ENV}={module}.)"
                )
        for key, value in config.items():
            check_targets(value, f"{where}.{key}" if where else str(key))
    elif isinstance(config, list):
        for i, value in enumerate(config):
            check_targets(value, f"{where}[{i}]")


def load_checkpoint(path: str | Path, prefer: str = "best") -> tuple[Path, dict[str, Any]]:
    """``(file, checkpoint)``: read with ``weights_only=True``, holding a seqnets config whose
    every target is allowed."""
    file = find_checkpoint(path, prefer)
    try:
        checkpoint = torch.load(file, map_location="cpu", weights_only=True)
    except Exception as error:  # garbage makes unpickling fail in many ways (even KeyError)
        first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise CheckpointError(
            f"{file} is not a readable checkpoint (truncated, corrupt or not a PyTorch file: "
            f"{first})"
        ) from None
    config = (
        checkpoint.get("hyper_parameters", {}).get("config")
        if isinstance(checkpoint, dict)
        else None
    )
    if not isinstance(config, dict) or "task" not in config or "state_dict" not in checkpoint:
        raise CheckpointError(
            f"{file} is not a seqnets checkpoint: it holds no run config (hyper_parameters.config)"
        )
    try:
        check_targets(config)
    except CheckpointError as error:
        raise CheckpointError(f"{file} is refused: {error}") from None
    return file, checkpoint


def rebuild(
    checkpoint: dict[str, Any], data_dir: str | None = None, **datamodule_changes: Any
) -> tuple[DictConfig, Any, SequenceModule]:
    """The run's config, DataModule and trained module, from a checkpoint alone. MNIST is read
    from ``data_dir`` when given (the run's own may be on another machine); other DataModule
    arguments may be changed too (e.g. the lengths to evaluate), if the task has them."""
    from seqnets.checks import build_checked

    config = OmegaConf.create(checkpoint["hyper_parameters"]["config"])
    node = config.task.datamodule
    if data_dir is not None and "data_dir" in node:
        node.data_dir = data_dir
    named = inspect.signature(get_method(node._target_)).parameters
    for key, value in datamodule_changes.items():
        if key not in node and key not in named:  # never a change silently ignored
            raise ConfigError(
                f"{key}={value!r} does not apply to a {config.task.name} checkpoint "
                f"({node._target_} takes no {key!r})"
            )
        node[key] = value
    datamodule = build_checked(node, "task.datamodule")
    module = SequenceModule.from_config(config, datamodule.num_features)
    module.load_state_dict(checkpoint["state_dict"])
    module.eval()
    return config, datamodule, module


def resume_config(cfg: DictConfig, overrides: list[str], finished_ok: bool = False) -> DictConfig:
    """The config of the run ``cfg.ckpt_path`` continues: the stored one, with this run's own
    paths (its new output directory, this machine's data directory) and the command line's
    value changes (e.g. ``trainer.max_epochs=5`` for a run stopped after 2)."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    from seqnets.checks import CONFIG_GROUPS

    file, checkpoint = load_checkpoint(cfg.ckpt_path, prefer="last")
    stored = records.current_targets(checkpoint["hyper_parameters"]["config"])
    old_paths = stored.get("paths", {})
    stored = records.reanchor(stored, old_paths.get("output_dir", ""), "${paths.output_dir}")
    stored = records.reanchor(stored, old_paths.get("data_dir", ""), "${paths.data_dir}")
    for key in records.REMOVED:  # settings of runs made before 0.2 that nothing reads now
        stored.pop(key, None)
    stored.get("callbacks", {}).pop("timer", None)  # max_time is Lightning's again
    resumed = OmegaConf.create(stored)
    resumed.paths = OmegaConf.to_container(cfg.paths, resolve=False)
    for override in OverridesParser.create().parse_overrides(overrides):
        key = override.key_or_group
        if key == "ckpt_path" or key.startswith("hydra"):
            continue
        if key in CONFIG_GROUPS or "/" in key or override.is_delete() or override.is_add():
            raise ConfigError(
                f"{override.input_line!r} is not allowed when resuming: a resumed run keeps its "
                f"checkpoint's config; only values may change (e.g. trainer.max_epochs=5)"
            )
        OmegaConf.update(resumed, key, override.value(), merge=True)
    resumed.ckpt_path = str(file)
    done = checkpoint["loops"]["fit_loop"]["epoch_progress"]["current"]["processed"]
    if done >= resumed.trainer.max_epochs:
        raise ConfigError(
            f"ckpt_path={str(file)!r} is a run that already trained trainer.max_epochs="
            f"{resumed.trainer.max_epochs} epochs (of task.max_epochs={resumed.task.max_epochs}): "
            f"to continue it, add trainer.max_epochs=N with N > {done}"
        )
    return resumed


def run_config(cfg: DictConfig, overrides: list[str]) -> DictConfig:
    """The config a run will really use: ``cfg``, or the resumed run's when ``ckpt_path`` is
    set."""
    return resume_config(cfg, overrides) if cfg.get("ckpt_path") else cfg

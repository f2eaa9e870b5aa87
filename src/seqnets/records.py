"""A run's record on disk: ``metrics.json`` beside its ``.hydra/`` config, in strict JSON.

Every tool that reads runs (the sweep summary, ``summarize``, the report) goes through
``read_run``, so they agree on what a run's status is: a directory without ``metrics.json``
is a run that never finished, and only a ``completed`` run holds test scores.
"""

from __future__ import annotations

import errno
import functools
import json
import math
import shutil
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from seqnets.errors import EXIT_FAILED, ConfigError, exit_usage

METRICS = "metrics.json"
COMPLETED, DIVERGED, FAILED = "completed", "diverged", "failed"
INTERRUPTED, INVALID = "interrupted", "invalid"
# A run directory that never wrote its record: killed, or still running.
UNFINISHED = "unfinished"
# A record that cannot be read (truncated, not JSON, not an object): the run may have finished.
UNREADABLE = "unreadable"
# A sweep job that found its run already done (``seqnets.reuse``): its record names that run.
REUSED = "reused"
# What a run writes into its directory; a failed run's directory is cleared of these only.
RUN_ENTRIES = (
    ".hydra",
    "train.log",
    "evaluate.log",
    "predict.log",
    "report.log",
    "tensorboard",
    "csv",
    "checkpoints",
    "figures",
    METRICS,
)


# Config keys that do not change what a run computes: where it writes and reads, its
# threads, the resume source, what it shows on screen. Runs differing only in these are the
# same run (the report reuses them; summaries group them).
VOLATILE = (
    "paths",
    "threads",
    # Settings of the second training loop, removed in 0.2: runs made before still hold
    # them, and are the same runs as those made since (the same steps, one per call).
    "steps_per_call",
    "loop",
    "ckpt_path",
    "sweep",  # how a sweep finds, claims and resumes runs (seqnets.reuse), not what they compute
    "callbacks.progress_bar",
    "callbacks.lr_monitor",  # what TensorBoard shows of the learning rate
    "callbacks.timer",  # a Timer without a duration, in every run made before 0.2
    "trainer.enable_progress_bar",
    "trainer.enable_model_summary",
)


# Classes that moved, by the ``_target_`` older runs stored: their configs (identity,
# resuming) read as if written today, so a move never makes a finished run look new.
MOVED_TARGETS = {"seqnets.callbacks.TestAnalysis": "seqnets.tasks.analysis.TestAnalysis"}


def current_targets(node: Any) -> Any:
    """A stored config with every moved ``_target_`` (:data:`MOVED_TARGETS`) renamed."""
    if isinstance(node, dict):
        return {
            k: MOVED_TARGETS.get(v, v) if k == "_target_" else current_targets(v)
            for k, v in node.items()
        }
    if isinstance(node, list):
        return [current_targets(v) for v in node]
    return node


# Top-level settings that no longer exist (the second training loop's): an old run's config
# may hold them; a command line that sets one gets one line saying so.
REMOVED = {
    "loop": "seqnets trains in Lightning's own loop only (the fast path was removed in 0.2)",
    "steps_per_call": "every call of the training step takes one step (removed in 0.2)",
}


def is_volatile(key: str) -> bool:
    """Whether the dotted ``key`` is, or lies under, one of :data:`VOLATILE`."""
    return any(key == v or key.startswith(v + ".") for v in VOLATILE)


def reanchor(node: Any, old: str, new: str) -> Any:
    """Strings equal to ``old`` or under it as a directory re-pointed to ``new``: a stored
    config's resolved paths made independent of where the run was."""
    if isinstance(node, dict):
        return {k: reanchor(v, old, new) for k, v in node.items()}
    if isinstance(node, list):
        return [reanchor(v, old, new) for v in node]
    if isinstance(node, str) and old and (node == old or node.startswith(old + "/")):
        return new + node[len(old) :]
    return node


def strict(value: Any) -> Any:
    """``value`` with every NaN or infinity replaced by None: strict JSON has no such tokens,
    and a diverged run's curves hold them."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {str(k): strict(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [strict(v) for v in value]
    return value


# What a full disk, a quota, a read-only mount or a missing permission raise.
WRITE_FAULTS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM})


class WriteError(OSError):
    """A file could not be written (disk full, no permission): the message names it."""


def write_fault(error: BaseException | None) -> str | None:
    """One line for a write fault anywhere in ``error``'s chain (Lightning and torch wrap
    what they catch), or None for any other error."""
    seen = set()
    while error is not None and id(error) not in seen:
        seen.add(id(error))
        if isinstance(error, WriteError):
            return str(error)
        if isinstance(error, OSError) and error.errno in WRITE_FAULTS:
            where = error.filename or "a file"
            return f"could not write {where}: {error.strerror or error}"
        error = error.__cause__ or error.__context__
    return None


def entry_point(main: Callable[..., Any]) -> Callable[..., Any]:
    """A command's Hydra entry point (``main(cfg)``) with the project's endings, in one place
    for every command: a ``ConfigError`` discards what the command wrote (the run directory
    Hydra made for it, when nothing else is in it) and ends with one line and exit code 2;
    a write fault ends with one line and exit code 1. Neither prints a traceback (Hydra
    would print one)."""

    @functools.wraps(main)
    def wrapper(cfg: Any, *args: Any, **kwargs: Any) -> Any:
        try:
            return main(cfg, *args, **kwargs)
        except ConfigError as error:
            out = (cfg.get("paths") or {}).get("output_dir")
            if out and (Path(out) / ".hydra").is_dir():  # a directory Hydra made for it
                discard_run_dir(out)  # the command never started: leave nothing
            exit_usage(str(error))
        except Exception as error:
            line = write_fault(error)
            if line is None:
                raise
            sys.stderr.write(f"seqnets: error: {line}\n")
            sys.exit(EXIT_FAILED)

    return wrapper


def write_metrics(run_dir: str | Path, metrics: dict[str, Any], name: str = METRICS) -> Path:
    """Write the record (or another JSON file of results); refuses non-strict JSON rather
    than writing it. The file is replaced whole or not at all: a reader never sees half a
    file, a failed write leaves the previous record and no temporary file, and raises a
    ``WriteError`` that names the file."""
    path = Path(run_dir) / name
    text = json.dumps(strict(metrics), indent=2, allow_nan=False)
    tmp = path.with_suffix(".json.tmp")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp.write_text(text)
        tmp.replace(path)
    except OSError as error:
        tmp.unlink(missing_ok=True)
        raise WriteError(f"could not write {path}: {error.strerror or error}") from None
    return path


def _reject_constant(name: str) -> None:
    raise ValueError(f"not strict JSON: {name}")


def loads_strict(text: str) -> Any:
    """Parse JSON, refusing the NaN/Infinity tokens Python's json module accepts by default."""
    return json.loads(text, parse_constant=_reject_constant)


def read_run(run_dir: str | Path, follow: bool = True) -> dict[str, Any]:
    """A run's record with its ``status`` and ``dir``; one without ``metrics.json`` (killed,
    or still running) or with an unreadable one is reported as such, never as a result.

    A sweep job that reused a run holds only a pointer to it: with ``follow`` its record is
    the reused run's (``dir`` that run's, ``reused_in`` the job's), so that tables show the
    result once, where it was made; without, the job's own pointer (the sweep's summary)."""
    run_dir = Path(run_dir)
    path = run_dir / METRICS
    if not path.exists():
        record = {"status": UNFINISHED}
    else:
        try:
            record = loads_strict(path.read_text())
            if not isinstance(record, dict):
                raise ValueError(f"a JSON {type(record).__name__}, not an object")
            record = {"status": COMPLETED, **record}
        except (ValueError, OSError) as error:  # truncated, garbage, unreadable file
            record = {"status": UNREADABLE, "error": f"unreadable {METRICS}: {error}"}
    if follow and record["status"] == REUSED and record.get("reused_from"):
        return read_run(record["reused_from"], follow=False) | {"reused_in": str(run_dir)}
    if "config" not in record:  # a run that stopped early still says what it was
        record["config"] = stored_config(run_dir)
    return record | {"dir": str(run_dir)}


def failure(run: dict[str, Any]) -> str:
    """Why a run has no scores, in a few words (summaries, sweep endings, the report)."""
    if run["status"] == DIVERGED:
        where = run["diverged"]
        return f"{where['what']} became {where['value']} at step {where['step']}"
    if run["status"] == UNFINISHED:
        return "no metrics.json (killed, or still running)"
    if run["status"] == REUSED:
        return f"reused {run.get('reused_from')}"
    return str(run.get("error") or "")


def stored_config(run_dir: Path) -> dict[str, Any] | None:
    """The run's config as Hydra saved it (``.hydra/config.yaml``), resolved, or None."""
    from omegaconf import OmegaConf

    path = Path(run_dir) / ".hydra" / "config.yaml"
    if not path.exists():
        return None
    try:
        config = OmegaConf.load(path)
        if "paths" in config:  # saved as ${hydra:runtime.output_dir}, which only Hydra resolves
            config.paths.output_dir = str(run_dir)
        return OmegaConf.to_container(config, resolve=True)
    except Exception:  # a hand-edited or foreign file: the run is still listed, unnamed
        return None


def run_dirs(root: str | Path) -> list[Path]:
    """Every run directory (one holding ``.hydra/``) at or below ``root``, sorted."""
    root = Path(root)
    found = {p.parent for p in root.rglob(".hydra")} if root.is_dir() else set()
    return sorted(found)


def discard_run_dir(run_dir: str | Path) -> None:
    """Remove what a run that never started wrote (its config copy, an empty log), then the
    directory if nothing else is in it: a user's own files there are never touched."""
    run_dir = Path(run_dir)
    for name in RUN_ENTRIES:
        entry = run_dir / name
        if entry.is_dir():
            shutil.rmtree(entry, ignore_errors=True)
        elif entry.exists():
            entry.unlink(missing_ok=True)
    for directory in (run_dir, *run_dir.parents):
        if directory.name == "outputs":
            break
        try:
            directory.rmdir()  # only if empty: a sweep's or a day's folder holding nothing else
        except OSError:
            break

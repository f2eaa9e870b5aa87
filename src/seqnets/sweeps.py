"""Runs and sweeps that fail well, wired into Hydra as a callback (``conf/hydra/default.yaml``).

- A single run's config is checked before Hydra creates its directory, so a bad value leaves
  nothing behind.
- Every job of a sweep is composed and checked before the first one starts: a sweep with one
  bad value among good ones runs nothing and names the bad job (Hydra would run the jobs before
  it, then stop the whole sweep at the bad one's ``sys.exit``).
- A job that fails while running (a divergence, a crash) does not stop the others; the sweep
  ends with a summary of the jobs that did not complete, read from their run directories, and
  exit code 1.
"""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from hydra.core.global_hydra import GlobalHydra
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf, open_dict

from seqnets import records, reuse, signals
from seqnets.checkpoints import load_checkpoint, run_config
from seqnets.checks import check_config
from seqnets.errors import EXIT_FAILED, EXIT_USAGE, ConfigError, exit_usage

BASIC_SWEEPER = "hydra._internal.core_plugins.basic_sweeper.BasicSweeper"
_composed = False  # set once Hydra has composed a config: later exits are not usage errors
# Each job's config as composed for the checks, by its overrides: the grouped launcher
# (``seqnets.grouping``) takes it rather than composing it again (a quarter second each).
COMPOSED: dict[tuple[str, ...], DictConfig] = {}


def sweep_jobs(config: DictConfig) -> list[list[str]] | None:
    """Each job's overrides, as Hydra's basic sweeper will form them (the experiment's
    ``hydra.sweeper.params`` and the command line's lists, crossed); None for sweepers that
    choose their jobs as they go (Optuna)."""
    from hydra._internal.core_plugins.basic_sweeper import BasicSweeper

    sweeper = config.hydra.sweeper
    if sweeper.get("_target_") != BASIC_SWEEPER:
        return None
    params = [f"{key}={value}" for key, value in (sweeper.get("params") or {}).items()]
    params += list(config.hydra.overrides.task)
    parser = OverridesParser.create(config_loader=GlobalHydra.instance().config_loader())
    return BasicSweeper.split_arguments(parser.parse_overrides(params), None)[0]


class RunGuard(Callback):
    """Checks before any work; a summary after a sweep."""

    started: float | None = None  # when the multirun started (time.time())

    def on_run_start(self, config: DictConfig, **kwargs: Any) -> None:
        global _composed
        _composed = True
        overrides = list(config.hydra.overrides.task)
        try:
            check_config(run_config(config, overrides), overrides)
            reuse.check_settings(config)
            _check_own_dir(config, Path(config.hydra.run.dir))
        except ConfigError as error:
            exit_usage(str(error))

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        global _composed
        _composed = True
        self.started = time.time()  # records older than this were reused where they lay
        storage = str(config.hydra.sweeper.get("storage") or "")
        if storage.startswith("sqlite:///"):  # SQLite makes the file, not its folder
            Path(storage.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
        jobs = sweep_jobs(config)
        if jobs is None:  # the sweeper picks values as it goes: check what is fixed now
            try:
                check_config(config, list(config.hydra.overrides.task), multirun=True)
            except ConfigError as error:
                exit_usage(str(error))
            return
        loader = GlobalHydra.instance().config_loader()
        problems = []
        for number, overrides in enumerate(jobs):
            job = loader.load_sweep_config(master_config=config, sweep_overrides=list(overrides))
            COMPOSED[tuple(overrides)] = job.copy()
            try:
                check_config(run_config(job, list(overrides)), overrides, multirun=True)
                reuse.check_settings(job)
                with open_dict(job):
                    job.hydra.job.num = number
                _check_own_dir(job, Path(job.hydra.sweep.dir) / job.hydra.sweep.subdir)
            except ConfigError as error:
                problems.append(f"job {number} ({' '.join(overrides)}): {error}")
        if problems:
            exit_usage(
                *problems, f"nothing was run: {len(problems)} of {len(jobs)} jobs are invalid"
            )

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        COMPOSED.clear()  # another launcher leaves them: they were for this sweep only
        lines, failed = summary(Path(config.hydra.sweep.dir), self.started)
        for line in lines:
            sys.stderr.write(f"seqnets: {line}\n")
        if failed:
            sys.exit(EXIT_FAILED)


def _check_own_dir(config: DictConfig, run_dir: Path) -> None:
    """A job's directory that already holds a run (a fixed ``hydra.run.dir`` or
    ``hydra.sweep.dir`` used again) is refused before Hydra writes into it, unless the job
    continues or reuses that very run (``reuse.occupant``)."""
    if not run_dir.is_dir() or config.get("ckpt_path"):
        return
    ident = reuse.job_identity(config, run_dir)
    resume = bool(OmegaConf.select(config, "sweep.resume", default=False))
    why = reuse.occupant(run_dir, ident, reuse=resume)
    if why is not None:
        raise ConfigError(why)


class CheckpointGuard(Callback):
    """For the commands that read a checkpoint (evaluate, predict): a missing, unreadable or
    refused checkpoint is reported before Hydra creates the command's output directory."""

    def on_run_start(self, config: DictConfig, **kwargs: Any) -> None:
        global _composed
        _composed = True
        try:
            load_checkpoint(config.ckpt_path)
        except ConfigError as error:
            exit_usage(str(error))


def summary(sweep_dir: Path, since: float | None = None) -> tuple[list[str], int]:
    """One line for the sweep (how many jobs completed; how many were reused, resumed,
    trained), one per job that did not complete; and how many did not."""
    dirs = records.run_dirs(sweep_dir)
    results = [records.read_run(d) for d in dirs]  # a reused job: the run it reused
    pairs = zip(dirs, results, strict=True)
    bad = [(d, run) for d, run in pairs if run["status"] != records.COMPLETED]
    done = reuse.count_outcomes(dirs, since)
    lines = [
        f"sweep finished: {len(results) - len(bad)} of {len(results)} jobs completed; "
        f"{done[reuse.REUSED]} reused, {done[reuse.RESUMED]} resumed, {done[reuse.TRAINED]} "
        f"trained, {len(bad)} not completed ({sweep_dir})"
    ]
    for job_dir, run in bad:
        detail = records.failure(run)
        via = f" (reused {run['dir']})" if run.get("reused_in") else ""
        lines.append(f"  {job_dir.name}: {run['status']}{via}{': ' if detail else ''}{detail}")
    return lines, len(bad)


def cli(main: Callable[[], Any]) -> None:
    """Run a Hydra entry point with this project's exit codes: Hydra exits 1 for every error,
    including a config that cannot be composed (an unknown option, ``debug=fats``), which is
    a usage error (2); a command stopped by SIGINT or SIGTERM exits 128 + the signal's
    number, in whichever phase it was (``seqnets.signals``)."""
    global _composed
    _composed = False
    for arg in sys.argv[1:]:
        key = arg.lstrip("+~").split("=", 1)[0]
        if key in records.REMOVED:
            exit_usage(f"{arg!r} is not allowed: {records.REMOVED[key]}; drop it")
    signals.install()
    _register_launcher()
    # A full disk fails every write to the run's log: one line says so, not a traceback per
    # log record (logging's documented switch for this).
    logging.raiseExceptions = False
    try:
        main()
    except SystemExit as done:
        if signals.state.received is not None and done.code in (EXIT_FAILED, None, 0):
            _stopped()  # Lightning ends a stop in its loops with exit code 1
        if done.code == EXIT_FAILED and not _composed:
            raise SystemExit(EXIT_USAGE) from None
        raise
    except KeyboardInterrupt:
        _stopped()


def _register_launcher() -> None:
    """``hydra/launcher=grouped`` (``seqnets.grouping``): Hydra finds launchers by walking the
    ``hydra_plugins`` package's folders, which an editable install does not show it (its
    import hook maps packages, not folders); registered here, it is found either way."""
    from hydra.core.plugins import Plugins

    from hydra_plugins.seqnets_launcher.grouped import GroupedLauncher

    Plugins.instance().register(GroupedLauncher)


def _stopped() -> None:
    received = signals.state.received
    sys.stderr.write(f"seqnets: stopped by {signals.name(received)}\n")
    raise SystemExit(signals.exit_code(received)) from None

"""``hydra/launcher=grouped``: the sweep's jobs planned, groups trained, every job run."""

from __future__ import annotations

import logging
import multiprocessing
import os
import signal
import sys
import time
from collections.abc import Callable, Sequence
from functools import partial
from pathlib import Path
from typing import Any

import lightning as L
import torch
from hydra.core.hydra_config import HydraConfig
from hydra.core.utils import JobReturn, configure_log, run_job, setup_globals
from hydra.utils import instantiate
from lightning.pytorch.callbacks import LearningRateMonitor, ProgressBar
from omegaconf import DictConfig, OmegaConf, open_dict

from seqnets import records, reuse, signals, sweeps
from seqnets.callbacks import InterruptCheckpoint
from seqnets.claims import Claim
from seqnets.errors import ConfigError, check_int, check_real, exit_usage
from seqnets.grouping.book import GroupBook, Member, MemberCheckpointIO
from seqnets.grouping.module import GroupedModule
from seqnets.grouping.plan import (
    PLAYED,
    Job,
    alongside,
    already_done,
    assign,
    plan_groups,
    prepare,
    split_for_lanes,
    target_class,
)
from seqnets.runtime import resolve_threads, side_by_side, skip_failing_nvml_check
from seqnets.train import Fitted, build, run

log = logging.getLogger(__name__)
# How the sweep's process passes a stop on to its lanes (see _lane_process).
FORWARD = signal.SIGUSR1


def train_group(
    cfgs: list[DictConfig], run_dirs: list[Path], group_dir: Path, launcher: Any = None
) -> list[Fitted]:
    """Train the members (their run configs, resolved) as one fit; how each ended."""
    first = cfgs[0]
    torch.set_num_threads(resolve_threads(first.get("threads"), launcher))
    skip_failing_nvml_check()
    modules, members = [], []
    for cfg, run_dir in zip(cfgs, run_dirs, strict=True):
        L.seed_everything(cfg.seed, workers=True)  # as its solo run: the same first weights
        _, module, solo = build(cfg)
        modules.append(module)
        played = [c for c in solo.callbacks if isinstance(c, PLAYED)]
        members.append(Member(cfg, run_dir, played))
    L.seed_everything(first.seed, workers=True)
    datamodule = instantiate(first.task.datamodule)
    module = GroupedModule(modules)
    monitors = [target_class(n._target_) for n in first.callbacks.values() if n is not None]
    book = GroupBook(members, any(c and issubclass(c, LearningRateMonitor) for c in monitors))
    io = MemberCheckpointIO()
    io.module, io.book = module, book
    interrupt = InterruptCheckpoint(str(group_dir))
    shows = first.trainer.get("enable_progress_bar", True)
    watchers = [
        instantiate(node)
        for node in first.callbacks.values()
        if node is not None
        and (
            alongside(cls := target_class(node._target_) or object)
            or (shows and issubclass(cls, ProgressBar))
        )
    ]
    trainer = instantiate(
        first.trainer,
        callbacks=[book, interrupt, *watchers],
        logger=False,
        plugins=[io],
        enable_model_summary=False,
        default_root_dir=str(group_dir),
    )
    log.info(
        "training %d runs as one group: %s",
        len(members),
        ", ".join(m.backbone.describe() for m in modules),
    )
    try:
        trainer.fit(module, datamodule=datamodule)
    except (SystemExit, KeyboardInterrupt):
        pass  # every active member is marked interrupted, its state saved (GroupBook)
    except Exception as error:  # a bug: each member's job records it as its solo run would
        log.exception("the group's training failed")
        for k in module.active:
            members[k].fitted.status, members[k].fitted.error = records.FAILED, error
    for member in members:
        member.fitted.steps = [(s, float(v)) for s, v in member.fitted.steps]
        member.fitted.more = {
            "grouped": {
                "members": len(members),
                "runs": [str(m.run_dir) for m in members],
                "note": "train_time_s is the group's time until this run stopped",
            }
        }
    return [m.fitted for m in members]


def launch(
    hydra_context: Any,
    task_function: Callable[[DictConfig], Any],
    config: DictConfig,
    job_overrides: Sequence[Sequence[str]],
    initial_job_idx: int,
    max_members: int = 32,
    memory_gb: float | None = None,
    n_jobs: int = -1,
) -> list[JobReturn]:
    """Hydra's sweep, grouped: every job's config composed as the basic launcher composes
    it; the groups and the jobs that train alone shared out among ``n_jobs`` processes
    (-1: one per core), each of one thread's share of the cores; in each, a group is
    trained, then each of its jobs tested and recorded in its own directory by Hydra's
    ``run_job``, as any other job is run."""
    try:
        if memory_gb is None:
            memory_gb = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 4 / 2**30
        check_int("hydra.launcher.max_members", max_members, 1)
        budget = check_real("hydra.launcher.memory_gb", memory_gb, 0.0, low_open=True) * 2**30
        lanes = side_by_side(config.hydra.launcher)
    except ConfigError as error:
        exit_usage(str(error))
    setup_globals()
    configure_log(config.hydra.hydra_logging, config.hydra.verbose)
    Path(str(config.hydra.sweep.dir)).mkdir(parents=True, exist_ok=True)
    jobs = []
    for offset, overrides in enumerate(job_overrides):
        number = initial_job_idx + offset
        job_config = sweeps.COMPOSED.pop(tuple(overrides), None)
        if job_config is None:
            job_config = hydra_context.config_loader.load_sweep_config(config, list(overrides))
        with open_dict(job_config):
            job_config.hydra.job.id = number
            job_config.hydra.job.num = number
        jobs.append(Job(number, list(overrides), job_config))
    for job in jobs:
        prepare(job)
    units = plan_groups(jobs, max_members, budget)
    if "fork" not in multiprocessing.get_all_start_methods():
        lanes = 1  # the lanes are forked (no pickling of Hydra's task function)
    units = split_for_lanes(units, lanes)
    for unit in units:
        if len(unit) > 1:
            log.info("trained as one: jobs %s", ", ".join(str(j.number) for j in unit))
    run = partial(_run_unit, hydra_context, task_function, config)
    done = _run_lanes([u for u in assign(units, lanes) if u], run)
    if signals.state.received is not None:
        sys.stderr.write(
            f"seqnets: sweep stopped by {signals.name(signals.state.received)}; the same "
            f"command with sweep.resume=true resumes every run from its checkpoint\n"
        )
        sys.exit(signals.exit_code(signals.state.received))
    return [done[job.number] for job in jobs if job.number in done]


def _run_lanes(
    lanes: list[list[list[Job]]], run: Callable[[list[Job]], dict[int, JobReturn]]
) -> dict[int, JobReturn]:
    """Each lane's units, one after another: in this process for one lane, else in a forked
    process per lane. A signal here is passed on to every lane, which stops as a run does
    (saving what trains), and the sweep ends once every lane has."""
    if len(lanes) == 1:
        return _run_lane(lanes[0], run)
    context = multiprocessing.get_context("fork")
    queue = context.SimpleQueue()
    asked = context.Value("i", 0)  # the signal passed on (FORWARD carries no number)
    workers = [
        context.Process(target=_lane_process, args=(lane, run, queue, asked), daemon=False)
        for lane in lanes
    ]
    for worker in workers:
        worker.start()
    done: dict[int, JobReturn] = {}
    reported = 0
    while reported < len(workers):
        try:
            while queue.empty() and any(w.is_alive() for w in workers):
                time.sleep(0.2)
            if queue.empty():  # a lane died without reporting (killed): its jobs say so
                log.error("a lane of the sweep ended without reporting")
                break
            received, part = queue.get()
            reported += 1
            done |= part
            if received is not None and signals.state.received is None:
                signals.state.received = received
        except KeyboardInterrupt:  # asked to stop: every lane stops as a run stops
            asked.value = signals.state.received or signal.SIGINT
            for worker in workers:
                if worker.is_alive():
                    os.kill(worker.pid, FORWARD)
    for worker in workers:
        worker.join()
    return done


def _lane_process(lanes: list[list[Job]], run: Callable, queue: Any, asked: Any) -> None:
    """A lane's process. A stop comes to it directly (Ctrl-C in a terminal reaches the whole
    process group) or passed on by the sweep's process (a SIGTERM sent to it alone), often
    both: passed on as FORWARD, it counts only if the lane was not asked already (a second
    stop signal would stop the lane at once, in the middle of a step)."""
    signals.install()

    def passed_on(signum: int, frame: Any) -> None:
        if signals.state.received is None:
            signals.handle(asked.value, frame)

    signal.signal(FORWARD, passed_on)
    done = {}
    try:
        done = _run_lane(lanes, run)
    except KeyboardInterrupt:  # stopped before a group trained: nothing of it to save
        pass
    finally:
        queue.put((signals.state.received, done))


def _run_lane(
    units: list[list[Job]], run: Callable[[list[Job]], dict[int, JobReturn]]
) -> dict[int, JobReturn]:
    done: dict[int, JobReturn] = {}
    for unit in units:
        if signals.state.received is not None:
            break  # stopped: what did not start is not started now
        done |= run(unit)
    return done


def _run_unit(
    hydra_context: Any, task_function: Callable, config: DictConfig, unit: list[Job]
) -> dict[int, JobReturn]:
    """A group trained, then each of its jobs run by Hydra (tested and recorded); a job
    alone run as Hydra runs any job."""
    fitted: dict[int, Fitted] = {}
    claims: dict[int, Claim] = {}
    done: dict[int, JobReturn] = {}
    try:
        held = _claim(unit, claims) if len(unit) > 1 else []
        if len(held) < 2:  # no group left to train: the solo path claims its own runs
            for claim in claims.values():
                claim.release()
            claims.clear()
        else:
            # The group's Trainer's own folder, in name only: every checkpoint it saves goes
            # to its members' run directories (MemberCheckpointIO), and it logs nowhere.
            group_dir = Path(str(config.hydra.sweep.dir)) / ".groups" / str(held[0].number)
            launcher = config.hydra.launcher
            results = train_group(
                [j.run_cfg for j in held], [j.run_dir for j in held], group_dir, launcher
            )
            fitted = {j.number: f for j, f in zip(held, results, strict=True)}
        # The trained members first, each run's claim given back once it is recorded: a
        # job left to the solo path may wait for another sweep's claim, and that sweep for
        # one of ours.
        for job in sorted(unit, key=lambda j: j.number not in fitted):
            if signals.state.received is not None and job.number not in fitted:
                continue
            task = task_function
            if job.number in fitted:
                task = partial(_member_task, fitted[job.number])
            HydraConfig.instance().set_config(job.config)
            done[job.number] = run_job(
                hydra_context=hydra_context,
                task_function=task,
                config=job.config,
                job_dir_key="hydra.sweep.dir",
                job_subdir_key="hydra.sweep.subdir",
            )
            if job.number in claims:
                claims.pop(job.number).release()
            configure_log(config.hydra.hydra_logging, config.hydra.verbose)
    finally:
        for claim in claims.values():
            claim.release()
    return done


def _claim(group: list[Job], claims: dict[int, Claim]) -> list[Job]:
    """The members this process may train: with ``sweep.resume``, each run is claimed, then
    looked for again (as ``reuse.job`` does: what is found then stays so while the claim
    is held). A run another sweep is training, or has finished since the plan was made, is
    left to the solo path, which waits for it and reuses it."""
    held = []
    for job in group:
        settings = job.run_cfg.get("sweep")
        if settings is None or not settings.resume:
            held.append(job)
            continue
        ident = reuse.identity(OmegaConf.to_container(job.run_cfg))
        claim = Claim(Path(settings.runs_dir) / reuse.CLAIMS, ident, job.run_dir, settings)
        if claim.take() is not None:
            continue
        if already_done(job):
            claim.release()
            continue
        claims[job.number] = claim
        held.append(job)
    return held


def _member_task(fitted: Fitted, cfg: DictConfig) -> Any:
    """A group member's job: tested and recorded as its solo run would be."""
    return records.entry_point(partial(run, fitted=fitted))(cfg)

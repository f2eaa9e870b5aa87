"""Which runs a report needs, which of them already exist, and training the rest.

A report run is an experiment config and a seed; what makes two runs the same (their
identity), finding them and training them without ever training one twice is
``seqnets.reuse``, shared with the sweeps of ``python -m seqnets.train -m``. A completed run
under ``outputs/`` with the planned identity is reused, so an interrupted build resumes where
it stopped and a second build with nothing changed trains nothing. The missing runs are
trained through the same CLI a user types, as Hydra multiruns (the joblib launcher runs jobs
side by side) with ``sweep.resume=true``: each job reuses a run finished meanwhile (by a build
started beside this one), resumes a killed one, or trains it under a claim; this process
reports progress from their run directories.
"""

from __future__ import annotations

import subprocess
import sys
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from hydra import compose
from hydra.core.global_hydra import GlobalHydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, OmegaConf, open_dict

from seqnets import records, reuse
from seqnets.cost import run_minutes
from seqnets.errors import check_bool
from seqnets.runtime import Progress
from seqnets.tasks import task_of


@dataclass
class Planned:
    """One run the report needs, and the run directory that holds it once found."""

    section: str
    experiment: str
    seed: int
    identity: str
    config: dict[str, Any] = field(default_factory=dict, repr=False)  # as planned, resolved
    cost: float = 0.0  # estimated minutes, for job order and the time left (missing runs)
    run: dict[str, Any] | None = field(default=None)

    @property
    def name(self) -> str:
        return f"{self.experiment} seed {self.seed}"


def planned_config(overrides: list[str]) -> dict[str, Any]:
    """The resolved config ``python -m seqnets.train <overrides>`` would run (its directory a
    placeholder), composed with the report's own Hydra."""
    cfg = compose(config_name="train", overrides=[*overrides, *searchpath_overrides()])
    with open_dict(cfg):
        cfg.paths.output_dir = reuse.RUN
    return OmegaConf.to_container(cfg, resolve=True)


def estimate(config: dict[str, Any]) -> float:
    """Estimated minutes of a planned run (``seqnets.cost``, the same estimate a run makes of
    itself): orders the jobs (heaviest first) and gives the first estimate of the time left.
    The task's DataModule is built from the config, which reads no files."""
    cfg = OmegaConf.create(config)
    training, study = run_minutes(cfg, task_of(config["task"]).datamodule())
    return training + study


def searchpath_overrides() -> list[str]:
    """``hydra.searchpath=[...]`` as the report was given it (none: ``[]``), for every config
    it composes and every training command it starts: a user's own config folder (their
    tasks, models and experiments) is found by the report exactly as by the train command."""
    try:
        entries = list(HydraConfig.get().searchpath)
    except ValueError:  # not inside a Hydra app (a test composing on its own)
        return []
    return [f"hydra.searchpath=[{','.join(entries)}]"] if entries else []


def experiments_of(cfg: DictConfig, section: str) -> list[str]:
    """The section's experiments: report.yaml's ``experiments.<section>``, else every
    ``experiment/<section>/*.yaml`` of every folder of Hydra's search path (the package's
    configs and the user's ``hydra.searchpath``), sorted, so a new task needs no edit here.
    Listed through Hydra's own config loader, so configs shipped inside the package are found
    as well as those in a folder."""
    listed = (cfg.get("experiments") or {}).get(section)
    if listed is not None:
        return list(listed)
    if not GlobalHydra.instance().is_initialized():
        raise RuntimeError("experiments_of lists configs through Hydra: initialize it first")
    loader = GlobalHydra.instance().config_loader()
    names = loader.get_group_options(
        f"experiment/{section}", config_name="train", overrides=searchpath_overrides()
    )
    return [f"{section}/{name}" for name in sorted(names)]


def sections_found() -> list[str]:
    """The folders of ``experiment/`` in Hydra's search path: the sections a report can
    build without an ``experiments`` entry."""
    from hydra.core.object_type import ObjectType

    loader = GlobalHydra.instance().config_loader()
    return sorted(
        loader.get_group_options(
            "experiment", ObjectType.GROUP, config_name="train", overrides=searchpath_overrides()
        )
    )


def make_plan(cfg: DictConfig) -> list[Planned]:
    """Every (experiment, seed) of the chosen sections, with its identity."""
    plan = []
    for section in cfg.sections:
        for experiment in experiments_of(cfg, section):
            for seed in cfg.seeds:
                overrides = [f"experiment={experiment}", f"seed={seed}", *budget(cfg)]
                config = planned_config(overrides)
                plan.append(
                    Planned(section, experiment, seed, reuse.identity(config), config=config)
                )
    return plan


def budget(cfg: DictConfig) -> list[str]:
    """Overrides every run of this build gets: the quick mode's tiny budgets."""
    return list(cfg.quick_overrides) if cfg.quick else []


def find_done(plan: list[Planned], roots: list[Path]) -> list[dict[str, Any]]:
    """Attach to each planned run its run directory: the newest one with its identity that
    completed or diverged (a diverged run is a result: the same seed would diverge again),
    else the newest other (failed, unfinished), so the report can say so. Returns every run
    read."""
    by_identity, seen = reuse.index(roots)
    for item in plan:
        candidates = by_identity.get(item.identity, [])
        final = [r for r in candidates if is_final(r)]
        item.run = reuse.newest(final) or reuse.newest(candidates)
    return seen


# The statuses that are a report's results; a run found failed is trained again.
FINAL = (records.COMPLETED, records.DIVERGED)
RETRAIN = tuple(status for status in reuse.RESULTS if status not in FINAL)


def is_final(record: dict[str, Any]) -> bool:
    return record["status"] in FINAL


def is_done(item: Planned) -> bool:
    return item.run is not None and is_final(item.run)


def train_missing(cfg: DictConfig, plan: list[Planned], log_path: Path, say: Any) -> Counter:
    """Train every planned run that is not done, heaviest first, as multiruns of the real CLI
    (one per set of seeds still missing), reporting progress from their run directories.
    Returns how many of their jobs were reused (finished meanwhile by a build beside this
    one), resumed and trained."""
    missing = [item for item in plan if not is_done(item)]
    done: Counter = Counter()
    if not missing:
        say("every run is already there: nothing to train")
        return done
    for item in missing:
        item.cost = estimate(item.config)
    by_identity = {item.identity: item for item in missing}
    by_experiment: dict[str, list[Planned]] = defaultdict(list)
    for item in missing:
        by_experiment[item.experiment].append(item)
    # One multirun per set of seeds still missing (one in all, from clean outputs), heaviest
    # experiments first, so that the two workers finish together.
    groups: dict[tuple[int, ...], list[str]] = defaultdict(list)
    for experiment, items in sorted(by_experiment.items(), key=lambda kv: -kv[1][0].cost):
        groups[tuple(sorted(i.seed for i in items))].append(experiment)
    found = len(plan) - len(missing)
    guess = sum(i.cost for i in missing) / max(1, cfg.parallel)
    say(
        f"{len(missing)} of {len(plan)} runs to train ({found} found done); first estimate "
        f"{guess:.0f} min, refined as runs finish"
    )
    clock, runs_done = Progress(sum(i.cost for i in missing)), 0
    for seeds, experiments in groups.items():
        stamp = datetime.now().strftime("%Y-%m-%d/%H-%M-%S-%f")
        sweep_dir = Path(cfg.runs_dir) / "multirun" / stamp
        command = [
            "-m",
            f"experiment={','.join(experiments)}",
            f"seed={','.join(map(str, seeds))}",
            *budget(cfg),
            *searchpath_overrides(),
            *launcher(cfg),
            f"hydra.sweep.dir={sweep_dir}",
            "callbacks.progress_bar.refresh_rate=0",
            "trainer.enable_model_summary=false",
            "sweep.resume=true",
            f"sweep.runs_dir={cfg.runs_dir}",
            f"sweep.retrain=[{','.join(RETRAIN)}]",
        ]
        say("training: python -m seqnets.train " + " ".join(command))
        with open(log_path, "a") as log:
            process = subprocess.Popen(
                [sys.executable, "-m", "seqnets.train", *command],
                stdout=log,
                stderr=subprocess.STDOUT,
            )
            finished: set[Path] = set()
            while True:
                exited = process.poll() is not None
                for run_dir in records.run_dirs(sweep_dir):
                    if run_dir in finished or not (run_dir / records.METRICS).exists():
                        continue
                    finished.add(run_dir)
                    record = records.read_run(run_dir)
                    config = record["config"]
                    item = by_identity.get(reuse.identity(config)) if config else None
                    clock.advance(item.cost if item else 0.0)
                    runs_done += 1
                    say(progress_line(clock, (runs_done, len(missing)), record, sweep_dir))
                if exited:
                    break
                time.sleep(2)
        if process.returncode not in (0, 1):  # 1: some jobs failed, which the report shows
            raise SystemExit(process.returncode)
        done += reuse.count_outcomes(records.run_dirs(sweep_dir))
    return done


def progress_line(
    clock: Progress, runs: tuple[int, int], record: dict[str, Any], sweep_dir: Path
) -> str:
    """``run n of N``, what finished, what is training, and the time left (from the
    estimated minutes of the runs done so far against the time they took)."""
    running = [d.name for d in records.run_dirs(sweep_dir) if not (d / records.METRICS).exists()]
    status = "" if record["status"] == records.COMPLETED else f" ({record['status']})"
    status += " (reused: trained by another build meanwhile)" if record.get("reused_in") else ""
    return (
        f"run {runs[0]} of {runs[1]} done: {Path(record['dir']).name}{status}; "
        f"training: {', '.join(running) or '-'}; {clock.elapsed() / 60:.1f} min so far, "
        f"about {clock.left() / 60:.0f} min left"
    )


def launcher(cfg: DictConfig) -> list[str]:
    """Runs grouped (``report.group``), or jobs side by side on this machine (one torch
    thread each), or one at a time."""
    if check_bool("group", cfg.get("group", False)):
        return ["hydra/launcher=grouped", f"hydra.launcher.n_jobs={cfg.parallel}"]
    if cfg.parallel > 1:
        return ["hydra/launcher=joblib", f"hydra.launcher.n_jobs={cfg.parallel}"]
    return []

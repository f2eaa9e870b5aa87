"""``python -m seqnets.report``: plan, train what is missing, render (``conf/report.yaml``)."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import time
from collections import Counter
from datetime import datetime
from pathlib import Path

import hydra
from omegaconf import DictConfig

from seqnets import CONFIG_PATH, __version__, records, reuse
from seqnets.report import plan as planning
from seqnets.report.render import render_all
from seqnets.runtime import environment
from seqnets.sweeps import cli

log = logging.getLogger(__name__)


def git_commit() -> str:
    """The code's commit, marked when the working tree has changes, when this package runs
    from a git checkout of seqnets (an editable install); an installed package has no commit
    (its folder may even sit inside another project's repository), so its version is named."""
    package = Path(__file__).resolve().parents[1]

    def git(*args: str) -> str:
        done = subprocess.run(
            ["git", *args], cwd=package, capture_output=True, text=True, check=True
        )
        return done.stdout.strip()

    try:
        if Path(git("rev-parse", "--show-toplevel")).resolve() / "src" / "seqnets" == package:
            dirty = git("status", "--porcelain", "--untracked-files=no")
            commit = git("rev-parse", "--short=12", "HEAD")
            return commit + (" (with uncommitted changes)" if dirty else "")
    except (OSError, subprocess.CalledProcessError):
        pass
    return f"unknown (seqnets {__version__}, not run from a git checkout)"


def commands(cfg: DictConfig) -> dict[str, str]:
    """The command that reproduces each section's table, and its runs."""
    quick = " quick=true" if cfg.quick else ""
    seeds = ",".join(map(str, cfg.seeds))
    search = "".join(f" '{o}'" for o in planning.searchpath_overrides())
    out = {}
    for section in planning_sections(cfg):
        experiments = ",".join(planning.experiments_of(cfg, section))
        out[section] = (
            f"python -m seqnets.report sections=[{section}] seeds=[{seeds}]{quick}{search}  (its "
            f"runs: python -m seqnets.train -m experiment={experiments} seed={seeds}"
            f"{''.join(' ' + o for o in planning.budget(cfg))}{search})"
        )
    return out


def planning_sections(cfg: DictConfig) -> list[str]:
    """The chosen sections, each with at least one experiment config; a section without one
    says where its configs go (a user's task: their own config folder, on the search path)."""
    unknown = [s for s in cfg.sections if not planning.experiments_of(cfg, s)]
    if unknown:
        from seqnets.errors import ConfigError

        known = sorted(set(cfg.experiments) | set(planning.sections_found()))
        raise ConfigError(
            f"sections={list(cfg.sections)} is not allowed: no experiment configs for "
            f"{', '.join(unknown)} (choose from {', '.join(known)}). A section is a folder of "
            f"experiment configs: write <your conf>/experiment/{unknown[0]}/<run>.yaml (a "
            f"'# @package _global_' file choosing task and model; `python -m seqnets.new task "
            f"{unknown[0]}` writes one) and add hydra.searchpath=[file://<your conf>]"
        )
    return list(cfg.sections)


def build(cfg: DictConfig) -> Path:
    """Plan, train what is missing, render; returns the report's directory."""
    start = time.monotonic()
    # The user's own values, checked before any training: a bad one must not cost a build.
    sections = planning_sections(cfg)
    if cfg.handwriting:
        from seqnets.data.images import find_images

        find_images(cfg.handwriting)
    out = Path(cfg.paths.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    progress = open(out / "progress.log", "a")  # noqa: SIM115 - kept open for the build

    def say(message: str) -> None:
        line = f"[report {datetime.now():%H:%M:%S}] {message}"
        print(line, flush=True)
        progress.write(line + "\n")
        progress.flush()

    say(f"planning {', '.join(sections)} x seeds {list(cfg.seeds)}")
    plan = planning.make_plan(cfg)
    roots = reuse.roots(cfg.runs_dir)
    planning.find_done(plan, roots)
    found = sum(planning.is_done(p) for p in plan)
    jobs = Counter()
    if cfg.train:
        jobs = planning.train_missing(cfg, plan, out / "training.log", say)
        planning.find_done(plan, roots)
    env = environment()
    machines = sorted(
        {
            f"{p.run['machine']['platform']} ({p.run['machine']['cores']} cores)"
            for p in plan
            if p.run and p.run.get("machine") and "cores" in p.run["machine"]
        }
    )
    info = {
        "date": datetime.now().strftime("%Y-%m-%d %H:%M"),
        "wall_s": time.monotonic() - start,
        "trained": jobs[reuse.TRAINED] + jobs[reuse.RESUMED],
        "reused": found + jobs[reuse.REUSED],
        "machine": env["machine"],
        "versions": env["versions"],
        "commit": git_commit(),
        "command": "python -m seqnets.report " + " ".join(sys.argv[1:]),
        "commands": commands(cfg),
        "run_machines": machines,
    }
    render_all(
        plan,
        out,
        sections,
        list(cfg.seeds),
        dict(cfg.inside or {}),
        info,
        str(cfg.handwriting) if cfg.handwriting else None,
        str(cfg.paths.data_dir),
    )
    latest = out.parent / "latest"
    if latest.is_symlink() or not latest.exists():
        latest.unlink(missing_ok=True)
        latest.symlink_to(out.name)
    minutes = (time.monotonic() - start) / 60
    say(f"report written: {out / 'report.md'} and report.html ({minutes:.1f} min)")
    progress.close()
    return out


@hydra.main(version_base="1.3", config_path=CONFIG_PATH, config_name="report")
@records.entry_point
def main(cfg: DictConfig) -> None:
    build(cfg)  # a ConfigError: no report, and no empty build left (records.entry_point)


if __name__ == "__main__":
    os.environ.setdefault("MPLBACKEND", "Agg")
    cli(main)

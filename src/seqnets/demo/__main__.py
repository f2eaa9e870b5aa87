"""``python -m seqnets.demo``: serve the demo page on this machine until Ctrl-C.

The page has a tab for each task of the runs found (a user's own task included) and for each
task of ``small_runs``; a task there with no run gets a line saying which command trains one,
and in a terminal the command offers to train a small one first.
"""

from __future__ import annotations

import logging
import subprocess
import sys
from pathlib import Path
from typing import Any

import hydra
import torch
from omegaconf import DictConfig

from seqnets import CONFIG_PATH, records
from seqnets.demo.catalog import Run, best_per_task, find_runs, from_checkpoint
from seqnets.errors import ConfigError, check_choice, check_int
from seqnets.runtime import resolve_threads
from seqnets.sweeps import cli

IDLE_POLL_S = 0.01  # how often the idle page's queue looks for work
RUN_NAME = "${now:%H-%M-%S-%f}_${task.name}_${model.cell}"


def check(cfg: DictConfig) -> None:
    """Every setting, before anything is loaded or served."""
    if cfg.port is not None:
        check_int("port", cfg.port, 1, 65535)
    check_int("max_input", cfg.max_input, 2)
    check_choice("train_missing", str(cfg.train_missing).lower(), ("ask", "true", "false"))
    if not isinstance(cfg.host, str) or not cfg.host:
        raise ConfigError(f"host={cfg.host!r} is not allowed: give an address, e.g. 127.0.0.1")


def gather(cfg: DictConfig) -> tuple[list[Run], dict[str, Run]]:
    """Every run the page offers, and the one each task starts with: ``ckpt_path``'s for its
    task, else the best under ``runs_dir``."""
    runs = find_runs(cfg.runs_dir)
    defaults = best_per_task(runs)
    if cfg.ckpt_path:
        chosen = from_checkpoint(cfg.ckpt_path)
        same = [r for r in runs if r.checkpoint.resolve() == chosen.checkpoint.resolve()]
        chosen = same[0] if same else chosen
        runs = [chosen] + [r for r in runs if r is not chosen]
        defaults[chosen.task] = chosen
    return runs, defaults


def train_command(cfg: DictConfig, task: str) -> str:
    """The command that trains a small run of ``task``."""
    return "python -m seqnets.train " + " ".join(cfg.small_runs[task])


def missing_lines(cfg: DictConfig, defaults: dict[str, Run]) -> dict[str, str]:
    """For each task without a run, what the page says instead of answering."""
    return {
        task: (
            f"No completed {task} run under {cfg.runs_dir}/: train one with "
            f"{train_command(cfg, task)} and start the demo again."
        )
        for task in cfg.small_runs
        if task not in defaults
    }


def offer_training(cfg: DictConfig, missing: list[str]) -> bool:
    """Train a small run of each missing task, if the user agrees (or said so in advance)."""
    choice = str(cfg.train_missing).lower()
    if choice == "false" or (choice == "ask" and not sys.stdin.isatty()):
        return False
    if choice == "ask":
        print(f"seqnets demo: no completed run of {', '.join(missing)} under {cfg.runs_dir}/.")
        for task in missing:
            print(f"  {train_command(cfg, task)}")
        answer = input("Train these small runs now (a few minutes on 2 cores)? [y/N] ")
        if answer.strip().lower() not in ("y", "yes"):
            return False
    for task in missing:
        # A new directory per run, named as train names its own, under runs_dir.
        where = Path(cfg.runs_dir) / "runs" / "${now:%Y-%m-%d}" / RUN_NAME
        args = [*cfg.small_runs[task], f"hydra.run.dir={where}"]
        print(f"seqnets demo: training {task}: {train_command(cfg, task)}", flush=True)
        done = subprocess.run([sys.executable, "-m", "seqnets.train", *args], check=False)
        if done.returncode != 0:
            print(f"seqnets demo: training {task} failed (exit {done.returncode})")
    return True


def tab_specs(cfg: DictConfig, runs: list[Run], defaults: dict[str, Run]) -> list[Any]:
    """One tab per task: those of ``small_runs`` first (in that order), then every other task
    a run was found for. Each tab is what the task declares (``Task.demo_tab``)."""
    from seqnets.demo.page import TabSpec
    from seqnets.tasks import task_class

    missing = missing_lines(cfg, defaults)
    names = list(cfg.small_runs) + [t for t in defaults if t not in cfg.small_runs]
    specs = []
    for name in names:
        default = defaults.get(name)
        task = default.task_object() if default else task_class(name)({"name": name})
        offered = [run for run in runs if run.task == name]
        specs.append(TabSpec(name, task.demo_tab(), offered, default, missing.get(name)))
    return specs


def serve(cfg: DictConfig, runs: list[Run], defaults: dict[str, Run]) -> None:
    """Load the default networks (so that no answer pays for a load), build the page, serve
    it."""
    import gradio as gr

    from seqnets.demo.answers import Models
    from seqnets.demo.page import build

    logging.getLogger("httpx").setLevel(logging.WARNING)  # Gradio's own startup requests
    torch.set_num_threads(resolve_threads(cfg.threads))
    models = Models(runs, data_dir=cfg.paths.data_dir)
    for run in defaults.values():
        models.get(str(run.checkpoint))
    page = build(tab_specs(cfg, runs, defaults), models, cfg.max_input)
    # System fonts: the page loads nothing from outside this machine.
    theme = gr.themes.Default(
        font=["system-ui", "sans-serif"], font_mono=["ui-monospace", "monospace"]
    )
    try:
        page.launch(
            server_name=cfg.host,
            server_port=cfg.port,
            theme=theme,
            ssr_mode=False,
            quiet=True,
            prevent_thread_lock=True,
            footer_links=[],
        )
    except OSError as error:  # the port is taken, or the address is not this machine's
        raise ConfigError(f"the page cannot be served on {cfg.host}:{cfg.port}: {error}") from None
    quiet_when_idle(page)
    for task, run in defaults.items():
        print(f"seqnets demo: {task}: {run.label}")
    for line in missing_lines(cfg, defaults).values():
        print(f"seqnets demo: {line}")
    print(f"seqnets demo: serving on {page.local_url} (Ctrl-C to stop)", flush=True)
    try:
        page.block_thread()
    finally:
        page.close()


def quiet_when_idle(page: Any) -> None:
    """Gradio's queue looks for work every millisecond while idle, about a tenth of a core
    (measured here) for a page that mostly waits; every 10 ms costs a tenth of that and adds
    at most 10 ms to an answer. Gradio has no setting for it, hence its private attribute."""
    queue = getattr(page, "_queue", None)
    if queue is not None and hasattr(queue, "sleep_when_free"):
        queue.sleep_when_free = max(queue.sleep_when_free, IDLE_POLL_S)
        queue.progress_update_sleep_when_free = max(
            queue.progress_update_sleep_when_free, 10 * IDLE_POLL_S
        )


@hydra.main(version_base="1.3", config_path=CONFIG_PATH, config_name="demo")
@records.entry_point
def main(cfg: DictConfig) -> None:
    check(cfg)
    runs, defaults = gather(cfg)
    missing = [task for task in cfg.small_runs if task not in defaults]
    if missing and offer_training(cfg, missing):
        runs, defaults = gather(cfg)
    serve(cfg, runs, defaults)


if __name__ == "__main__":
    cli(main)

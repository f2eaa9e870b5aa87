"""Run directories -> the report (``report.md``, ``report.html``, ``figures/``,
``results.json``). Reads only the runs' files; each section is written by its task
(``Task.report_section``, ``Task.report_inside``), so nothing here names a task.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from seqnets.reportkit.document import Document
from seqnets.reportkit.stats import Row, best_on_validation
from seqnets.tasks import task_class, task_of
from seqnets.tasks.base import Task


@dataclass
class Context:
    """What a section needs beyond its rows: its name (the key of its numbers in
    results.json), the commands that reproduce it, and the build's own options."""

    section: str
    number: int
    command: str
    seeds: list[int]
    handwriting: str | None = None  # a folder of a person's own images to read
    data_dir: str | None = None
    used: set[str] = field(default_factory=set)  # options a section took up ("handwriting")


def rows_of(plan: list[Any], section: str, seeds: list[int]) -> list[Row]:
    """The section's experiments in plan order, each with its runs over the seeds."""
    mine = [p for p in plan if p.section == section]
    planned = {p.experiment: p.config for p in mine}
    runs = {(p.experiment, p.seed): p.run for p in mine}
    return [Row(e, [runs.get((e, s)) for s in seeds], list(seeds), c) for e, c in planned.items()]


def task_for(section: str, rows: list[Row]) -> Task:
    """The section's Task, from its runs' (or planned) task config."""
    config = next((r.config["task"] for r in rows if r.config.get("task")), None)
    return task_of(config) if config is not None else task_class(section)({"name": section})


def header(doc: Document, info: dict[str, Any]) -> None:
    doc.add("# seqnets report")
    machine = info["machine"]
    doc.add(
        f"Built {info['date']} in **{info['wall_s'] / 60:.1f} min** (training included: "
        f"{info['trained']} runs trained, {info['reused']} reused) on {machine['platform']}, "
        f"{machine['processor']}, {machine['cores']} cores"
        + (f", {machine['cuda']}" if machine.get("cuda") else "")
        + "."
    )
    versions = ", ".join(f"{k} {v}" for k, v in info["versions"].items() if v)
    doc.add(f"Code: commit `{info['commit']}`. Libraries: {versions}.")
    doc.add(f"Rebuild this report: `{info['command']}`.")
    if info.get("run_machines"):
        doc.add("Runs trained on: " + "; ".join(info["run_machines"]) + ".")
    doc.results["build"] = info


def inside_section(doc: Document, picks: list[tuple[Task, Row]]) -> None:
    doc.add("## Inside the networks")
    doc.add(
        "What a trained network keeps in its state, drawn from a run's checkpoint at the end of "
        "training (`figures/inside_*.png` in every run; `python -m seqnets.evaluate "
        "ckpt_path=<run>` draws them for any checkpoint)."
    )
    doc.results["inside"] = {}
    for task, row in picks:
        task.report_inside(doc, row)


def render_all(
    plan: list[Any],
    out: Path,
    sections: list[str],
    seeds: list[int],
    inside: dict[str, str],
    info: dict[str, Any],
    handwriting: str | None = None,
    data_dir: str | None = None,
) -> Document:
    """Write report.md, report.html, figures/ and results.json into ``out``. ``inside``:
    the experiment each section's inside figures come from (a section without an entry: its
    best experiment on validation)."""
    doc = Document(out)
    header(doc, info)
    picks = []
    used: set[str] = set()
    for number, section in enumerate(sections, 1):
        rows = rows_of(plan, section, seeds)
        task = task_for(section, rows)
        doc.add(f"## {number}. {task.title}")
        context = Context(
            section, number, info["commands"][section], seeds, handwriting, data_dir, used
        )
        task.report_section(doc, rows, context)
        if section in inside:
            pick = next((r for r in rows if r.experiment == inside[section]), None)
        else:
            pick = best_on_validation(rows)
        if pick is not None and pick.completed:
            picks.append((task, pick))
    if picks:
        inside_section(doc, picks)
    if handwriting and "handwriting" not in used:
        doc.add("## Own handwriting")
        doc.add(
            f"`{handwriting}` was not read: no section of this report "
            f"({', '.join(sections)}) reads a person's own images."
        )
    doc.results["runs"] = [
        {
            "section": p.section,
            "experiment": p.experiment,
            "seed": p.seed,
            "identity": p.identity,
            "dir": p.run["dir"] if p.run else None,
            "status": p.run["status"] if p.run else "not run",
        }
        for p in plan
    ]
    doc.write()
    return doc

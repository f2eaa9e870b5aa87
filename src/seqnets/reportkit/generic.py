"""The default report section of any task (``Task.report_module``), and the parts the tasks'
own sections share: what the runs measured, observations from the numbers and from what the
rows' configs vary, the length and training-curve figures, and the inside subsection.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from seqnets import plots
from seqnets.data.batching import limited_batches
from seqnets.reportkit.document import Document, bullets, table
from seqnets.reportkit.settings import Varied, common, one_apart, show
from seqnets.reportkit.stats import (
    Getter,
    Row,
    Stat,
    compare,
    field,
    mean_curve,
    model_name,
    monitor_mode,
    test_metric,
)


# -- what the runs measured ---------------------------------------------------------------
def test_metrics(rows: Sequence[Row]) -> list[str]:
    """The scalar test metrics the completed runs recorded (``acc`` for ``test/acc``)."""
    names: set[str] = set()
    for row in rows:
        for run in row.completed:
            for key, value in (run.get("test") or {}).items():
                if key.startswith("test/") and isinstance(value, int | float):
                    names.add(key.removeprefix("test/"))
    return sorted(names)


def main_metric(rows: Sequence[Row]) -> tuple[str, bool] | None:
    """The test metric a section's observations compare, and whether lower is better: the
    test counterpart of the monitored validation metric, else the first one recorded."""
    names = test_metrics(rows)
    monitors = {r.config.get("task", {}).get("monitor") for r in rows if r.config}
    monitor = monitors.pop() if len(monitors) == 1 else None
    if monitor and monitor.removeprefix("val/") in names:
        return monitor.removeprefix("val/"), monitor_mode(list(rows)) == "min"
    if "acc" in names:
        return "acc", False
    return (names[0], "loss" in names[0]) if names else None


def length_metric(rows: Sequence[Row]) -> str | None:
    """The metric the runs measured against length (``by_length``), accuracy first."""
    keys: list[str] = []
    for row in rows:
        for run in row.completed:
            for entry in run.get("by_length", [])[:1]:
                keys += [k for k in entry if k not in ("length", "samples", *keys)]
    if not keys:
        return None
    return next((k for k in ("acc", "bit_acc") if k in keys), keys[0])


def trained_lengths(task: Any, config: dict[str, Any]) -> tuple[int, int] | None:
    """The shortest and longest training sequence of a run, from its task's DataModule
    (built from the config, reading no files); None when it cannot be built."""
    try:
        datamodule = type(task)(config["task"]).datamodule()
        _, longest = datamodule.train_work()
    except Exception:  # a run of an older config: the report still renders
        return None
    return getattr(datamodule, "min_len", longest), longest


def scored_count(task: Any, config: dict[str, Any]) -> int | None:
    """How many test items the run scored: as many batches as ``limit_test_batches`` let
    through."""
    try:
        datamodule = type(task)(config["task"]).datamodule()
        total, batch = datamodule.test_size, datamodule.eval_batch_size
    except Exception:  # a run of an older config: the report still renders
        return None
    limit = (config.get("trainer") or {}).get("limit_test_batches")
    return min(total, limited_batches(limit, math.ceil(total / batch)) * batch)


# -- observations -------------------------------------------------------------------------
def holds(task: Any, row: Row, name: str, metric: str, what: str) -> str | None:
    """From which length ``metric`` (mean over the row's runs) drops below 99 %, or that it
    never does, and whether that is within the training lengths or beyond them."""
    curve = mean_curve(row.completed, metric)
    if not curve:
        return None
    below = next((n for n, v in curve if v < 0.99), None)
    if below is None:
        return f"{name}: {what} stays at 99 % or more at every length measured (to {curve[-1][0]})."
    trained = trained_lengths(task, row.config)
    beyond = below > (trained[1] if trained else curve[-1][0])
    where = "beyond the training lengths" if beyond else "within the training lengths"
    return f"{name}: {what} drops below 99 % from length {below} ({where})."


def contrast(group: Varied, a: Row, b: Row) -> str:
    """What sets row ``a`` apart from row ``b``: ``model.hidden 256 vs 128``."""
    va, vb = group.values[group.rows.index(a)], group.values[group.rows.index(b)]
    return " and ".join(
        f"{k} {show(x)} vs {show(y)}" for k, x, y in zip(group.keys, va, vb, strict=True)
    )


def varied_sentence(
    group: Varied,
    get: Getter,
    label: str,
    scale: float = 100,
    unit: str = " points",
    lower_is_better: bool = False,
    extra: Callable[[Row, Row], str] | None = None,
    digits: int = 2,
) -> str:
    """One sentence on rows that differ in one setting: for two, the later row against the
    earlier; for more, their ranking and the best against the worst. Names the setting,
    every value and every row."""
    stats = {r.experiment: r.stat(get) for r in group.rows}

    def versus(a: Row, b: Row) -> str:
        sa, sb = stats[a.experiment], stats[b.experiment]
        verdict = compare(a.name, sa, b.name, sb, scale, unit, lower_is_better, digits)
        return verdict + (extra(a, b) if extra else "")

    if len(group.rows) == 2:
        b, a = group.rows
        return (
            f"{contrast(group, a, b)} ({a.name} vs {b.name}, all else alike), {label}: "
            f"{versus(a, b)}."
        )
    scored = [r for r in group.rows if stats[r.experiment].mean is not None]
    names = "; ".join(f"{r.name}: {group.value(r)}" for r in group.rows)
    if len(scored) < 2:
        return f"{group.what} ({names}; all else alike): not enough completed runs to compare."
    scored.sort(key=lambda r: stats[r.experiment].mean, reverse=not lower_is_better)
    ranking = " > ".join(f"{r.name} ({stats[r.experiment].text(scale, digits)})" for r in scored)
    verdict = versus(scored[0], scored[-1])
    return f"{group.what} ({names}; all else alike), {label}: {ranking}; {verdict}."


def best_sentence(
    rows: Sequence[Row],
    get: Getter,
    label: str,
    scale: float = 100,
    lower: bool = False,
    unit: str = "",
    digits: int = 2,
) -> str | None:
    """The row with the best mean, against the runner-up."""
    stats = {r.experiment: r.stat(get) for r in rows}
    ranked = sorted(
        (r for r in rows if stats[r.experiment].mean is not None),
        key=lambda r: stats[r.experiment].mean,
        reverse=not lower,
    )
    if not ranked:
        return None
    top = ranked[0]
    sentence = f"{'Lowest' if lower else 'Highest'} mean {label}: {top.name} "
    sentence += f"({stats[top.experiment].text(scale, digits)}{unit})"
    if len(ranked) > 1:
        second, points = ranked[1], "" if lower else " points"
        a, b = stats[top.experiment], stats[second.experiment]
        sentence += "; " + compare(top.name, a, second.name, b, scale, points, lower, digits)
    return sentence + "."


def observations(task: Any, rows: list[Row]) -> list[str]:
    out = []
    metric = main_metric(rows)
    if metric is not None:
        name, lower = metric
        get, label = test_metric(name), f"test {name}"
        # Accuracies in percent (points); an error, as it is, to 4 decimals.
        scale, unit, digits = (1.0, "", 4) if lower else (100.0, " points", 2)
        if (first := best_sentence(rows, get, label, scale, lower, digits=digits)) is not None:
            out.append(first)
        for group in one_apart(rows):
            out.append(
                varied_sentence(
                    group, get, label, scale, unit, lower_is_better=lower, digits=digits
                )
            )
    along = length_metric(rows)
    if along and along.endswith("acc"):  # "holds at 99 %" reads accuracies only
        out += [
            s for row in rows if row.completed and (s := holds(task, row, row.name, along, along))
        ]
    return out or ["No completed runs to observe."]


# -- figures ------------------------------------------------------------------------------
def length_figure(
    doc: Document,
    rows: Sequence[Row],
    metric: str,
    name: str,
    title: str,
    caption: str,
    label: Callable[[Row], str] = lambda r: r.name,
    trained: tuple[int, int] | None = None,
) -> None:
    series = {label(r): mean_curve(r.completed, metric) for r in rows if r.completed}
    series = {k: v for k, v in series.items() if v}
    if series:
        figure = plots.accuracy_by_length_lines(series, title, trained=trained, metric=metric)
        doc.figure(figure, name, caption)


def curves_figure(
    doc: Document,
    rows: Sequence[Row],
    name: str,
    title: str,
    caption: str,
    label: Callable[[Row], str] = lambda r: r.name,
) -> None:
    curves = {label(r): r.completed for r in rows if r.completed}
    if curves:
        doc.figure(plots.training_curves(curves, title), name, caption)


# -- the default section ------------------------------------------------------------------
def scores(doc: Document, context: Any, text: str, numbers: list[dict], said: list[str]) -> None:
    """A section's table, the command that reproduces it, its numbers and its observations."""
    doc.add(text)
    doc.add(f"Command: `{context.command}`")
    doc.results[context.section] = {"table": numbers}
    doc.add("### Observations")
    doc.add(bullets(said))


def section(task: Any, doc: Document, rows: list[Row], context: Any) -> None:
    """A table of every experiment's scores, observations and figures, for any task."""
    mode = monitor_mode(rows)
    monitor = common(rows, lambda c: c["task"]["monitor"])
    seeds = ", ".join(map(str, context.seeds))
    doc.add(
        f"{len(rows)} experiment{'s' * (len(rows) != 1)} of the {task.name} task, seeds "
        f"{seeds}. Mean ± standard deviation over the seeds that completed; the best checkpoint "
        f"of each run is chosen on {monitor} ({'higher' if mode == 'max' else 'lower'} is "
        f"better)."
    )
    metrics = test_metrics(rows)
    lines, results = [], []
    for row in rows:
        task_config = row.config.get("task", {})
        val = row.stat(field("best_val"))
        tests: dict[str, Stat] = {m: row.stat(test_metric(m)) for m in metrics}
        lines.append(
            [
                row.name,
                model_name(row.config),
                *(show(task_config.get(k)) for k in task.setting_keys),
                val.text(digits=4),
                *(s.text(digits=4) for s in tests.values()),
                row.status(),
            ]
        )
        results.append(
            {"experiment": row.experiment, "best_val": val.record()}
            | {f"test/{m}": s.record() for m, s in tests.items()}
        )
    measured = [f"best {monitor}", *(f"test {m}" for m in metrics)]
    header = ["run", "model", *task.setting_keys, *measured]
    scores(doc, context, table([*header, "runs"], lines), results, observations(task, rows))
    along = length_metric(rows)
    if along:
        configs = [r.config for r in rows if r.config]
        ranges = {trained_lengths(task, c) for c in configs}
        trained = ranges.pop() if len(ranges) == 1 else None
        length_figure(
            doc,
            rows,
            along,
            f"{context.section}_length",
            f"{task.name}: {along} against sequence length",
            f"{along} against sequence length, mean over seeds"
            + ("; shaded: the training lengths" if trained else ""),
            trained=trained,
        )
    curves_figure(
        doc,
        rows,
        f"{context.section}_curves",
        f"{task.name}: training curves (mean over seeds)",
        "Training loss per iteration and the validation metrics per epoch, every run",
    )


def inside(
    task: Any,
    doc: Document,
    row: Row,
    describe: Callable[[dict[str, Any], dict[str, Any]], Any] | None = None,
) -> None:
    """The run's part of "Inside the networks". ``describe(numbers, config)`` (a task's
    ``inside_figures``) gives the sentence (or None) and ``{figure stem: caption}``, or None
    when the run has not the numbers; without it, every ``inside_*.png`` the run drew."""
    run = row.completed[0]
    numbers = run.get("inside") or {}
    doc.results.setdefault("inside", {})[task.name] = {"dir": run["dir"], **numbers}
    if describe is not None:
        described = describe(numbers, row.config)
        sentence, figures = described or (None, {})
        if sentence:
            doc.add(sentence)
        for stem, caption in figures.items():
            doc.copy_figure(run, stem, stem, caption)
        return
    figures = sorted((Path(run["dir"]) / "figures").glob("inside_*.png"))
    doc.add(
        f"**{task.title}, {model_name(row.config)}:** "
        + (
            numbers.get("note")
            or f"{len(figures)} figure{'s' * (len(figures) != 1)} from its test analysis."
        )
    )
    for path in figures:
        doc.copy_figure(run, path.stem, f"{task.name}_{path.stem}", path.stem.replace("_", " "))

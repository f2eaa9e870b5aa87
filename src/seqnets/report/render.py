"""Run directories -> the report: Markdown with its PNG figures, one self-contained HTML file,
and ``results.json`` with every number the tables show.

Reads only the runs' files (``metrics.json``, their figures); trains nothing. Numbers over
seeds are mean ± standard deviation of the runs that completed; a run that failed, diverged
or never finished is shown as such in its table and never averaged in. Every observation is a
sentence computed from the measured numbers.
"""

from __future__ import annotations

import base64
import json
import re
import shutil
import statistics
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from seqnets import plots, records
from seqnets.data.binary_add import parse_train_len
from seqnets.models.backbone import describe_model
from seqnets.report import references as ref

LENGTHS = (10, 20, 50, 100)  # where section 3's tables read accuracy against length
DASH = "\u2013"  # a table cell with no value


@dataclass
class Row:
    """One experiment of a section: its runs over the seeds (None where none was found)."""

    experiment: str
    runs: list[dict[str, Any] | None]
    seeds: list[int]
    planned: dict[str, Any] | None = None  # the config as planned, when no run has one

    @property
    def completed(self) -> list[dict[str, Any]]:
        return [r for r in self.runs if r is not None and r["status"] == records.COMPLETED]

    @property
    def config(self) -> dict[str, Any]:
        found = [r for r in self.runs if r is not None and r.get("config")]
        return found[0]["config"] if found else self.planned or {}

    def values(self, get: Getter) -> list[tuple[int, str, float]]:
        """(seed, run directory, value) of every completed run that has the value."""
        out = []
        for seed, run in zip(self.seeds, self.runs, strict=True):
            if run is not None and run["status"] == records.COMPLETED:
                value = get(run)
                if value is not None:
                    out.append((seed, run["dir"], value))
        return out

    def stat(self, get: Getter) -> Stat:
        return Stat(self.values(get), get.source)

    def problems(self) -> list[str]:
        """What went wrong with this experiment's runs, one phrase per seed."""
        out = []
        for seed, run in zip(self.seeds, self.runs, strict=True):
            if run is None:
                out.append(f"seed {seed}: not run")
            elif run["status"] == records.DIVERGED:
                where = run["diverged"]
                out.append(f"seed {seed}: **diverged** at step {where['step']}")
            elif run["status"] != records.COMPLETED:
                out.append(f"seed {seed}: **{run['status']}**")
        return out


class Stat:
    """Mean and spread over seeds of one number, and where each value came from."""

    def __init__(self, values: list[tuple[int, str, float]], source: str = "") -> None:
        self.values, self.source = values, source
        numbers = [v for _, _, v in values]
        self.n = len(numbers)
        self.mean = statistics.fmean(numbers) if numbers else None
        self.std = statistics.stdev(numbers) if len(numbers) > 1 else 0.0 if numbers else None

    def text(self, scale: float = 1.0, digits: int = 2, unit: str = "") -> str:
        if self.mean is None:
            return DASH
        spread = f" ± {self.std * scale:.{digits}f}" if self.n > 1 else ""
        return f"{self.mean * scale:.{digits}f}{spread}{unit}"

    def record(self) -> dict[str, Any]:
        return {
            "mean": self.mean,
            "std": self.std,
            "n": self.n,
            "source": self.source,  # where in each run's metrics.json the value comes from
            "runs": [{"seed": s, "dir": d, "value": v} for s, d, v in self.values],
        }

    def beats(self, other: Stat) -> bool | None:
        """Whether this one is higher by more than the spread of both (None: a tie)."""
        if self.mean is None or other.mean is None:
            return None
        margin = (self.std or 0.0) + (other.std or 0.0)
        if abs(self.mean - other.mean) <= margin:
            return None
        return self.mean > other.mean


class Getter:
    """Reads one number from a run's record; ``source`` says where, in results.json, so that
    every number shown can be traced back to its run's metrics.json."""

    def __init__(self, source: str, read: Callable[[dict[str, Any]], float | None]) -> None:
        self.source, self.read = source, read

    def __call__(self, run: dict[str, Any]) -> float | None:
        return self.read(run)


def field(name: str) -> Getter:
    """A top-level number of metrics.json (``best_val``, ``num_parameters``)."""
    return Getter(name, lambda run: run.get(name))


def test_metric(name: str) -> Getter:
    return Getter(f"test/{name}", lambda run: run["test"].get(f"test/{name}"))


def _at_lengths(run: dict[str, Any], low: int, high: int, metric: str) -> list[float]:
    return [r[metric] for r in run.get("by_length", []) if low <= r["length"] <= high]


def by_length(length: int, metric: str) -> Getter:
    def read(run: dict[str, Any]) -> float | None:
        values = _at_lengths(run, length, length, metric)
        return values[0] if values else None

    return Getter(f"by_length[{length}].{metric}", read)


def mean_over_lengths(low: int, high: int, metric: str) -> Getter:
    def read(run: dict[str, Any]) -> float | None:
        values = _at_lengths(run, low, high, metric)
        return statistics.fmean(values) if values else None

    return Getter(f"mean(by_length[{low}..{high}].{metric})", read)


seconds_per_epoch = Getter(
    "train_time_s/epochs_trained",
    lambda run: run["train_time_s"] / run["epochs_trained"] if run.get("epochs_trained") else None,
)


def model_name(config: dict[str, Any]) -> str:
    m = config.get("model") or {}
    if not m:
        return "?"
    return describe_model(m["cell"], m["hidden"], m["num_layers"], m["bidirectional"])


def run_label(config: dict[str, Any]) -> str:
    """A binary-add run in a few words: ``lstm h=5 ce L=3``."""
    task = config.get("task", {})
    return f"{model_name(config)} {task.get('loss', '?')} L={task.get('train_len', '?')}"


def signed(value: float | None, digits: int = 2) -> str:
    return DASH if value is None else f"{value:+.{digits}f}"


def table(header: Sequence[str], rows: list[Sequence[Any]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


class Report:
    """Builds the Markdown, copies and draws figures, collects every shown number."""

    def __init__(self, out: Path) -> None:
        self.out = out
        self.figures = out / "figures"
        self.figures.mkdir(parents=True, exist_ok=True)
        self.parts: list[str] = []
        self.results: dict[str, Any] = {}

    def add(self, text: str) -> None:
        self.parts.append(text.strip("\n") + "\n")

    def figure(self, fig: Any, name: str, caption: str) -> None:
        fig.savefig(self.figures / f"{name}.png", dpi=110)
        self.add(f"![{caption}](figures/{name}.png)\n\n*{caption}*")

    def copy_figure(self, run: dict[str, Any] | None, source: str, name: str, caption: str) -> bool:
        path = Path(run["dir"]) / "figures" / f"{source}.png" if run else None
        if path is None or not path.exists():
            return False
        shutil.copyfile(path, self.figures / f"{name}.png")
        self.add(f"![{caption}](figures/{name}.png)\n\n*{caption}* (from `{run['dir']}`)")
        return True

    def markdown(self) -> str:
        return "\n".join(self.parts)

    def write(self) -> None:
        text = self.markdown()
        (self.out / "report.md").write_text(text)
        (self.out / "report.html").write_text(self_contained_html(text, self.out))
        (self.out / "results.json").write_text(
            json.dumps(records.strict(self.results), indent=2, allow_nan=False)
        )


def self_contained_html(text: str, base: Path) -> str:
    """The Markdown as one HTML file that opens offline: figures embedded as data URIs."""
    import markdown

    body = markdown.markdown(text, extensions=["tables", "fenced_code"])

    def embed(match: re.Match) -> str:
        data = base64.b64encode((base / match.group(1)).read_bytes()).decode()
        return f'src="data:image/png;base64,{data}"'

    body = re.sub(r'src="(figures/[^"]+\.png)"', embed, body)
    style = (
        "body{font-family:sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;"
        "line-height:1.45}table{border-collapse:collapse;font-size:0.9em;margin:1em 0}"
        "td,th{border:1px solid #bbb;padding:3px 7px}th{background:#eee}"
        "img{max-width:100%}code,pre{background:#f5f5f5}"
    )
    return (
        '<!DOCTYPE html><html><head><meta charset="utf-8"><title>seqnets report</title>'
        f"<style>{style}</style></head><body>{body}</body></html>"
    )


# -- section 1: MNIST -----------------------------------------------------------------------
def mnist_section(report: Report, rows: list[Row], commands: dict[str, str]) -> None:
    report.add("## 1. MNIST read row by row")
    report.add(
        "Each image is a sequence of 28 rows of 28 pixels; the digit is read from the final "
        "state. 50k training / 10k validation images (a fixed split), the 10k test images for "
        "the scores below. Mean ± standard deviation over the seeds that completed; the best "
        "checkpoint of each run is chosen on validation accuracy."
    )
    lines, results = [], []
    acc = {r.experiment: r.stat(test_metric("acc")) for r in rows}
    for row in rows:
        cfg, test = row.config, acc[row.experiment]
        refs = ref.MNIST.get(row.experiment, {})
        model = cfg.get("model", {})
        val = row.stat(field("best_val"))
        speed = row.stat(seconds_per_epoch)
        params = row.values(field("num_parameters"))
        diffs = {
            k: (test.mean * 100 - v if test.mean is not None and v is not None else None)
            for k, v in refs.items()
        }
        lines.append(
            [
                row.experiment.split("/")[-1],
                model.get("cell", "?"),
                model.get("hidden", "?"),
                model.get("num_layers", "?"),
                "bi" if model.get("bidirectional") else "uni",
                cfg.get("l2") or DASH,
                f"{params[0][2]:,}" if params else DASH,
                speed.text(digits=1),
                val.text(100),
                f"**{test.text(100)}**",
                DASH if refs.get("A") is None else f"{refs['A']:.2f}",
                signed(diffs.get("A")),
                DASH if refs.get("B") is None else f"{refs['B']:.2f}",
                signed(diffs.get("B")),
                "; ".join(row.problems()) or "ok",
            ]
        )
        results.append(
            {
                "experiment": row.experiment,
                "test_acc": test.record(),
                "best_val_acc": val.record(),
                "seconds_per_epoch": speed.record(),
                "parameters": params[0][2] if params else None,
                "report_A": refs.get("A"),
                "report_B": refs.get("B"),
            }
        )
    report.add(
        table(
            [
                "run",
                "cell",
                "hidden",
                "layers",
                "direction",
                "L2",
                "params",
                "s/epoch",
                "best val acc %",
                "test acc %",
                "report A %",
                "Δ A",
                "report B %",
                "Δ B",
                "runs",
            ],
            lines,
        )
    )
    report.add(f"Command: `{commands['mnist']}`")
    report.results["mnist"] = {"table": results}
    report.add("### Observations")
    report.add("\n".join(f"- {s}" for s in mnist_observations(rows)))

    curves = {r.experiment.split("/")[-1]: r.completed for r in rows if r.completed}
    if curves:
        report.figure(
            plots.training_curves(curves, "MNIST: training curves (mean over seeds)"),
            "mnist_curves",
            "Training loss per iteration (smoothed) and train/validation accuracy and loss per "
            "epoch, every run",
        )
    best = best_row(rows, field("best_val"), monitor_mode(rows))
    if best is not None:
        pick = max if monitor_mode(rows) == "max" else min
        run = pick(
            (r for r in best.completed if r.get("best_val") is not None),
            key=lambda r: r["best_val"],
        )
        name = best.experiment.split("/")[-1]
        report.add(
            f"### The best run on validation: {name} (seed {run['seed']}, test accuracy "
            f"{run['test']['test/acc'] * 100:.2f} %)"
        )
        if "confusion_matrix" in run:
            import torch

            report.figure(
                plots.confusion_matrix(torch.tensor(run["confusion_matrix"]), f"{name}: test"),
                "mnist_confusion",
                f"Confusion matrix of {name} on the 10k test images",
            )
            report.add(classification_table(run["classification_report"]))
            report.results["mnist"]["best_run"] = {
                "dir": run["dir"],
                "classification_report": run["classification_report"],
            }
        report.copy_figure(run, "samples", "mnist_samples", "The same ten test images in every run")
        pairs = run.get("confused_pairs", [])
        if pairs:
            report.add(
                "Most confused digit pairs: "
                + ", ".join(f"{p['true']} read as {p['pred']} ({p['count']}x)" for p in pairs)
            )
            report.copy_figure(
                run, "confused_pairs", "mnist_mistakes", "The misclassified test images"
            )


def classification_table(cr: dict[str, Any]) -> str:
    lines = []
    for key in [str(d) for d in range(10)] + ["macro avg", "weighted avg"]:
        v = cr[key]
        lines.append(
            [key, f"{v['precision']:.4f}", f"{v['recall']:.4f}", f"{v['f1']:.4f}", v["support"]]
        )
    lines.append(["accuracy", "", "", f"{cr['accuracy']:.4f}", cr["macro avg"]["support"]])
    return table(["digit", "precision", "recall", "F1", "support"], lines)


def monitor_mode(rows: list[Row]) -> str:
    """Whether the section's monitored validation metric is better high ("max") or low."""
    modes = {r.config.get("task", {}).get("monitor_mode", "max") for r in rows if r.config}
    return modes.pop() if len(modes) == 1 else "max"


def best_row(rows: list[Row], get: Getter, mode: str = "max") -> Row | None:
    """The row whose mean of ``get`` is best (highest, or lowest with ``mode="min"``),
    among rows that have such a mean at all."""
    scored = [(stat.mean, r) for r in rows if (stat := r.stat(get)).mean is not None]
    pick = max if mode == "max" else min
    return pick(scored, key=lambda t: t[0])[1] if scored else None


def compare(
    name_a: str, a: Stat, name_b: str, b: Stat, scale: float = 100, unit: str = " points"
) -> str:
    """A sentence on two numbers over seeds: which is higher and by how much, or a tie when
    the difference is within the spread over seeds."""
    if a.mean is None or b.mean is None:
        return f"{name_a} vs {name_b}: not enough completed runs to compare"
    verdict = a.beats(b)
    if verdict is None:
        return (
            f"{name_a} ({a.text(scale)}) and {name_b} ({b.text(scale)}) tie: the difference, "
            f"{abs(a.mean - b.mean) * scale:.2f}{unit}, is within the spread over seeds"
        )
    (win, high), (lose, low) = ((name_a, a), (name_b, b)) if verdict else ((name_b, b), (name_a, a))
    return (
        f"{win} beats {lose} by {(high.mean - low.mean) * scale:.2f}{unit} "
        f"({high.text(scale)} vs {low.text(scale)})"
    )


def mnist_observations(rows: list[Row]) -> list[str]:
    by = {r.experiment.split("/")[-1]: r for r in rows}
    acc = {k: r.stat(test_metric("acc")) for k, r in by.items()}
    speed = {k: r.stat(seconds_per_epoch) for k, r in by.items()}

    def slower(a: str, b: str) -> str:
        """How many times the time per epoch of ``a`` is that of ``b``."""
        if not (speed[a].mean and speed[b].mean):
            return ""
        return (
            f", at {speed[a].mean / speed[b].mean:.1f}x the time per epoch "
            f"({speed[a].text(digits=1)} s vs {speed[b].text(digits=1)} s)"
        )

    out = []
    ranked = sorted((s.mean, k) for k, s in acc.items() if s.mean is not None)
    if ranked:
        top = ranked[-1][1]
        sentence = f"Highest mean test accuracy: {top} ({acc[top].text(100)} %)"
        if len(ranked) > 1:
            second = ranked[-2][1]
            sentence += "; " + compare(top, acc[top], second, acc[second])
        out.append(sentence + ".")
    cells = [k for k in ("lstm_128", "gru_128", "rnn_128") if k in acc and acc[k].mean is not None]
    if len(cells) >= 2:
        order = sorted(cells, key=lambda k: -acc[k].mean)
        ranking = " > ".join(f"{k.split('_')[0].upper()} ({acc[k].text(100)} %)" for k in order)
        best, worst = order[0], order[-1]
        out.append(
            f"At hidden 128 the cells rank {ranking}; "
            f"{compare(best, acc[best], worst, acc[worst])}."
        )
    pairs = (
        ("Bidirectionality", "bilstm_128", "lstm_128"),
        ("Bidirectionality", "birnn_128", "rnn_128"),
        ("Hidden size", "rnn_256", "rnn_128"),
        ("A second layer", "rnn_128_2layers", "rnn_128"),
        (
            "L2 (report A's lambda 0.001 on weights, in place of weight decay)",
            "lstm_128_l2",
            "lstm_128",
        ),
    )
    for what, a, b in pairs:
        if a in acc and b in acc:
            out.append(f"{what}: {compare(a, acc[a], b, acc[b])}{slower(a, b)}.")
    short, beats = [], 0
    for k, s in acc.items():
        for name, value in ref.MNIST.get(f"mnist/{k}", {}).items():
            if value is None or s.mean is None:
                continue
            if s.mean * 100 > value:
                beats += 1
            else:
                short.append(f"{k} ({s.text(100)} %) is below report {name}'s {value:.2f} %")
    if beats or short:
        verdict = ": " + "; ".join(short) if short else ": every row beats both reports"
        out.append(
            f"Against the reference reports, seqnets' mean is higher in {beats} of "
            f"{beats + len(short)} comparisons{verdict}."
        )
    return out


# -- section 2: remember ----------------------------------------------------------------------
def remember_section(report: Report, rows: list[Row], commands: dict[str, str]) -> None:
    report.add("## 2. Remember the digit at index K")
    k = rows[0].config.get("task", {}).get("K", 3) if rows else 3
    report.add(
        f"Sequences of 3..10 one-hot digits made on the fly; the network answers the digit at "
        f"index K={k}, read at each sequence's true last step (ragged batches are packed). Test "
        f"accuracy on 10,000 fixed sequences, mean ± std over seeds."
    )
    cells = ["rnn", "lstm", "gru"]
    hiddens = sorted({r.config.get("model", {}).get("hidden") for r in rows if r.config})
    grid = {(r.config["model"]["cell"], r.config["model"]["hidden"]): r for r in rows if r.config}
    lines, results = [], []
    for h in hiddens:
        line = [h]
        for cell in cells:
            row = grid.get((cell, h))
            if row is None:
                line.append(DASH)
                continue
            stat = row.stat(test_metric("acc"))
            problems = row.problems()
            line.append(stat.text(100) + (" (" + "; ".join(problems) + ")" if problems else ""))
            results.append({"experiment": row.experiment, "test_acc": stat.record()})
        lines.append(line)
    report.add(table(["hidden", "RNN %", "LSTM %", "GRU %"], lines))
    report.add(f"Command: `{commands['remember']}`")
    report.results["remember"] = {"table": results}
    report.add("### Observations")
    report.add("\n".join(f"- {s}" for s in remember_observations(rows)))
    series = {model_name(r.config): mean_curve(r.completed, "acc") for r in rows if r.completed}
    if series:
        longest = max(r.config["task"]["max_len"] for r in rows if r.config)
        report.figure(
            plots.accuracy_by_length_lines(
                series, "remember: test accuracy against sequence length", trained=(3, longest)
            ),
            "remember_length",
            "Accuracy against sequence length, over the training lengths and beyond "
            "(shaded: trained), mean over seeds",
        )
    curves = {model_name(r.config): r.completed for r in rows if r.completed}
    if curves:
        report.figure(
            plots.training_curves(curves, "remember: training curves (mean over seeds)"),
            "remember_curves",
            "Training loss per iteration and accuracy and loss per epoch",
        )
    best = best_row(rows, test_metric("acc"))
    if best is not None:
        samples = best.completed[0].get("samples", [])[:8]
        report.add(
            f"Sample predictions of {model_name(best.config)} (sequence -> predicted (true)):\n\n"
            + "\n".join(f"    {s['text']}" for s in samples if "text" in s)
        )


def mean_curve(runs: list[dict[str, Any]], metric: str) -> list[tuple[int, float]]:
    """Accuracy against length, averaged over the runs (same lengths in each)."""
    lengths: dict[int, list[float]] = {}
    for run in runs:
        for row in run.get("by_length", []):
            lengths.setdefault(row["length"], []).append(row[metric])
    return [(n, statistics.fmean(v)) for n, v in sorted(lengths.items())]


def first_below(curve: list[tuple[int, float]], bar: float = 0.99) -> int | None:
    return next((n for n, v in curve if v < bar), None)


def holds(name: str, what: str, curve: list[tuple[int, float]], trained_up_to: int) -> str:
    """From which length ``what`` drops below 99 %, or that it never does, and whether that
    is within the training lengths or beyond them."""
    below = first_below(curve)
    if below is None:
        return f"{name}: {what} stays at 99 % or more at every length measured (to {curve[-1][0]})."
    where = (
        "beyond the training lengths" if below > trained_up_to else "within the training lengths"
    )
    return f"{name}: {what} drops below 99 % from length {below} ({where})."


def remember_observations(rows: list[Row]) -> list[str]:
    acc = {r.experiment: r.stat(test_metric("acc")) for r in rows}
    out = []
    perfect = [
        r
        for r in rows
        if r.completed and all(v >= 0.9999 for _, _, v in r.values(test_metric("acc")))
    ]
    if perfect:
        out.append(
            "Every seed at 100.00 %: " + ", ".join(model_name(r.config) for r in perfect) + "."
        )
    for cell in ("rnn", "lstm", "gru"):
        mine = sorted(
            (r for r in rows if r.completed and r.config["model"]["cell"] == cell),
            key=lambda r: r.config["model"]["hidden"],
        )
        reached = [r for r in mine if acc[r.experiment].mean >= 0.99]
        if reached:
            out.append(
                f"{cell.upper()} reaches 99 % from hidden {reached[0].config['model']['hidden']}."
            )
        elif mine:
            best = max(mine, key=lambda r: acc[r.experiment].mean)
            out.append(
                f"{cell.upper()} stays below 99 % at every size (best "
                f"{acc[best.experiment].text(100)} % at hidden {best.config['model']['hidden']})."
            )
    for r in rows:
        if r.completed and acc[r.experiment].mean >= 0.99:
            curve = mean_curve(r.completed, "acc")
            out.append(holds(model_name(r.config), "accuracy", curve, r.config["task"]["max_len"]))
    compared = [e for e in sorted(ref.REMEMBER_100) if e in acc and acc[e].mean is not None]
    if compared:
        missed = [e.split("/")[-1] for e in compared if acc[e].mean < 0.9999]
        out.append(
            "Report A's 100 % runs (LSTM h=10, GRU h=5 and 10): "
            + ("all matched." if not missed else "not matched by " + ", ".join(missed) + ".")
        )
    return out


# -- section 3: binary addition ---------------------------------------------------------------
def binary_add_section(report: Report, rows: list[Row], commands: dict[str, str]) -> None:
    report.add("## 3. Binary addition")
    report.add(
        "Two numbers fed least significant bit first, one sum bit out per step. Training length "
        "L counts the sum's bits (operands below 2^(L-1)). Bit and exact (every bit right) "
        "accuracy on 1,000 fresh sums per length, mean ± std over seeds."
    )

    def setting(row: Row) -> tuple[int, str, Any]:
        task = row.config.get("task", {})
        return row.config.get("model", {}).get("hidden"), task.get("loss"), task.get("train_len")

    loss_rows = [r for r in rows if setting(r)[2] == 3]
    length_rows = sorted(
        (r for r in rows if setting(r)[:2] == (5, "ce") and setting(r)[2] != 4),
        key=lambda r: setting(r)[2],
    )
    reading_rows = sorted(
        (r for r in rows if setting(r)[0] in (3, 5) and setting(r)[1:] in (("ce", 3), ("ce", 4))),
        key=setting,
    )
    blocks = (
        ("Hidden size and loss, trained at L=3", loss_rows, "loss_and_size"),
        ("Training length, LSTM hidden 5, cross-entropy", length_rows, "train_length"),
        (
            "Report A's \"length 3\": the sum's bits (L=3, operands below 4) or the operands' "
            "(L=4, operands below 8)",
            reading_rows,
            "length_reading",
        ),
    )
    for title, chosen, key in blocks:
        report.add(f"### {title}")
        report.add(binary_add_table(report, chosen, key))
    report.add(f"Command: `{commands['binary_add']}`")
    report.add("### Observations")
    report.add("\n".join(f"- {s}" for s in binary_add_observations(rows)))
    done = [r for r in rows if r.completed]
    series = {
        run_label(r.config): (
            mean_curve(r.completed, "bit_acc"),
            mean_curve(r.completed, "exact_acc"),
        )
        for r in done
    }
    markers = {
        run_label(r.config): ref.BINARY_ADD_A_BIT_AT_20[r.experiment]
        for r in done
        if r.experiment in ref.BINARY_ADD_A_BIT_AT_20
    }
    if series:
        report.figure(
            plots.bit_exact_by_length(series, markers, "binary addition: accuracy against length"),
            "binary_add_length",
            "Bit and exact accuracy against the sum's length, 1..100, every run (mean over "
            "seeds); crosses: report A's bit accuracy at length 20 for the same run",
        )
    exact20 = by_length(20, "exact_acc")
    ranked = sorted(done, key=lambda r: r.stat(exact20).mean or 0.0)
    for row in {id(r): r for r in ranked[-1:] + ranked[:1]}.values():
        marked = [mark_bits(s) for s in row.completed[0].get("samples", [])[:6] if "a" in s]
        report.add(
            f"Sample 20-bit sums of {run_label(row.config)}, wrong bits marked ^:\n\n```\n"
            + "\n".join(marked)
            + "\n```"
        )


def mark_bits(sample: dict[str, Any]) -> str:
    """``a + b = predicted (true)`` and the wrong bits of the prediction marked."""
    n = sample["bits"]
    pred, true = format(sample["pred"], f"0{n}b"), format(sample["true"], f"0{n}b")
    marks = "".join("^" if p != t else " " for p, t in zip(pred, true, strict=True))
    head = f"{sample['a']} + {sample['b']} = {sample['pred']} (true {sample['true']})"
    return f"{head}\n  predicted {pred}\n  true      {true}\n            {marks.rstrip()}"


def binary_add_observations(rows: list[Row]) -> list[str]:
    out = []
    for r in rows:
        if r.completed:
            curve = mean_curve(r.completed, "exact_acc")
            longest = parse_train_len(r.config["task"]["train_len"])[1]
            out.append(holds(run_label(r.config), "exact accuracy", curve, longest))
    by = {r.experiment: r for r in rows}
    at20 = by_length(20, "bit_acc")
    for h in (3, 5, 10):
        ce, mse = by.get(f"binary_add/h{h}_ce_L3"), by.get(f"binary_add/h{h}_mse_L3")
        if ce and mse:
            verdict = compare("ce", ce.stat(at20), "mse", mse.stat(at20), 1, "")
            out.append(f"Loss at hidden {h}, L=3: {verdict} (bit accuracy at length 20).")
    short = []
    for experiment, value in ref.BINARY_ADD_A_BIT_AT_20.items():
        row = by.get(experiment)
        mine = row.stat(at20) if row is not None else None
        if mine is not None and mine.mean is not None and mine.mean < value:
            short.append(f"{experiment.split('/')[-1]} ({mine.text(digits=3)} against {value:.2f})")
    if short:
        out.append("Below report A's bit accuracy at length 20: " + "; ".join(short) + ".")
    else:
        out.append("Every run with a report A figure meets or beats its bit accuracy at length 20.")
    for h in (3, 5):
        target = ref.BINARY_ADD_A_BIT_AT_20.get(f"binary_add/h{h}_ce_L3")
        readings = {L: by.get(f"binary_add/h{h}_ce_L{L}") for L in (3, 4)}
        stats = {L: r.stat(at20) for L, r in readings.items() if r is not None and r.completed}
        if target is None or len(stats) < 2:
            continue
        closer = min(stats, key=lambda L: abs(stats[L].mean - target))
        other = 7 - closer
        what = "sum" if closer == 3 else "operand"
        out.append(
            f"Hidden {h}: report A's {target:.2f} at length 20 is closer to the {what}-bits "
            f"reading (L={closer}: {stats[closer].text(digits=3)}; L={other}: "
            f"{stats[other].text(digits=3)})."
        )
    return out


# -- inside the networks and own handwriting ----------------------------------------------------
def inside_section(report: Report, picks: dict[str, Row | None]) -> None:
    report.add("## Inside the networks")
    report.add(
        "What a trained network keeps in its state, drawn from a run's checkpoint at the end of "
        "training (`figures/inside_*.png` in every run; `python -m seqnets.evaluate "
        "ckpt_path=<run>` draws them for any checkpoint)."
    )
    results = {}
    for task, row in picks.items():
        if row is None or not row.completed:
            continue
        run = row.completed[0]
        inside = run.get("inside", {})
        results[task] = {"dir": run["dir"], **inside}
        name = model_name(row.config)
        if task == "binary_add" and "carry" in inside:
            carry = inside["carry"]
            report.add(
                f"**Binary addition, {name}:** unit {carry['best_unit']} tracks the carry "
                f"(correlation {carry['best_r']:.3f} with the true carry over "
                f"{carry['sums']} sums of {carry['lengths'][0]}..{carry['lengths'][1]} bits)."
            )
            report.copy_figure(
                run,
                "inside_carry_units",
                "inside_carry_units",
                "Correlation of each unit with the carry",
            )
            report.copy_figure(
                run, "inside_carry_trace", "inside_carry_trace", "The carry unit along a 40-bit sum"
            )
        elif task == "remember" and "pca" in inside:
            hold = inside.get("hold", {})
            steps = hold.get("steps") or []
            acc = hold.get("readout_acc") or []
            last = (
                f"; read at step {steps[-1]}: {acc[-1] * 100:.1f} %"
                if steps and acc and acc[-1] is not None
                else ""
            )
            report.add(
                f"**Remember, {name}:** the final state's first two principal components separate "
                f"the digit to report (nearest-centroid accuracy in 2-D: "
                f"{inside['pca']['centroid_acc_2d'] * 100:.1f} %){last}."
            )
            report.copy_figure(
                run,
                "inside_remember_pca",
                "inside_remember_pca",
                "Final states, PCA, coloured by the digit at index K",
            )
            report.copy_figure(
                run,
                "inside_remember_hold",
                "inside_remember_hold",
                "How cleanly the digit stays held as later digits arrive",
            )
        elif task == "mnist" and "rows" in inside:
            rows_ = inside["rows"]
            if rows_.get("settle_row") is not None:
                report.add(
                    f"**MNIST, {name}:** on average the prediction settles on its final answer "
                    f"after row {rows_['settle_row']:.1f} of 28."
                )
            report.copy_figure(
                run,
                "inside_mnist_rows",
                "inside_mnist_rows",
                "Accuracy and confidence after each row, per digit",
            )
            report.copy_figure(
                run,
                "inside_mnist_settle",
                "inside_mnist_settle",
                "From which row the network knows the digit",
            )
    report.results["inside"] = results


def handwriting_section(
    report: Report, result: dict[str, Any] | None, folder: str, checkpoint: str
) -> None:
    report.add("## Own handwriting")
    if result is None:
        report.add(f"No completed MNIST run to read `{folder}` with.")
        return
    accuracy = result["accuracy"]
    report.add(
        f"The images in `{folder}`, brought to MNIST's form (grayscale, ink light on dark, "
        f"cropped, scaled into 20x20, centred by mass in 28x28) and read by `{checkpoint}`."
        + (
            ""
            if accuracy is None
            else f" Accuracy on the {result['labelled']} labelled images: **{accuracy:.1%}**."
        )
    )
    if result.get("figure") is not None:
        report.figure(result["figure"], "handwriting", "Own images as the network saw them")
    rows = []
    for r in result["rows"]:
        how_sure = f"{r['confidence']:.0%}" if "confidence" in r else r.get("error", "")
        rows.append(
            [r["file"], r.get("pred", "error"), how_sure, "" if r["true"] is None else r["true"]]
        )
    report.add(table(["file", "predicted", "confidence", "true"], rows))
    report.results["handwriting"] = {k: v for k, v in result.items() if k != "figure"}


# -- the whole report ---------------------------------------------------------------------------
SECTIONS = {"mnist": mnist_section, "remember": remember_section, "binary_add": binary_add_section}
TITLES = {"mnist": "MNIST", "remember": "remember", "binary_add": "binary-add"}


def rows_of(plan: list[Any], section: str, seeds: list[int]) -> list[Row]:
    """The section's experiments in plan order, each with its runs over the seeds."""
    mine = [p for p in plan if p.section == section]
    planned = {p.experiment: p.config for p in mine}
    runs = {(p.experiment, p.seed): p.run for p in mine}
    return [Row(e, [runs.get((e, s)) for s in seeds], list(seeds), c) for e, c in planned.items()]


def header(report: Report, info: dict[str, Any]) -> None:
    report.add("# seqnets report")
    machine = info["machine"]
    report.add(
        f"Built {info['date']} in **{info['wall_s'] / 60:.1f} min** (training included: "
        f"{info['trained']} runs trained, {info['reused']} reused) on {machine['platform']}, "
        f"{machine['processor']}, {machine['cores']} cores"
        + (f", {machine['cuda']}" if machine.get("cuda") else "")
        + "."
    )
    versions = ", ".join(f"{k} {v}" for k, v in info["versions"].items() if v)
    report.add(f"Code: commit `{info['commit']}`. Libraries: {versions}.")
    report.add(f"Rebuild this report: `{info['command']}`.")
    if info.get("run_machines"):
        report.add("Runs trained on: " + "; ".join(info["run_machines"]) + ".")
    report.results["build"] = info


def render_all(
    plan: list[Any],
    out: Path,
    sections: list[str],
    seeds: list[int],
    inside: dict[str, str],
    info: dict[str, Any],
    handwriting: tuple[dict[str, Any] | None, str, str] | None = None,
) -> Report:
    """Write report.md, report.html, figures/ and results.json into ``out``."""
    report = Report(out)
    header(report, info)
    rows = {s: rows_of(plan, s, seeds) for s in sections}
    for section in sections:
        SECTIONS[section](report, rows[section], info["commands"])
    picks = {
        task: next((r for r in rows.get(task, []) if r.experiment == experiment), None)
        for task, experiment in inside.items()
    }
    if any(picks.values()):
        inside_section(report, picks)
    if handwriting is not None:
        result, folder, checkpoint = handwriting
        handwriting_section(report, result, folder, checkpoint)
    report.results["runs"] = [
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
    report.write()
    return report


def binary_add_table(report: Report, chosen: list[Row], key: str) -> str:
    """Bit and exact accuracy at the chosen lengths, with the reports' figures beside."""
    columns = [(n, m) for n in LENGTHS for m in ("bit", "exact")]
    lines, results = [], []
    for row in chosen:
        task = row.config.get("task", {})
        stats = {f"{m}@{n}": row.stat(by_length(n, f"{m}_acc")) for n, m in columns}
        mean_1_20 = row.stat(mean_over_lengths(1, 20, "bit_acc"))
        a20 = ref.BINARY_ADD_A_BIT_AT_20.get(row.experiment)
        b = ref.BINARY_ADD_B_MEAN_1_20.get(row.experiment)
        lines.append(
            [
                row.config.get("model", {}).get("hidden", "?"),
                task.get("loss", "?"),
                task.get("train_len", "?"),
                *(s.text(digits=3) for s in stats.values()),
                DASH if a20 is None else f"{a20:.2f}",
                mean_1_20.text(100, 1),
                DASH if b is None else f"{b:.1f}",
                "; ".join(row.problems()) or "ok",
            ]
        )
        results.append(
            {"experiment": row.experiment}
            | {k: v.record() for k, v in stats.items()}
            | {
                "bit_mean_1_20": mean_1_20.record(),
                "report_A_bit_at_20": a20,
                "report_B_mean_1_20": b,
            }
        )
    report.results.setdefault("binary_add", {})[key] = results
    header = ["hidden", "loss", "train L", *(f"{m} @{n}" for n, m in columns)]
    header += ["report A bit @20", "bit mean 1..20 %", "report B mean 1..20 %", "runs"]
    return table(header, lines)

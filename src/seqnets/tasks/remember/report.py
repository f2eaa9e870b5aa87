"""The remember section of the report: test accuracy by network (columns) and hidden size
(rows), from which size each network reaches 99 %, and report A's 100 % runs."""

from __future__ import annotations

from typing import Any

from seqnets.reportkit import references as ref
from seqnets.reportkit.document import DASH, Document, table
from seqnets.reportkit.generic import (
    curves_figure,
    holds,
    length_figure,
    scored_count,
    scores,
    trained_lengths,
)
from seqnets.reportkit.settings import common, matches, one_apart
from seqnets.reportkit.stats import Row, best_row, model_name, test_metric

ACC = test_metric("acc")


def column(config: dict[str, Any]) -> str:
    """A row's column: its network without the hidden size (``LSTM``, ``BIGRU x2``)."""
    m = config.get("model", {})
    layers = f" x{m['num_layers']}" if m.get("num_layers", 1) > 1 else ""
    return f"{'bi' if m.get('bidirectional') else ''}{m.get('cell', '?')}".upper() + layers


def section(task: Any, doc: Document, rows: list[Row], context: Any) -> None:
    configured = [r for r in rows if r.config]
    tests = {scored_count(task, r.config) for r in configured} - {None}
    doc.add(
        f"Sequences of {common(rows, lambda c: c['task']['min_len'])}.."
        f"{common(rows, lambda c: c['task']['max_len'])} one-hot digits made on the fly; the "
        f"network answers the digit at index K={common(rows, lambda c: c['task']['K'])}, read at "
        f"each sequence's true last step (ragged batches are packed). Test accuracy on "
        f"{'/'.join(f'{n:,}' for n in sorted(tests)) or 'the'} fixed sequences, mean ± std "
        f"over seeds."
    )
    columns = list(dict.fromkeys(column(r.config) for r in configured))
    hiddens = sorted({r.config["model"]["hidden"] for r in configured})
    grid = {(column(r.config), r.config["model"]["hidden"]): r for r in configured}
    lines, results = [], []
    for h in hiddens:
        line = [h]
        for name in columns:
            row = grid.get((name, h))
            if row is None:
                line.append(DASH)
                continue
            stat = row.stat(ACC)
            problems = row.problems()
            line.append(stat.text(100) + (" (" + "; ".join(problems) + ")" if problems else ""))
            results.append({"experiment": row.experiment, "test_acc": stat.record()})
        lines.append(line)
    text = table(["hidden", *(f"{c} %" for c in columns)], lines)
    scores(doc, context, text, results, observations(task, rows))
    ranges = [t for r in configured if (t := trained_lengths(task, r.config))]
    trained = (min(t[0] for t in ranges), max(t[1] for t in ranges)) if ranges else None
    length_figure(
        doc,
        rows,
        "acc",
        f"{context.section}_length",
        "remember: test accuracy against sequence length",
        "Accuracy against sequence length, over the training lengths and beyond "
        "(shaded: trained), mean over seeds",
        label=lambda r: model_name(r.config),
        trained=trained,
    )
    curves_figure(
        doc,
        rows,
        f"{context.section}_curves",
        "remember: training curves (mean over seeds)",
        "Training loss per iteration and accuracy and loss per epoch",
        label=lambda r: model_name(r.config),
    )
    best = best_row(rows, ACC)
    if best is not None:
        samples = best.completed[0].get("samples", [])[:8]
        doc.add(
            f"Sample predictions of {model_name(best.config)} (sequence -> predicted (true)):\n\n"
            + "\n".join(f"    {s['text']}" for s in samples if "text" in s)
        )


def observations(task: Any, rows: list[Row]) -> list[str]:
    acc = {r.experiment: r.stat(ACC) for r in rows}
    out = []
    perfect = [r for r in rows if r.completed and all(v >= 0.9999 for _, _, v in r.values(ACC))]
    if perfect:
        out.append(
            "Every seed at 100.00 %: " + ", ".join(model_name(r.config) for r in perfect) + "."
        )
    # Rows that differ in their hidden size alone: from which size they reach 99 %.
    for group in one_apart(rows, only=["model.hidden"]):
        if group.keys != ("model.hidden",):
            continue
        mine = sorted(
            (r for r in group.rows if acc[r.experiment].mean is not None),
            key=lambda r: r.config["model"]["hidden"],
        )
        if not mine:
            continue
        name = column(mine[0].config)
        reached = [r for r in mine if acc[r.experiment].mean >= 0.99]
        if reached:
            out.append(f"{name} reaches 99 % from hidden {reached[0].config['model']['hidden']}.")
        else:
            best = max(mine, key=lambda r: acc[r.experiment].mean)
            out.append(
                f"{name} stays below 99 % at every size (best "
                f"{acc[best.experiment].text(100)} % at hidden {best.config['model']['hidden']})."
            )
    good = [r for r in rows if r.completed and (acc[r.experiment].mean or 0) >= 0.99]
    out += [s for r in good if (s := holds(task, r, model_name(r.config), "acc", "accuracy"))]
    compared = [
        r
        for r in rows
        if acc[r.experiment].mean is not None
        and any(matches(reference, r.config) for reference in ref.REMEMBER_100)
    ]
    if compared:
        named = ", ".join(f"{s['model.cell']} h={s['model.hidden']}" for s in ref.REMEMBER_100)
        missed = [r.name for r in compared if acc[r.experiment].mean < 0.9999]
        out.append(
            f"Report A's 100 % runs ({named}): "
            + ("all matched." if not missed else "not matched by " + ", ".join(missed) + ".")
        )
    return out


def inside_figures(numbers: dict[str, Any], config: dict[str, Any]) -> Any:
    if "pca" not in numbers:
        return None
    hold = numbers.get("hold", {})
    steps = hold.get("steps") or []
    acc = hold.get("readout_acc") or []
    last = (
        f"; read at step {steps[-1]}: {acc[-1] * 100:.1f} %"
        if steps and acc and acc[-1] is not None
        else ""
    )
    k = numbers["pca"].get("K", config.get("task", {}).get("K", "K"))
    sentence = (
        f"**Remember, {model_name(config)}:** the final state's first two principal "
        f"components separate the digit to report (nearest-centroid accuracy in 2-D: "
        f"{numbers['pca']['centroid_acc_2d'] * 100:.1f} %){last}."
    )
    return sentence, {
        "inside_remember_pca": f"Final states, PCA, coloured by the digit at index K={k}",
        "inside_remember_hold": "How cleanly the digit stays held as later digits arrive",
    }

"""The adding problem's report section: the generic one, then the squared error at multiples
of the longest training length against the 0.167 of always answering 1.0."""

from __future__ import annotations

from typing import Any

from seqnets.reportkit import generic
from seqnets.reportkit.document import DASH, Document, bullets, table
from seqnets.reportkit.stats import Row, by_length, model_name

MULTIPLES = (1, 2, 4, 8)


def section(task: Any, doc: Document, rows: list[Row], context: Any) -> None:
    from seqnets.tasks.adding import CONSTANT_MSE

    generic.section(task, doc, rows, context)
    lines, results, sentences = [], [], []
    for row in rows:
        trained = generic.trained_lengths(task, row.config) if row.config else None
        if trained is None or not row.completed:
            continue
        measured = {e["length"] for r in row.completed for e in r.get("by_length", [])}
        lengths = [m * trained[1] for m in MULTIPLES if m * trained[1] in measured]
        stats = {n: row.stat(by_length(n, "mse")) for n in lengths}
        cells = [
            f"{stats[m * trained[1]].text(digits=4)} (at {m * trained[1]})"
            if m * trained[1] in stats
            else DASH
            for m in MULTIPLES
        ]
        lines.append([row.name, model_name(row.config), f"{trained[0]}..{trained[1]}", *cells])
        results.append(
            {"experiment": row.experiment} | {str(n): s.record() for n, s in stats.items()}
        )
        beyond = [n for n, s in stats.items() if s.mean is not None and s.mean >= CONSTANT_MSE]
        sentences.append(
            f"{model_name(row.config)}: "
            + (
                f"no better than always answering 1.0 (MSE {CONSTANT_MSE:.3f}) from length "
                f"{beyond[0]} ({beyond[0] // trained[1]}x the longest training length) on."
                if beyond
                else f"below the {CONSTANT_MSE:.3f} of always answering 1.0 at every length "
                f"shown (to {max(stats, default=trained[1])})."
            )
        )
    if lines:
        doc.add("### Squared error at multiples of the training length")
        header = ["run", "model", "trained", *(f"MSE at {m}x" for m in MULTIPLES)]
        doc.add(table(header, lines))
        doc.add(bullets(sentences))
        doc.results.setdefault(context.section, {})["by_multiple"] = results

"""The binary-addition section of the report: tables of bit and exact accuracy against
length, chosen from the rows' configs (see :func:`blocks`), report A's lengths read both ways,
and sample sums with the wrong bits marked."""

from __future__ import annotations

from collections import Counter
from typing import Any

from seqnets import plots
from seqnets.reportkit import references as ref
from seqnets.reportkit.document import DASH, Document, bullets, table
from seqnets.reportkit.generic import holds, trained_lengths, varied_sentence
from seqnets.reportkit.settings import common, freeze, lookup, one_apart, show
from seqnets.reportkit.stats import (
    Row,
    by_length,
    mean_curve,
    mean_over_lengths,
    model_name,
)

LENGTHS = (10, 20, 50, 100)  # where the tables read accuracy against length
LOSSES = {"ce": "cross-entropy", "mse": "squared error"}
AT_A = by_length(ref.A_AT, "bit_acc")


def setting(row: Row, name: str) -> Any:
    return row.config.get("task", {}).get(name)


def run_label(config: dict[str, Any]) -> str:
    """A run in a few words: ``lstm h=5 ce L=3``."""
    task = config.get("task", {})
    return f"{model_name(config)} {task.get('loss', '?')} L={show(freeze(task.get('train_len')))}"


def length_order(task: Any, row: Row) -> tuple:
    """Rows by their training lengths: longest last, then shortest."""
    trained = trained_lengths(task, row.config) or (0, 0)
    return trained[1], trained[0]


def readings(rows: list[Row]) -> list[tuple[Row, Row, float]]:
    """Report A's lengths read both ways: each row with a report A figure at a fixed
    training length L (its sum's bits), the row that differs from it only in being trained one
    bit longer (the operands' bits), and report A's figure."""
    out = []
    for group in one_apart(rows, only=["task.train_len"]):
        if group.keys != ("task.train_len",):
            continue
        by_len = {freeze(setting(r, "train_len")): r for r in group.rows}
        for length, row in by_len.items():
            target = lookup(ref.BINARY_ADD_A_BIT_AT_20, row.config)
            other = by_len.get(length + 1) if isinstance(length, int) else None
            if target is not None and other is not None:
                out.append((row, other, target))
    return out


def blocks(task: Any, rows: list[Row]) -> list[tuple[str, list[Row], str]]:
    """The three tables: (title, rows, key in results.json)."""
    out = []
    configured = [r for r in rows if r.config]
    # The hidden sizes and losses, at the training length most rows share (ties: shortest).
    counts = Counter(freeze(setting(r, "train_len")) for r in configured)
    if counts:
        first = {freeze(setting(r, "train_len")): r for r in reversed(configured)}
        common_len = max(
            counts, key=lambda L: (counts[L], [-x for x in length_order(task, first[L])])
        )
        chosen = [r for r in configured if freeze(setting(r, "train_len")) == common_len]
        out.append(
            (f"Hidden size and loss, trained at L={show(common_len)}", chosen, "loss_and_size")
        )
    # Both readings of report A's lengths; its operand-bits rows are that table's alone.
    pairs = readings(configured)
    reading = {r.experiment: r for a, b, _ in pairs for r in (a, b)}
    longer = {b.experiment for _, b, _ in pairs}
    # The training lengths of the network and loss trained at the most lengths.
    groups = [
        g for g in one_apart(configured, only=["task.train_len"]) if g.keys == ("task.train_len",)
    ]
    if groups:
        studied = max(groups, key=lambda g: len(g.rows))
        chosen = sorted(
            (r for r in studied.rows if r.experiment not in longer),
            key=lambda r: length_order(task, r),
        )
        m = chosen[0].config["model"] if chosen else {}
        network = f"{model_name(chosen[0].config).split(' h=')[0].upper()} hidden {m.get('hidden')}"
        loss = setting(chosen[0], "loss") if chosen else None
        out.append(
            (
                f"Training length, {network}, {LOSSES.get(loss, loss)}",
                chosen,
                "train_length",
            )
        )
    if pairs:
        lengths = sorted({setting(a, "train_len") for a, _, _ in pairs})
        what = "; ".join(
            f"Report A's \"length {n}\": the sum's bits (L={n}, operands below {2 ** (n - 1)}) "
            f"or the operands' (L={n + 1}, operands below {2**n})"
            for n in lengths
        )
        chosen = sorted(
            reading.values(),
            key=lambda r: (
                r.config["model"]["hidden"],
                setting(r, "loss"),
                setting(r, "train_len"),
            ),
        )
        out.append((what, chosen, "length_reading"))
    return out


def section(task: Any, doc: Document, rows: list[Row], context: Any) -> None:
    sums = {
        entry.get("samples")
        for r in rows
        for run in r.completed
        for entry in run.get("by_length", [])
    } - {None}
    sums_text = "/".join(f"{n:,}" for n in sorted(sums)) or common(
        rows, lambda c: c["task"]["eval_samples"], lambda n: f"{n:,}"
    )
    doc.add(
        "Two numbers fed least significant bit first, one sum bit out per step. Training length "
        "L counts the sum's bits (operands below 2^(L-1)). Bit and exact (every bit right) "
        f"accuracy on {sums_text} fresh sums per length, mean ± std over seeds."
    )
    doc.results[context.section] = {}
    for title, chosen, key in blocks(task, rows):
        doc.add(f"### {title}")
        doc.add(length_table(doc, chosen, context.section, key))
    doc.add(f"Command: `{context.command}`")
    doc.add("### Observations")
    doc.add(bullets(observations(task, rows)))
    done = [r for r in rows if r.completed]
    series = {
        run_label(r.config): (
            mean_curve(r.completed, "bit_acc"),
            mean_curve(r.completed, "exact_acc"),
        )
        for r in done
    }
    markers = {
        run_label(r.config): value
        for r in done
        if (value := lookup(ref.BINARY_ADD_A_BIT_AT_20, r.config)) is not None
    }
    if series:
        low = common(rows, lambda c: c["task"]["min_eval_len"])
        high = common(rows, lambda c: c["task"]["max_eval_len"])
        doc.figure(
            plots.bit_exact_by_length(
                series, markers, "binary addition: accuracy against length", at=ref.A_AT
            ),
            f"{context.section}_length",
            f"Bit and exact accuracy against the sum's length, {low}..{high}, every run (mean "
            f"over seeds); crosses: report A's bit accuracy at length {ref.A_AT} for the same "
            "run",
        )
    bits = Counter(s.get("bits") for r in done for s in r.completed[0].get("samples", []))
    if bits:
        length = bits.most_common(1)[0][0]
        exact = by_length(length, "exact_acc")
        ranked = sorted(done, key=lambda r: r.stat(exact).mean or 0.0)
        for row in {id(r): r for r in ranked[-1:] + ranked[:1]}.values():
            marked = [mark_bits(s) for s in row.completed[0].get("samples", [])[:6] if "a" in s]
            doc.add(
                f"Sample {length}-bit sums of {run_label(row.config)}, wrong bits marked ^:\n\n"
                "```\n" + "\n".join(marked) + "\n```"
            )


def length_table(doc: Document, chosen: list[Row], section: str, key: str) -> str:
    """Bit and exact accuracy at the chosen lengths, with the reports' figures beside."""
    columns = [(n, m) for n in LENGTHS for m in ("bit", "exact")]
    low, high = ref.B_OVER
    lines, results = [], []
    for row in chosen:
        task = row.config.get("task", {})
        stats = {f"{m}@{n}": row.stat(by_length(n, f"{m}_acc")) for n, m in columns}
        mean_b = row.stat(mean_over_lengths(low, high, "bit_acc"))
        a = lookup(ref.BINARY_ADD_A_BIT_AT_20, row.config)
        b = lookup(ref.BINARY_ADD_B_MEAN_1_20, row.config)
        lines.append(
            [
                row.config.get("model", {}).get("hidden", "?"),
                task.get("loss", "?"),
                task.get("train_len", "?"),
                *(s.text(digits=3) for s in stats.values()),
                DASH if a is None else f"{a:.2f}",
                mean_b.text(100, 1),
                DASH if b is None else f"{b:.1f}",
                row.status(),
            ]
        )
        results.append(
            {"experiment": row.experiment}
            | {k: v.record() for k, v in stats.items()}
            | {
                f"bit_mean_{low}_{high}": mean_b.record(),
                f"report_A_bit_at_{ref.A_AT}": a,
                f"report_B_mean_{low}_{high}": b,
            }
        )
    doc.results.setdefault(section, {})[key] = results
    header = ["hidden", "loss", "train L", *(f"{m} @{n}" for n, m in columns)]
    header += [f"report A bit @{ref.A_AT}", f"bit mean {low}..{high} %"]
    header += [f"report B mean {low}..{high} %", "runs"]
    return table(header, lines)


def mark_bits(sample: dict[str, Any]) -> str:
    """``a + b = predicted (true)`` and the wrong bits of the prediction marked."""
    n = sample["bits"]
    pred, true = format(sample["pred"], f"0{n}b"), format(sample["true"], f"0{n}b")
    marks = "".join("^" if p != t else " " for p, t in zip(pred, true, strict=True))
    head = f"{sample['a']} + {sample['b']} = {sample['pred']} (true {sample['true']})"
    return f"{head}\n  predicted {pred}\n  true      {true}\n            {marks.rstrip()}"


def observations(task: Any, rows: list[Row]) -> list[str]:
    out = [
        s
        for r in rows
        if r.completed and (s := holds(task, r, run_label(r.config), "exact_acc", "exact accuracy"))
    ]
    label = f"bit accuracy at length {ref.A_AT}"
    for group in one_apart(rows):
        out.append(varied_sentence(group, AT_A, label, scale=1, unit=""))
    short, compared = [], 0
    for row in rows:
        value = lookup(ref.BINARY_ADD_A_BIT_AT_20, row.config)
        mine = row.stat(AT_A)
        if value is None or mine.mean is None:
            continue
        compared += 1
        if mine.mean < value:
            short.append(f"{row.name} ({mine.text(digits=3)} against {value:.2f})")
    if short:
        out.append(f"Below report A's {label}: " + "; ".join(short) + ".")
    elif compared:
        out.append(f"Every run with a report A figure meets or beats its {label}.")
    for sums, operands, target in readings(rows):
        stats = {r.experiment: r.stat(AT_A) for r in (sums, operands)}
        if any(s.mean is None for s in stats.values()):
            continue
        closer, other = sorted(
            (sums, operands), key=lambda r: abs(stats[r.experiment].mean - target)
        )
        what = "sum" if closer is sums else "operand"
        out.append(
            f"{model_name(sums.config)} {setting(sums, 'loss')}: report A's {target:.2f} at "
            f"length {ref.A_AT} is closer to the {what}-bits reading "
            f"(L={setting(closer, 'train_len')}: "
            f"{stats[closer.experiment].text(digits=3)}; L={setting(other, 'train_len')}: "
            f"{stats[other.experiment].text(digits=3)})."
        )
    return out


def inside_figures(numbers: dict[str, Any], config: dict[str, Any]) -> Any:
    if "carry" not in numbers:
        return None
    carry = numbers["carry"]
    trace = numbers.get("carry_trace") or {}
    sentence = (
        f"**Binary addition, {model_name(config)}:** unit {carry['best_unit']} tracks the "
        f"carry (correlation {carry['best_r']:.3f} with the true carry over {carry['sums']} "
        f"sums of {carry['lengths'][0]}..{carry['lengths'][1]} bits)."
    )
    return sentence, {
        "inside_carry_units": "Correlation of each unit with the carry",
        "inside_carry_trace": f"The carry unit along a {trace['length']}-bit sum"
        if "length" in trace
        else "The carry unit along one sum",
    }

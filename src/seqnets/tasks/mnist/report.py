"""The MNIST section of the report: every model against the reference reports, the best
run's confusion matrix and mistakes, and the own-handwriting subsection (it lives here: only
this section's checkpoints can read digit images)."""

from __future__ import annotations

from typing import Any

from seqnets.data.mnist import TRAIN_SIZE
from seqnets.reportkit import references as ref
from seqnets.reportkit.document import DASH, Document, signed, table
from seqnets.reportkit.generic import best_sentence, curves_figure, scores, varied_sentence
from seqnets.reportkit.settings import common, lookup, one_apart
from seqnets.reportkit.stats import (
    Row,
    best_on_validation,
    best_run,
    field,
    model_name,
    monitor_mode,
    seconds_per_epoch,
    test_metric,
)

ACC = test_metric("acc")


def test_images(run: dict[str, Any]) -> int | None:
    matrix = run.get("confusion_matrix")
    return int(sum(map(sum, matrix))) if matrix else None


def intro(task: Any, rows: list[Row]) -> str:
    datamodule = task.datamodule()
    steps = datamodule.train_work()[1]
    counts = {test_images(run) for r in rows for run in r.completed} - {None}
    scored = "/".join(f"{n:,}" for n in sorted(counts)) if counts else "the"
    limit = common(rows, lambda c: c["trainer"].get("limit_train_batches"))
    batch = f"{datamodule.batch_size}"
    batches = (
        "" if limit in ("None", "?") else f"; each epoch here reads {limit} batches of {batch}"
    )
    return (
        f"Each image is a sequence of {steps} rows of {datamodule.num_features} pixels; the "
        f"digit is read from the final state. {TRAIN_SIZE - datamodule.val_size:,} training / "
        f"{datamodule.val_size:,} validation images (a fixed split{batches}), {scored} test "
        f"images for the scores below. Mean ± standard deviation over the seeds that completed; "
        f"the best checkpoint of each run is chosen on validation accuracy."
    )


def section(task: Any, doc: Document, rows: list[Row], context: Any) -> None:
    doc.add(intro(task, rows))
    lines, results = [], []
    for row in rows:
        cfg, test = row.config, row.stat(ACC)
        refs = lookup(ref.MNIST, cfg) or {}
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
                row.name,
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
                row.status(),
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
    header = ["run", "cell", "hidden", "layers", "direction", "L2", "params", "s/epoch"]
    header += ["best val acc %", "test acc %", "report A %", "Δ A", "report B %", "Δ B", "runs"]
    scores(doc, context, table(header, lines), results, observations(rows))
    curves_figure(
        doc,
        rows,
        f"{context.section}_curves",
        "MNIST: training curves (mean over seeds)",
        "Training loss per iteration (smoothed) and train/validation accuracy and loss per "
        "epoch, every run",
    )
    best_run_subsection(doc, rows, context)
    if context.handwriting:
        handwriting(task, doc, rows, context)


def observations(rows: list[Row]) -> list[str]:
    speed = {r.experiment: r.stat(seconds_per_epoch) for r in rows}

    def slower(a: Row, b: Row) -> str:
        sa, sb = speed[a.experiment], speed[b.experiment]
        if not (sa.mean and sb.mean):
            return ""
        return (
            f", at {sa.mean / sb.mean:.1f}x the time per epoch "
            f"({sa.text(digits=1)} s vs {sb.text(digits=1)} s)"
        )

    out = []
    first = best_sentence(rows, ACC, "test accuracy", unit=" %")
    if first:
        out.append(first)
    for group in one_apart(rows):
        out.append(varied_sentence(group, ACC, "test accuracy %", extra=slower))
    short, beats = [], 0
    for row in rows:
        s = row.stat(ACC)
        for name, value in (lookup(ref.MNIST, row.config) or {}).items():
            if value is None or s.mean is None:
                continue
            if s.mean * 100 > value:
                beats += 1
            else:
                short.append(f"{row.name} ({s.text(100)} %) is below report {name}'s {value:.2f} %")
    if beats or short:
        verdict = ": " + "; ".join(short) if short else ": every row beats both reports"
        out.append(
            f"Against the reference reports, seqnets' mean is higher in {beats} of "
            f"{beats + len(short)} comparisons{verdict}."
        )
    return out


def best_run_subsection(doc: Document, rows: list[Row], context: Any) -> None:
    best = best_on_validation(rows)
    run = best_run(best, monitor_mode(rows)) if best is not None else None
    if run is None:
        return
    name = best.name
    doc.add(
        f"### The best run on validation: {name} (seed {run['seed']}, test accuracy "
        f"{run['test']['test/acc'] * 100:.2f} %)"
    )
    if "confusion_matrix" in run:
        import torch

        from seqnets import plots

        doc.figure(
            plots.confusion_matrix(torch.tensor(run["confusion_matrix"]), f"{name}: test"),
            f"{context.section}_confusion",
            f"Confusion matrix of {name} on the {test_images(run):,} test images it scored",
        )
        doc.add(classification_table(run["classification_report"]))
        doc.results[context.section]["best_run"] = {
            "dir": run["dir"],
            "classification_report": run["classification_report"],
        }
    shown = len(run.get("samples") or [])
    doc.copy_figure(
        run,
        "samples",
        f"{context.section}_samples",
        f"The same {shown} test images in every run" if shown else "Test images",
    )
    pairs = run.get("confused_pairs", [])
    if pairs:
        doc.add(
            "Most confused digit pairs: "
            + ", ".join(f"{p['true']} read as {p['pred']} ({p['count']}x)" for p in pairs)
        )
        doc.copy_figure(
            run, "confused_pairs", f"{context.section}_mistakes", "The misclassified test images"
        )


def classification_table(cr: dict[str, Any]) -> str:
    classes = sorted((k for k in cr if k.isdigit()), key=int)
    lines = []
    for key in [*classes, "macro avg", "weighted avg"]:
        v = cr[key]
        lines.append(
            [key, f"{v['precision']:.4f}", f"{v['recall']:.4f}", f"{v['f1']:.4f}", v["support"]]
        )
    lines.append(["accuracy", "", "", f"{cr['accuracy']:.4f}", cr["macro avg"]["support"]])
    return table(["digit", "precision", "recall", "F1", "support"], lines)


def handwriting(task: Any, doc: Document, rows: list[Row], context: Any) -> None:
    """A person's own digit images (``handwriting=<folder>``) read by the best run on
    validation."""
    from seqnets.checkpoints import load_checkpoint, rebuild

    context.used.add("handwriting")
    folder = str(context.handwriting)
    doc.add("### Own handwriting")
    runs = [r for row in rows for r in row.completed if r.get("best_val") is not None]
    if not runs:
        doc.add(f"No completed run to read `{folder}` with.")
        return
    pick = max if monitor_mode(rows) == "max" else min
    best = pick(runs, key=lambda r: r["best_val"])
    file, checkpoint = load_checkpoint(best["dir"])
    _, datamodule, module = rebuild(checkpoint, data_dir=context.data_dir)
    result = task.predict(module, datamodule, folder)
    accuracy = result["accuracy"]
    side = datamodule.num_features
    doc.add(
        f"The images in `{folder}`, brought to MNIST's form (grayscale, ink light on dark, "
        f"cropped, scaled into 20x20, centred by mass in {side}x{side}) and read by `{file}`."
        + (
            ""
            if accuracy is None
            else f" Accuracy on the {result['labelled']} labelled images: **{accuracy:.1%}**."
        )
    )
    if result.get("figure") is not None:
        doc.figure(result["figure"], "handwriting", "Own images as the network saw them")
    lines = []
    for r in result["rows"]:
        how_sure = f"{r['confidence']:.0%}" if "confidence" in r else r.get("error", "")
        lines.append(
            [r["file"], r.get("pred", "error"), how_sure, "" if r["true"] is None else r["true"]]
        )
    doc.add(table(["file", "predicted", "confidence", "true"], lines))
    doc.results["handwriting"] = {k: v for k, v in result.items() if k != "figure"}


def inside_figures(numbers: dict[str, Any], config: dict[str, Any]) -> Any:
    rows = numbers.get("rows")
    if not rows:
        return None
    sentence = None
    if rows.get("settle_row") is not None and rows.get("rows"):
        sentence = (
            f"**MNIST, {model_name(config)}:** on average the prediction settles on its final "
            f"answer after row {rows['settle_row']:.1f} of {len(rows['rows'])}."
        )
    return sentence, {
        "inside_mnist_rows": "Accuracy and confidence after each row, per digit",
        "inside_mnist_settle": "From which row the network knows the digit",
    }

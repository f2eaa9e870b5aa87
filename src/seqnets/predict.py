"""A trained checkpoint on a user's own input: ``python -m seqnets.predict ckpt_path= input=``.

What ``input`` is follows the checkpoint's task (see ``conf/predict.yaml``): image files of
handwritten digits (brought to MNIST's form first, as MNIST itself was made), digit lists, or
two numbers to add. Bad inputs never stop the others: each is listed with what is wrong, the
rest get predictions, and the exit code says whether anything failed (0 none, 2 some).
Everything goes to a new directory under ``outputs/predict/``: ``predictions.json``,
``predictions.md`` and, for images, ``predictions.png``.
"""

from __future__ import annotations

import logging
import re
import sys
from pathlib import Path
from typing import Any

import hydra
import torch
from omegaconf import DictConfig, OmegaConf

from seqnets import CONF_DIR, plots, records
from seqnets.checkpoints import load_checkpoint, rebuild
from seqnets.data.binary_add import bits_to_int, encode_sum
from seqnets.data.images import prepare
from seqnets.data.remember import NUM_DIGITS, encode_digits
from seqnets.errors import EXIT_USAGE, ConfigError
from seqnets.runtime import resolve_threads
from seqnets.scoring import forward_batch
from seqnets.sweeps import cli

log = logging.getLogger(__name__)


def digit_probabilities(module: Any, datamodule: Any, images: torch.Tensor) -> torch.Tensor:
    """uint8 (n, 28, 28) images in MNIST's form -> (n, 10) probabilities of each digit, on
    the CPU (the images normalised as in training)."""
    if not len(images):
        return torch.empty(0, NUM_DIGITS)
    logits, _ = forward_batch(module, datamodule, {"x": images})
    return logits.softmax(-1).cpu()


def predict_images(module: Any, datamodule: Any, path: Any) -> dict[str, Any]:
    """Every image file at ``path`` (a file or a folder): the digit, its confidence, the true
    one when the file name starts with a digit, and the grid of images as the network saw
    them."""
    images, results = prepare(path)
    rows: list[dict[str, Any]] = []
    probs = digit_probabilities(module, datamodule, images)
    for result in results:
        row: dict[str, Any] = {"file": result.path.name, "true": result.label}
        if result.ok:
            p = probs[result.row]
            row |= {"pred": int(p.argmax()), "confidence": float(p.max())}
        else:
            row["error"] = result.error
        rows.append(row)
    done = [r for r in rows if "pred" in r]
    labelled = [r for r in done if r["true"] is not None]
    accuracy = sum(r["pred"] == r["true"] for r in labelled) / len(labelled) if labelled else None
    figure = None
    if done:
        figure = plots.digit_grid(
            images,
            [r["true"] for r in done],
            [r["pred"] for r in done],
            "own images as the network saw them"
            + (f": {accuracy:.0%} right" if accuracy is not None else ""),
            notes=[f"{r['confidence']:.0%} {r['file'][:12]}" for r in done],
        )
    return {"rows": rows, "accuracy": accuracy, "labelled": len(labelled), "figure": figure}


def parse_sequences(value: Any, k: int) -> list[Any]:
    """``[6,8,0]``, ``[[6,8,0],[1,2,3,4]]``, ``"680"`` or ``"6,8,0"`` -> digit lists; a bad one
    becomes its error message (a non-digit, or shorter than K)."""
    if OmegaConf.is_list(value):
        value = OmegaConf.to_container(value)
    if isinstance(value, int | str):
        value = [value]
    if not isinstance(value, list) or not value:
        raise ConfigError(f"input={value!r} is not allowed: give a digit list such as [6,8,0,2]")
    if not any(isinstance(v, list | str) for v in value):
        value = [value]  # one flat list of digits
    sequences: list[Any] = []
    for item in value:
        digits = re.findall(r"[^,\s]+", item) if isinstance(item, str) and "," in item else item
        digits = list(digits) if isinstance(digits, str) else digits
        digits = digits if isinstance(digits, list) else [digits]
        parsed = [int(d) if str(d).isdigit() and len(str(d)) == 1 else None for d in digits]
        if not parsed or None in parsed:
            sequences.append(f"{item!r} is not allowed: every element must be a digit 0-9")
        elif len(parsed) < k:
            sequences.append(
                f"{item!r} is not allowed: it has {len(parsed)} digits, fewer than K={k} "
                f"(the network answers the digit at index K)"
            )
        else:
            sequences.append(parsed)
    return sequences


def predict_digits(module: Any, datamodule: Any, value: Any) -> dict[str, Any]:
    """The digit at index K of each list, with the true one."""
    k = datamodule.K
    sequences = parse_sequences(value, k)
    good = [s for s in sequences if isinstance(s, list)]
    preds: list[int] = []
    if good:
        logits, _ = forward_batch(module, datamodule, encode_digits(good))
        preds = module.objective.predict(logits).cpu().tolist()
    rows, answers = [], iter(preds)
    for sequence in sequences:
        if isinstance(sequence, str):
            rows.append({"error": sequence})
            continue
        pred, true = next(answers), sequence[k - 1]
        text = f"{sequence} -> {pred} (true {true})"
        if len(sequence) > datamodule.max_len:
            text += f"; longer than the training lengths (up to {datamodule.max_len})"
        rows.append({"sequence": sequence, "K": k, "pred": pred, "true": true, "text": text})
    return {"rows": rows}


def parse_number(text: Any) -> int:
    """A non-negative decimal number or a ``0b`` bit string (most significant bit first)."""
    token = str(text).strip().replace("_", "")
    if re.fullmatch(r"0[bB][01]+", token):
        return int(token, 2)
    if re.fullmatch(r"[0-9]+", token):
        return int(token)
    raise ConfigError(
        f"{text!r} is not allowed: give a non-negative decimal number or a bit string such as "
        f"0b1011 (digits 0 and 1 only after 0b)"
    )


def parse_sums(value: Any) -> list[Any]:
    """``"a+b"``, ``[a, b]`` or several ``["a+b", "c+d"]`` -> (a, b) pairs; a bad one becomes
    its error message."""
    if OmegaConf.is_list(value):
        value = OmegaConf.to_container(value)
    if isinstance(value, list) and len(value) == 2 and not any("+" in str(v) for v in value):
        value = [f"{value[0]}+{value[1]}"]
    items = value if isinstance(value, list) else [value]
    pairs: list[Any] = []
    for item in items:
        parts = str(item).split("+")
        if len(parts) != 2:
            pairs.append(f"{item!r} is not allowed: give two numbers as a+b, e.g. 263604+493034")
            continue
        try:
            pairs.append(tuple(parse_number(p) for p in parts))
        except ConfigError as error:
            pairs.append(f"{item!r}: {error}")
    return pairs


def predict_sums(module: Any, datamodule: Any, value: Any) -> dict[str, Any]:
    """Each sum bit by bit, with the true sum and the wrong bits marked."""
    rows = []
    for pair in parse_sums(value):
        if isinstance(pair, str):
            rows.append({"error": pair})
            continue
        a, b = pair
        batch = encode_sum(a, b)
        logits, _ = forward_batch(module, datamodule, batch)
        bits = module.objective.predict(logits).cpu()[0].tolist()
        true_bits = batch["y"][0].tolist()
        pred = bits_to_int(bits)
        # Most significant bit first, as numbers are written; ^ under each wrong bit.
        shown, truth = "".join(map(str, bits[::-1])), "".join(map(str, true_bits[::-1]))
        marks = "".join("^" if p != t else " " for p, t in zip(shown, truth, strict=True))
        rows.append(
            {
                "a": a,
                "b": b,
                "pred": pred,
                "true": a + b,
                "bits": len(bits),
                "wrong_bits": marks.count("^"),
                "text": f"{a} + {b} = {pred} (true {a + b})",
                "pred_bits": shown,
                "true_bits": truth,
                "marks": marks.rstrip(),
            }
        )
    return {"rows": rows}


def markdown(task: str, result: dict[str, Any]) -> str:
    """The predictions as a table a person reads."""
    rows = result["rows"]
    lines = []
    if task == "mnist":
        lines += ["| file | predicted | confidence | true |", "|---|---|---|---|"]
        for r in rows:
            if "error" in r:
                lines.append(f"| {r['file']} | error: {r['error']} | | |")
            else:
                true = "" if r["true"] is None else r["true"]
                lines.append(f"| {r['file']} | {r['pred']} | {r['confidence']:.1%} | {true} |")
        if result["accuracy"] is not None:
            n, accuracy = result["labelled"], result["accuracy"]
            lines.append(f"\naccuracy on {n} labelled images: {accuracy:.1%}")
    else:
        for r in rows:
            if "error" in r:
                lines.append(f"- error: {r['error']}")
            elif task == "binary_add":
                lines += [
                    f"- {r['text']}",
                    f"  ```\n  predicted {r['pred_bits']}\n  true      {r['true_bits']}\n"
                    f"            {r['marks']}\n  ```",
                ]
            else:
                lines.append(f"- {r['text']}")
    return "\n".join(lines) + "\n"


def predict(cfg: DictConfig) -> tuple[dict[str, Any], Any]:
    """Predictions for ``cfg.input`` with ``cfg.ckpt_path``, and the image grid if any."""
    file, checkpoint = load_checkpoint(cfg.ckpt_path)
    config, datamodule, module = rebuild(checkpoint, data_dir=cfg.paths.data_dir)
    torch.set_num_threads(resolve_threads(cfg.threads))
    if cfg.accelerator != "cpu" and torch.cuda.is_available():
        module.to("cuda")
    task = config.task.name
    if task == "mnist":
        result = predict_images(module, datamodule, cfg.input)
    elif task == "remember":
        result = predict_digits(module, datamodule, cfg.input)
    else:
        result = predict_sums(module, datamodule, cfg.input)
    figure = result.pop("figure", None)
    return {"checkpoint": str(file), "task": task, **result}, figure


@hydra.main(version_base="1.3", config_path=CONF_DIR, config_name="predict")
@records.exits_on_write_fault
def main(cfg: DictConfig) -> None:
    out = Path(cfg.paths.output_dir)
    try:
        result, figure = predict(cfg)
    except ConfigError as error:
        records.discard_run_dir(out)
        sys.stderr.write(f"seqnets: error: {error}\n")
        sys.exit(EXIT_USAGE)
    records.write_metrics(out, result, name="predictions.json")
    (out / "predictions.md").write_text(markdown(result["task"], result))
    if figure is not None:
        figure.savefig(out / "predictions.png", dpi=120)
    print(markdown(result["task"], result))
    failed = [r["error"] for r in result["rows"] if "error" in r]
    for error in failed:
        sys.stderr.write(f"seqnets: error: {error}\n")
    log.info("predictions in %s", out)
    if failed:
        sys.stderr.write(f"seqnets: {len(failed)} of {len(result['rows'])} inputs failed\n")
        sys.exit(EXIT_USAGE)


if __name__ == "__main__":
    cli(main)

"""The demo's page: three tabs (draw a digit, add two numbers, remember a digit), built with
Gradio's Blocks; no JavaScript of our own.

Every handler turns a refused input into the same one line ``predict`` prints, shown where
the answer goes, and clears the old answer, so the page never shows a traceback and stays
usable; the answers themselves come from :mod:`seqnets.demo.answers`.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from typing import Any

import gradio as gr
import numpy as np
from PIL import Image

from seqnets.demo import answers, figures
from seqnets.demo.answers import Models
from seqnets.demo.catalog import Run
from seqnets.errors import ConfigError

log = logging.getLogger(__name__)

TITLE = "seqnets: see it think"
INTRO = (
    "A recurrent network reads its input one step at a time and keeps what it needs in its "
    "state. Give a trained network your own input and watch it answer step by step: an "
    "MNIST digit is read as 28 rows, a sum two bits at a time (least significant first), a "
    "digit list one digit at a time. Pick another run to compare networks on the same input."
)
PROMPT = "Draw a digit, or upload a photo of one."
SHOWN_SIZE = 168  # the 28x28 image is shown at 6x, each pixel a visible square


def _error_line(error: BaseException) -> str:
    """The one line shown for a refused input; Markdown's characters escaped, so that a file
    named ``my_first_7.png`` is not shown in italics."""
    line = answers.bad_input_line(error)
    if not isinstance(error, ConfigError):  # a bug, not a bad input: keep the traceback here
        log.exception("the demo failed on an input")
    return "**Not read:** " + re.sub(r"([\\`*_\[\]<>#|~])", r"\\\1", line)


def _picker(task: str, runs: list[Run], default: Run | None, elem: str) -> gr.Dropdown:
    choices = [(run.label, str(run.checkpoint)) for run in runs if run.task == task]
    return gr.Dropdown(
        choices=choices,
        value=str(default.checkpoint) if default else None,
        label="trained run (task · cell, size · seed · test score · directory)",
        interactive=bool(choices),
        elem_id=elem,
    )


def _loaded(models: Models, checkpoint: str | None, missing: dict[str, str], task: str):
    if not checkpoint:
        raise ConfigError(missing[task])
    return models.get(checkpoint)


def _enlarged(image: Any) -> Image.Image:
    """The 28x28 image the network reads, enlarged without smoothing."""
    pixels = np.asarray(image, dtype=np.uint8)
    return Image.fromarray(pixels).resize((SHOWN_SIZE, SHOWN_SIZE), Image.NEAREST)


def build(
    runs: list[Run],
    defaults: dict[str, Run],
    models: Models,
    missing: dict[str, str],
    max_bits: int,
    max_len: int,
) -> gr.Blocks:
    """The page. ``missing`` holds, for each task without a run, the line that says how to
    train one; ``max_bits`` and ``max_len`` cap sums and digit lists."""
    with gr.Blocks(title=TITLE, analytics_enabled=False) as page:
        gr.Markdown(f"# {TITLE}\n{INTRO}")
        with gr.Tabs():
            with gr.Tab("Draw a digit (MNIST)", id="mnist", elem_id="tab-mnist"):
                _mnist_tab(runs, defaults, models, missing)
            with gr.Tab("Add two numbers", id="binary_add", elem_id="tab-add"):
                _add_tab(runs, defaults, models, missing, max_bits)
            with gr.Tab("Remember the digit at index K", id="remember", elem_id="tab-remember"):
                _remember_tab(runs, defaults, models, missing, max_len)
    return page


def _notice(task: str, missing: dict[str, str]) -> None:
    if task in missing:
        gr.Markdown(f"**{missing[task]}**", elem_id=f"{task}-none")


def _mnist_tab(runs, defaults, models, missing) -> None:
    _notice("mnist", missing)
    with gr.Row():
        with gr.Column(scale=1):
            picker = _picker("mnist", runs, defaults.get("mnist"), "mnist-model")
            sketch = gr.Sketchpad(
                label="draw a digit: pick the brush, then draw with the mouse or a finger",
                type="pil",
                image_mode="RGBA",
                canvas_size=(280, 280),
                format="png",
                layers=False,
                transforms=(),
                brush=gr.Brush(default_size=14, colors=["#000000"], color_mode="fixed"),
                elem_id="mnist-sketch",
            )
            upload = gr.File(label="or upload a photo of a digit", elem_id="mnist-upload")
            read = gr.Button("Read the drawing", variant="primary", elem_id="mnist-read")
        with gr.Column(scale=2):
            said = gr.Markdown(PROMPT, elem_id="mnist-answer")
            with gr.Row():
                seen = gr.Image(
                    label="what the network reads (28x28)",
                    type="pil",
                    format="png",
                    height=SHOWN_SIZE + 60,
                    interactive=False,
                    elem_id="mnist-seen",
                )
                probs = gr.Label(num_top_classes=10, label="its answer", elem_id="mnist-probs")
            rows = gr.Image(
                label="row by row: the answer after each row read",
                type="pil",
                format="png",
                interactive=False,
                elem_id="mnist-rows",
            )
    outputs = [said, seen, probs, rows]

    def answer(checkpoint: str | None, drawing: Any, file: Any) -> list[Any]:
        return read_mnist(models, missing, checkpoint, drawing, file)

    def from_drawing(checkpoint: str | None, drawing: Any) -> list[Any]:
        return [*answer(checkpoint, drawing, None), None]

    def from_upload(checkpoint: str | None, file: Any) -> list[Any]:
        return answer(checkpoint, None, file)

    read.click(from_drawing, [picker, sketch], [*outputs, upload])
    sketch.change(from_drawing, [picker, sketch], [*outputs, upload], trigger_mode="always_last")
    upload.upload(from_upload, [picker, upload], outputs, api_name="read_upload")
    picker.change(answer, [picker, sketch, upload], outputs, api_name="read_digit")


def read_mnist(
    models: Models, missing: dict[str, str], checkpoint: str | None, drawing: Any, file: Any
) -> list[Any]:
    """The MNIST tab's answer to a drawing (Sketchpad's value) or an uploaded file: the text,
    the 28x28 image, the ten probabilities and the row-by-row picture. A function of its own
    so that ``benchmarks/demo_timing.py`` times what the server runs, without the page."""
    composite = drawing.get("composite") if isinstance(drawing, dict) else drawing
    if composite is None and not file:  # a run picked before anything was drawn
        return [PROMPT, None, None, None]
    try:
        loaded = _loaded(models, checkpoint, missing, "mnist")
        result = answers.read_digit(loaded, composite, file)
    except Exception as error:  # shown as one line; the page stays as it was otherwise
        return [_error_line(error), None, None, None]
    digit, confidence = result["answer"], result["confidence"]
    text = f"The network reads **{digit}** ({confidence:.1%} sure)."
    figure = None
    if result["rows"] is not None:
        settled = _settle_row(result["rows"], digit)
        text += f" It settles on {digit} after row {settled} of {len(result['rows'])}."
        figure = figures.mnist_rows(np.asarray(result["image"]), result["rows"], digit)
    else:
        text += " (bidirectional network: it reads every row both ways, no per-row answer)"
    label = {str(d): p for d, p in enumerate(result["probs"])}
    return [text, _enlarged(result["image"]), label, figure]


def _settle_row(rows: list[list[float]], digit: int) -> int:
    """The first row from which the answer stays ``digit`` to the end."""
    answers_by_row = np.asarray(rows).argmax(1)
    row = len(rows)
    while row > 1 and answers_by_row[row - 2] == digit:
        row -= 1
    return row


def _text_tab(
    task: str,
    runs: list[Run],
    defaults: dict[str, Run],
    missing: dict[str, str],
    prompt: str,
    example: str,
    elem: str,
    respond: Callable[[str | None, str], list[Any]],
) -> None:
    """A tab where a person types an input: picker, text box, button, answer, figure."""
    _notice(task, missing)
    picker = _picker(task, runs, defaults.get(task), f"{elem}-model")
    with gr.Row():
        text = gr.Textbox(label=prompt, value=example, scale=4, elem_id=f"{elem}-input")
        button = gr.Button("Answer", variant="primary", scale=1, elem_id=f"{elem}-go")
    said = gr.Markdown(elem_id=f"{elem}-answer")
    plot = gr.Plot(label="step by step", format="png", elem_id=f"{elem}-plot")
    button.click(respond, [picker, text], [said, plot], api_name=elem)
    text.submit(respond, [picker, text], [said, plot])
    picker.change(respond, [picker, text], [said, plot])


def _add_tab(runs, defaults, models, missing, max_bits: int) -> None:
    def respond(checkpoint: str | None, text: str) -> list[Any]:
        try:
            result = answers.add(_loaded(models, checkpoint, missing, "binary_add"), text, max_bits)
        except Exception as error:
            return [_error_line(error), None]
        verdict = "right" if result["pred"] == result["true"] else "wrong"
        lines = [
            f"{result['a']} + {result['b']} = **{result['pred']}** "
            f"(the network's answer; the true sum is {result['true']}: {verdict}, "
            f"{result['wrong_bits']} wrong bit(s) of {result['bits']})",
            "",
            "```",
            f"network  {result['pred_bits']}",
            f"true     {result['true_bits']}",
            *([f"wrong    {result['marks']}"] if result["wrong_bits"] else []),
            "```",
        ]
        if result["unit"] is None:
            lines.append("No state unit follows the carry in this network.")
        return ["\n".join(lines), figures.sum_bits(result)]

    _text_tab(
        "binary_add",
        runs,
        defaults,
        missing,
        f"two numbers, decimal or 0b bits, e.g. 263604+493034 or 0b1011+0b110 "
        f"(up to {max_bits} bits)",
        "263604+493034",
        "add",
        respond,
    )


def _remember_tab(runs, defaults, models, missing, max_len: int) -> None:
    def respond(checkpoint: str | None, text: str) -> list[Any]:
        try:
            loaded = _loaded(models, checkpoint, missing, "remember")
            result = answers.remember(loaded, text, max_len)
        except Exception as error:
            return [_error_line(error), None]
        verdict = "right" if result["pred"] == result["true"] else "wrong"
        sure = f" ({result['confidence']:.1%} sure)" if result["confidence"] is not None else ""
        line = (
            f"The digit at index K={result['K']}: the network answers **{result['pred']}**"
            f"{sure}; the list has {result['true']} there ({verdict})."
        )
        if len(result["sequence"]) > loaded.datamodule.max_len:
            line += f" The list is longer than any it trained on ({loaded.datamodule.max_len})."
        figure = figures.remember_steps(result) if result["steps"] is not None else None
        return [line, figure]

    _text_tab(
        "remember",
        runs,
        defaults,
        missing,
        f"a list of digits 0-9, e.g. 6,8,0,2,8,7 or 680287 (up to {max_len})",
        "6,8,0,2,8,7",
        "remember",
        respond,
    )

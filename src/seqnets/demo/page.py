"""The demo's page: one tab per task, built with Gradio's Blocks from what each task declares
(``Task.demo_tab``: a canvas, a text box or a box for numbers; whether its answers come with
the input as read and with probabilities). The page names no task.

Every handler turns a refused input into the same one line ``predict`` prints, shown where
the answer goes, and clears the old answer, so the page never shows a traceback and stays
usable; the answers themselves come from the tasks (:mod:`seqnets.demo.answers`).

A drawing is answered as it is drawn: the canvas opens with its brush chosen (a few lines of
JavaScript at page load, the one thing Gradio has no setting for) and every stroke sends it
(the Sketchpad's ``input`` event, the newest drawing only), so no button is needed.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from typing import Any

import gradio as gr
import numpy as np
from PIL import Image

from seqnets.demo import answers
from seqnets.demo.answers import Models
from seqnets.demo.runs import Run
from seqnets.errors import ConfigError
from seqnets.tasks.base import DemoAnswer, DemoTab

log = logging.getLogger(__name__)

TITLE = "seqnets: see it think"
INTRO = (
    "A recurrent network reads its input one step at a time and keeps what it needs in its "
    "state. Give a trained network your own input and watch it answer step by step. Pick "
    "another run to compare networks on the same input."
)
DRAW_PROMPT = "Draw on the canvas, or upload an image."
SHOWN_SIZE = 168
# Choose each canvas's brush once the page is there: Gradio's canvas opens on its image tool.
CHOOSE_BRUSH = """() => {
  const choose = () => document.querySelectorAll('.seqnets-draw button[aria-label=Brush]')
    .forEach(b => { if (!b.dataset.chosen) { b.dataset.chosen = '1'; b.click(); } });
  choose();
  new MutationObserver(choose).observe(document.body, {childList: true, subtree: true});
}"""


@dataclass(frozen=True)
class TabSpec:
    """One tab: its task's name (the elements' ids start with it), what the task declares,
    the runs it offers, its default run and, without runs, what to say instead."""

    name: str
    tab: DemoTab
    runs: list[Run]
    default: Run | None
    missing: str | None = None


def _error_line(error: BaseException) -> str:
    """The one line shown for a refused input; Markdown's characters escaped, so that a file
    named ``my_first_7.png`` is not shown in italics."""
    line = answers.bad_input_line(error)
    if not isinstance(error, ConfigError):  # a bug, not a bad input: keep the traceback here
        log.exception("the demo failed on an input")
    return "**Not read:** " + re.sub(r"([\\`*_\[\]<>#|~])", r"\\\1", line)


def _picture(value: Any) -> Image.Image | None:
    """A step-by-step picture as an image: a PIL image as it is, a matplotlib Figure drawn
    (with Agg, into memory)."""
    if value is None or isinstance(value, Image.Image):
        return value
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    canvas = FigureCanvasAgg(value)
    canvas.draw()
    return Image.fromarray(np.asarray(canvas.buffer_rgba())).convert("RGB")


def _image(value: Any) -> Image.Image | None:
    if value is None or isinstance(value, Image.Image):
        return value
    return Image.fromarray(value)


def respond(
    models: Models, spec: TabSpec, checkpoint: str | None, value: Any, max_steps: int
) -> list[Any]:
    """A tab's outputs for ``value``: the text, then (where the tab has them) the input as
    read and the probabilities, then the step-by-step picture. A function of its own, so
    that the timing tool times what the server runs, without the page."""
    empty = [None] * (spec.tab.image + spec.tab.probabilities + 1)
    try:
        if not checkpoint:
            raise ConfigError(spec.missing or f"no run of {spec.name} is offered")
        result: DemoAnswer = models.get(checkpoint).answer(value, max_steps)
    except Exception as error:  # shown as one line; the page stays as it was otherwise
        return [_error_line(error), *empty]
    out: list[Any] = [result.text]
    if spec.tab.image:
        out.append(_image(result.image))
    if spec.tab.probabilities:
        out.append(result.probabilities)
    return [*out, _picture(result.steps)]


def build(specs: list[TabSpec], models: Models, max_steps: int) -> gr.Blocks:
    """The page: one tab per task of ``specs``, in that order."""
    with gr.Blocks(title=TITLE, analytics_enabled=False) as page:
        gr.Markdown(f"# {TITLE}\n{INTRO}")
        with gr.Tabs():
            for spec in specs:
                with gr.Tab(spec.tab.title, id=spec.name, elem_id=f"tab-{spec.name}"):
                    if spec.missing:
                        gr.Markdown(f"**{spec.missing}**", elem_id=f"{spec.name}-none")
                    if spec.tab.input == "drawing":
                        _drawing_tab(spec, models, max_steps)
                    else:
                        _text_tab(spec, models, max_steps)
        page.load(None, js=CHOOSE_BRUSH)
    return page


def _picker(spec: TabSpec) -> gr.Dropdown:
    choices = [(run.label, str(run.checkpoint)) for run in spec.runs]
    return gr.Dropdown(
        choices=choices,
        value=str(spec.default.checkpoint) if spec.default else None,
        label="trained run (task · cell, size · seed · test score · directory)",
        interactive=bool(choices),
        elem_id=f"{spec.name}-model",
    )


def _outputs(spec: TabSpec) -> list[Any]:
    """The answer's components: text, input as read and probabilities (if declared), steps."""
    name, tab = spec.name, spec.tab
    said = gr.Markdown(DRAW_PROMPT if tab.input == "drawing" else "", elem_id=f"{name}-answer")
    shown: list[Any] = [said]
    with gr.Row():
        if tab.image:
            shown.append(
                gr.Image(
                    label=tab.image_label,
                    type="pil",
                    format="png",
                    height=SHOWN_SIZE + 60,
                    interactive=False,
                    elem_id=f"{name}-seen",
                )
            )
        if tab.probabilities:
            shown.append(gr.Label(num_top_classes=10, label="its answer", elem_id=f"{name}-probs"))
    shown.append(
        gr.Image(
            label=tab.steps_label,
            type="pil",
            format="png",
            interactive=False,
            elem_id=f"{name}-steps",
        )
    )
    return shown


def _drawing_tab(spec: TabSpec, models: Models, max_steps: int) -> None:
    name = spec.name
    with gr.Row():
        with gr.Column(scale=1):
            picker = _picker(spec)
            sketch = gr.Sketchpad(
                label=spec.tab.prompt or "draw with the mouse or a finger",
                type="pil",
                image_mode="RGBA",
                canvas_size=(140, 140),
                format="png",
                layers=False,
                transforms=(),
                brush=gr.Brush(default_size=7, colors=["#000000"], color_mode="fixed"),
                elem_id=f"{name}-sketch",
                elem_classes=["seqnets-draw"],
            )
            upload = gr.File(label="or upload an image", elem_id=f"{name}-upload")
        with gr.Column(scale=2):
            outputs = _outputs(spec)

    def composite(drawing: Any) -> Any:
        return drawing.get("composite") if isinstance(drawing, dict) else drawing

    def from_drawing(checkpoint: str | None, drawing: Any) -> list[Any]:
        image = composite(drawing)
        if image is None:  # cleared: the page as it opened
            return [DRAW_PROMPT, *[None] * (len(outputs) - 1), None]
        return [*respond(models, spec, checkpoint, image, max_steps), None]

    def from_upload(checkpoint: str | None, file: Any) -> list[Any]:
        if not file:
            return [DRAW_PROMPT, *[None] * (len(outputs) - 1)]
        return respond(models, spec, checkpoint, str(file), max_steps)

    def again(checkpoint: str | None, drawing: Any, file: Any) -> list[Any]:
        image = composite(drawing)
        if image is None and not file:  # a run picked before anything was drawn
            return [DRAW_PROMPT, *[None] * (len(outputs) - 1)]
        value = str(file) if file else image
        return respond(models, spec, checkpoint, value, max_steps)

    # Every stroke answers (the newest drawing only, if strokes come faster than answers);
    # the upload box is cleared, so that it never shows a file the answer is not about.
    sketch.change(
        from_drawing,
        [picker, sketch],
        [*outputs, upload],
        trigger_mode="always_last",
        show_progress="hidden",
        api_name=f"{name}_drawing",
    )
    upload.upload(from_upload, [picker, upload], outputs, api_name=f"{name}_upload")
    picker.change(again, [picker, sketch, upload], outputs, api_name=f"{name}_again")


def _text_tab(spec: TabSpec, models: Models, max_steps: int) -> None:
    """A tab where a person types an input: picker, text box, button, answer, picture."""
    name, tab = spec.name, spec.tab
    picker = _picker(spec)
    with gr.Row():
        text = gr.Textbox(label=tab.prompt, value=tab.example, scale=4, elem_id=f"{name}-input")
        button = gr.Button("Answer", variant="primary", scale=1, elem_id=f"{name}-go")
    outputs = _outputs(spec)

    def answer(checkpoint: str | None, value: str) -> list[Any]:
        return respond(models, spec, checkpoint, value, max_steps)

    button.click(answer, [picker, text], outputs, api_name=name)
    text.submit(answer, [picker, text], outputs)
    picker.change(answer, [picker, text], outputs)

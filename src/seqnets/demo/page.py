"""The demo's page: one tab per task, built with Gradio's Blocks from what each task declares
(``Task.demo_tab``); the page names no task. Every handler shows a refused input as the one
line ``predict`` prints, where the answer goes, so the page never shows a traceback. A
drawing is answered as it is drawn (see ``THROTTLE_MS``): no button, nothing uploaded first.
"""

from __future__ import annotations

import base64
import io
import logging
import re
from dataclasses import dataclass
from typing import Any

import gradio as gr
import numpy as np
from PIL import Image

from seqnets.demo import answers
from seqnets.demo.answers import Models
from seqnets.demo.catalog import Run
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
CANVAS_PX = 280  # what the person draws on
CANVAS_SCALE = 2  # ... drawn at half that resolution: MNIST has 28 rows, 140 is plenty
BRUSH_PX = 14
# A plain 2D canvas, ready for a stroke when the page opens. Each stroke is sent as a PNG
# (a data URL of a few kB) with the event itself, on release and every THROTTLE_MS while
# drawing, so nothing is uploaded first. Gradio's Sketchpad, measured here, spent most of a
# second after each release exporting three layers through WebGL and uploading them before
# it sent the request (docs/demo.md, "How fast it answers").
THROTTLE_MS = 200
PAD_HTML = f"""<div class="seqnets-pad">
<canvas width="{CANVAS_PX // CANVAS_SCALE}" height="{CANVAS_PX // CANVAS_SCALE}"
  aria-label="drawing canvas"></canvas>
<button type="button" class="seqnets-clear">Clear</button>
</div>"""
PAD_CSS = f"""
canvas {{ width: {CANVAS_PX}px; height: {CANVAS_PX}px; touch-action: none; cursor: crosshair;
  background: white; border: 1px solid var(--border-color-primary); border-radius: 4px; }}
.seqnets-clear {{ display: block; margin-top: 4px; padding: 2px 10px;
  border: 1px solid var(--border-color-primary); border-radius: 4px; }}
"""
PAD_JS = f"""
const canvas = element.querySelector('canvas');
const ctx = canvas.getContext('2d');
ctx.lineCap = 'round'; ctx.lineJoin = 'round'; ctx.strokeStyle = '#000';
ctx.fillStyle = '#000'; ctx.lineWidth = {BRUSH_PX / CANVAS_SCALE};
let drawing = false, last = null, sent = 0;
const at = (e) => {{
  const r = canvas.getBoundingClientRect();
  return [(e.clientX - r.left) * canvas.width / r.width,
          (e.clientY - r.top) * canvas.height / r.height];
}};
const send = () => {{
  sent = performance.now();
  trigger('input', {{png: canvas.toDataURL('image/png')}});
}};
canvas.addEventListener('pointerdown', (e) => {{
  drawing = true; last = at(e); canvas.setPointerCapture(e.pointerId);
  ctx.beginPath(); ctx.arc(last[0], last[1], ctx.lineWidth / 2, 0, 2 * Math.PI); ctx.fill();
}});
canvas.addEventListener('pointermove', (e) => {{
  if (!drawing) return;
  const p = at(e);
  ctx.beginPath(); ctx.moveTo(last[0], last[1]); ctx.lineTo(p[0], p[1]); ctx.stroke();
  last = p;
  if (performance.now() - sent > {THROTTLE_MS}) send();
}});
const end = () => {{ if (drawing) {{ drawing = false; send(); }} }};
canvas.addEventListener('pointerup', end);
canvas.addEventListener('pointercancel', end);
element.querySelector('.seqnets-clear').addEventListener('click', () => {{
  ctx.clearRect(0, 0, canvas.width, canvas.height);
  trigger('input', {{png: null}});
}});
canvas.dataset.ready = 'true';  // the listeners are on: a stroke from now on is answered
"""


def decode_png(data_url: str | None) -> Image.Image | None:
    """The canvas's PNG data URL as an RGBA image (black ink on transparent, as drawn)."""
    if not data_url:
        return None
    if not data_url.startswith("data:image/png;base64,"):
        raise ConfigError("the drawing did not arrive as a PNG")
    image = Image.open(io.BytesIO(base64.b64decode(data_url.split(",", 1)[1])))
    return image.convert("RGBA")


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
            pad = gr.HTML(
                html_template=PAD_HTML,
                css_template=PAD_CSS,
                js_on_load=PAD_JS,
                label=spec.tab.prompt or "draw with the mouse or a finger",
                show_label=True,
                container=True,
                elem_id=f"{name}-sketch",
            )
            upload = gr.File(label="or upload an image", elem_id=f"{name}-upload")
        with gr.Column(scale=2):
            outputs = _outputs(spec)
    blank = [None] * (len(outputs) - 1)
    drawn = gr.State(None)  # the last drawing, for another run picked

    def from_drawing(checkpoint: str | None, event: gr.EventData) -> list[Any]:
        try:
            image = decode_png((event._data or {}).get("png"))
        except Exception as error:
            return [_error_line(error), *blank, None, None]
        if image is None:  # cleared: the page as it opened
            return [DRAW_PROMPT, *blank, None, None]
        return [*respond(models, spec, checkpoint, image, max_steps), None, image]

    def from_upload(checkpoint: str | None, file: Any) -> list[Any]:
        if not file:
            return [DRAW_PROMPT, *blank]
        return respond(models, spec, checkpoint, str(file), max_steps)

    def again(checkpoint: str | None, file: Any, image: Any) -> list[Any]:
        if not file and image is None:  # a run picked before anything was drawn
            return [DRAW_PROMPT, *blank]
        return respond(models, spec, checkpoint, str(file) if file else image, max_steps)

    # Every stroke answers, the newest drawing only if strokes come faster than answers;
    # the upload box is cleared, so that it never shows a file the answer is not about.
    pad.input(
        from_drawing,
        [picker],
        [*outputs, upload, drawn],
        trigger_mode="always_last",
        show_progress="hidden",
        api_name=f"{name}_drawing",
    )
    upload.upload(from_upload, [picker, upload], outputs, api_name=f"{name}_upload")
    picker.change(again, [picker, upload, drawn], outputs, api_name=f"{name}_again")


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

"""MNIST's tab on the demo page: a digit drawn (or an image file uploaded), the 28x28 image
the network reads, its ten probabilities and its answer after each row read.

Answered through the own-handwriting pipeline of :mod:`seqnets.data.images`, so the page and
``predict`` agree on every image and every refusal. The row-by-row picture is drawn with PIL:
it comes with every stroke, and matplotlib would take most of the time an answer may take.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from matplotlib import colormaps
from PIL import Image, ImageDraw, ImageFont

from seqnets.data.images import ImageError, image_ink, prepare, to_mnist
from seqnets.scoring import readout_by_step
from seqnets.tasks.base import DemoAnswer, DemoTab

SHOWN_SIZE = 168  # the 28x28 image is shown at 6x, each pixel a visible square
RIGHT = "#2a7ab0"

TAB = DemoTab(
    title="Draw a digit (MNIST)",
    input="drawing",
    prompt="draw a digit with the mouse or a finger: the answer follows the stroke",
    image=True,
    probabilities=True,
    image_label="what the network reads (28x28)",
    steps_label="row by row: the answer after each row read",
)


def read_digit(module: Any, datamodule: Any, drawing: Any, upload: str | None) -> dict:
    """The digit in an uploaded file (when given) or a drawing (a PIL image): the 28x28 image
    the network reads, its ten probabilities, and the probabilities after each row read (None
    for a bidirectional network, which has read every row both ways at every row)."""
    from seqnets.tasks.mnist import digit_probabilities

    if upload:
        images, (result,) = prepare([upload])
        if not result.ok:  # the message names the server's copy: name the user's file
            raise ImageError(str(result.error).replace(str(upload), Path(upload).name))
    elif drawing is not None:
        images = to_mnist(image_ink(drawing, "the drawing"))[None]
    else:
        raise ImageError("nothing to read: draw a digit or upload a photo of one")
    probs = digit_probabilities(module, datamodule, images)[0]
    rows = None
    if not module.backbone.bidirectional:
        x = datamodule.normalize(images)
        rows = readout_by_step(module, x)[1].softmax(-1)[0].cpu()
    return {
        "image": images[0],
        "probs": probs.tolist(),
        "answer": int(probs.argmax()),
        "confidence": float(probs.max()),
        "rows": rows.tolist() if rows is not None else None,
    }


def answer(module: Any, datamodule: Any, value: Any, state: Any, max_steps: int) -> DemoAnswer:
    """The page's answer: ``value`` is a drawing (a PIL image) or an uploaded file's path; the
    image as read, the ten probabilities and the answer after each row."""
    upload = value if isinstance(value, str | Path) else None
    result = read_digit(module, datamodule, None if upload else value, upload)
    digit, confidence = result["answer"], result["confidence"]
    text = f"The network reads **{digit}** ({confidence:.1%} sure)."
    figure = None
    if result["rows"] is not None:
        settled = settle_row(result["rows"], digit)
        text += f" It settles on {digit} after row {settled} of {len(result['rows'])}."
        figure = mnist_rows(np.asarray(result["image"]), result["rows"], digit)
    else:
        text += " (bidirectional network: it reads every row both ways, no per-row answer)"
    return DemoAnswer(
        text,
        image=enlarged(result["image"]),
        probabilities={str(d): p for d, p in enumerate(result["probs"])},
        steps=figure,
        numbers=result,
    )


def enlarged(image: Any) -> Image.Image:
    """The 28x28 image the network reads, enlarged without smoothing."""
    pixels = np.asarray(image if not torch.is_tensor(image) else image.numpy(), dtype=np.uint8)
    return Image.fromarray(pixels).resize((SHOWN_SIZE, SHOWN_SIZE), Image.NEAREST)


def settle_row(rows: list[list[float]], digit: int) -> int:
    """The first row from which the answer stays ``digit`` to the end."""
    answers_by_row = np.asarray(rows).argmax(1)
    row = len(rows)
    while row > 1 and answers_by_row[row - 2] == digit:
        row -= 1
    return row


def mnist_rows(image: np.ndarray, rows: Sequence[Sequence[float]], answer: int) -> Image.Image:
    """The image the network reads beside what it would answer after each row: the row read,
    the ten probabilities after it (a heat map), and the answer with its confidence (a bar,
    blue where it is the final answer). Every panel shares the rows, so a person sees the
    answer change as the digit is drawn in row by row."""
    probs = np.asarray(rows, dtype=np.float32)
    count = probs.shape[0]
    cell, top, left, gap = 10, 26, 34, 16
    heat_w, bar_w = 18, 150
    heat_x = left + 28 * cell + gap
    bar_x = heat_x + 10 * heat_w + gap
    width, height = bar_x + bar_w + 30, top + count * cell + 24
    canvas = Image.new("RGB", (width, height), "white")
    ink = Image.fromarray(np.asarray(image, dtype=np.uint8))
    ink = ink.resize((28 * cell, count * cell), Image.NEAREST)
    canvas.paste(ink.convert("RGB"), (left, top))
    heat = (colormaps["Blues"](probs)[..., :3] * 255).astype(np.uint8)
    heat = Image.fromarray(heat).resize((10 * heat_w, count * cell), Image.NEAREST)
    canvas.paste(heat, (heat_x, top))
    draw = ImageDraw.Draw(canvas)
    font = ImageFont.load_default(size=11)
    draw.text((left, 6), "rows as read", fill="black", font=font)
    draw.text((heat_x, 6), "P(digit) after the row", fill="black", font=font)
    draw.text((bar_x, 6), "answer, confidence", fill="black", font=font)
    for row in range(count):
        y = top + row * cell
        if (row + 1) % 5 == 0 or row == 0:
            draw.text((4, y - 2), f"{row + 1:>2}", fill="black", font=font)
        digit, p = int(probs[row].argmax()), float(probs[row].max())
        colour = RIGHT if digit == answer else "#999999"
        draw.rectangle((bar_x, y + 1, bar_x + max(1, round(p * bar_w)), y + cell - 2), fill=colour)
        draw.text((bar_x + round(p * bar_w) + 4, y - 2), str(digit), fill="black", font=font)
    for digit in range(10):
        x = heat_x + digit * heat_w + heat_w // 2 - 3
        draw.text((x, top + count * cell + 4), str(digit), fill="black", font=font)
    draw.text((bar_x, top + count * cell + 4), "0", fill="black", font=font)
    draw.text((bar_x + bar_w - 6, top + count * cell + 4), "1", fill="black", font=font)
    return canvas

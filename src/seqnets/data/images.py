"""A user's own digit images brought to MNIST's form, so an MNIST model sees what it learned on.

MNIST's makers (LeCun et al.) fitted each scanned digit into a 20x20 box keeping its aspect
ratio, anti-aliased it to grey levels and centred its mass in a 28x28 image, bright ink (255)
on black (0). A photo as it is (dark ink on light paper, small, off centre) is nothing like
that, and a model answers the same class for nearly all of them. This module repeats those
steps: ``find_images`` -> ``load_image`` (ink map, polarity fixed) -> ``to_mnist`` (uint8
28x28); ``prepare`` runs them over many files, recording a bad file's error, not stopping.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, ImageOps

from seqnets.errors import ConfigError

log = logging.getLogger(__name__)

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff")
# Ink must differ from the paper by at least this much (on a 0..1 grey scale, ~25 of 255
# levels) or the image counts as blank: JPEG noise and paper texture stay well below it.
MIN_CONTRAST = 0.1
# Ink fainter than this fraction of the strongest ink is background noise (paper texture,
# shadows, JPEG ringing) and is dropped before cropping, so it cannot widen the bounding box.
NOISE_FRACTION = 0.2
BORDER_FRACTION = 0.02  # border strip, as a fraction of the shorter side, that shows the paper
BOX = 20  # MNIST's digits fill a 20x20 box ...
SIZE = 28  # ... inside a 28x28 image ...
CENTRE = 14  # ... with the centre of mass at pixel (14, 14), rounded to whole pixels


class ImageError(ConfigError):
    """A user's image file cannot be used; the message names the file and says why."""


@dataclass(frozen=True)
class ImageResult:
    """What became of one file in ``prepare``: its row in the batch, or why it has none."""

    path: Path
    label: int | None  # from the file name, when it starts with a digit
    row: int | None = None  # index into prepare's tensor; None when the file failed
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.error is None


def _allowed() -> str:
    return ", ".join(ext.lstrip(".") for ext in IMAGE_EXTENSIONS)


def find_images(path: str | os.PathLike) -> list[Path]:
    """The image files a user pointed at: the file itself, or a folder's image files by name.

    A folder is read non-recursively and filtered by extension only (a broken file with an image
    extension is kept, so it is reported per file later); hidden files (macOS's ``._x.png``
    shadows) are skipped. An explicitly named file is kept whatever its extension: PIL reads by
    content, and ``load_image`` says clearly if it is not an image.
    """
    root = Path(path).expanduser()
    if root.is_file():
        return [root]
    if not root.exists():
        raise ImageError(
            f"{root} does not exist: give an image file or a folder of images ({_allowed()})"
        )
    if not root.is_dir():
        raise ImageError(f"{root} is neither a file nor a folder of images ({_allowed()})")
    try:
        entries = [p for p in root.iterdir() if p.is_file() and not p.name.startswith(".")]
    except OSError as failed:
        raise ImageError(f"the folder {root} cannot be read ({failed.strerror})") from failed
    images = sorted(p for p in entries if p.suffix.lower() in IMAGE_EXTENSIONS)
    others = len(entries) - len(images)
    if not images:
        raise ImageError(
            f"the folder {root} has no image files ({_allowed()}); "
            f"{others} file(s) with other extensions were ignored"
        )
    if others:
        log.info("%s: ignored %d file(s) without an image extension", root, others)
    return images


def _grey_and_alpha(image: Image.Image) -> tuple[np.ndarray, np.ndarray | None]:
    """Luminance in [0, 1] and opacity in [0, 1] (None when the mode has no transparency).

    16- and 32-bit modes are read as numbers, not through PIL's 8-bit conversion, which clips.
    """
    if image.mode.startswith("I;16"):
        return np.asarray(image, dtype=np.float32) / 65535.0, None
    if image.mode in ("I", "F"):
        values = np.clip(np.asarray(image, dtype=np.float32), 0.0, None)
        top = float(values.max())
        full = next((s for s in (1.0, 255.0, 65535.0) if top <= s), top)
        if image.mode == "I":
            full = max(full, 255.0)  # whole numbers: 1 is a faint grey, not white
        return values / full, None
    if image.mode in ("RGBA", "LA", "PA", "RGBa", "La") or "transparency" in image.info:
        rgba = np.asarray(image.convert("RGBA"), dtype=np.float32) / 255.0
        grey = rgba[..., :3] @ np.array([0.299, 0.587, 0.114], dtype=np.float32)
        return grey, rgba[..., 3]
    return np.asarray(image.convert("L"), dtype=np.float32) / 255.0, None


def _border(values: torch.Tensor) -> torch.Tensor:
    """The pixels of a strip around the edge: on a photo or scan of a digit, mostly paper."""
    width = max(1, round(BORDER_FRACTION * min(values.shape)))
    return torch.cat(
        [
            values[:width].flatten(),
            values[-width:].flatten(),
            values[:, :width].flatten(),
            values[:, -width:].flatten(),
        ]
    )


def _composite(grey: torch.Tensor, alpha: torch.Tensor, name: Path) -> torch.Tensor:
    """Transparent pixels become paper, so a drawing app's transparent canvas reads as paper.

    The paper's colour: where most of the image is opaque (a scanned sheet with a transparent
    margin), the opaque pixels' median, which is the sheet; where most is transparent, the
    canvas *is* the paper and the opaque pixels are the strokes, so the paper takes the colour
    opposite to theirs (white under dark strokes, black under light ones). The colour stored in
    transparent pixels is meaningless (often black) and is never used.
    """
    if bool((alpha >= 1.0).all()):
        return grey
    if float(alpha.max()) <= 0.0:
        raise ImageError(f"{name}: no ink was found (the image is fully transparent)")
    opaque = alpha > 0.5
    if float(opaque.float().mean()) > 0.5:
        paper = float(grey[opaque].median())
    else:
        drawn = float((grey * alpha).sum() / alpha.sum())
        paper = 1.0 if drawn < 0.5 else 0.0
    return alpha * grey + (1.0 - alpha) * paper


def _ink(grey: torch.Tensor, name: Path) -> torch.Tensor:
    """Grey levels -> ink in [0, 1], 1 the strongest ink, whichever way round the image is.

    The paper's level is the median of the border. The ink lies on whichever side of it reaches
    further: the darkest or lightest 3x3 neighbourhood (a mean, so a lone noisy pixel cannot
    decide). Dark ink on light paper is inverted, and the contrast stretched so paper is 0.
    """
    paper = _border(grey).median()
    smooth = F.avg_pool2d(grey[None, None], 3, stride=1, padding=1, count_include_pad=False)[0, 0]
    darker = float(paper - smooth.min())
    lighter = float(smooth.max() - paper)
    contrast = max(darker, lighter)
    if contrast < MIN_CONTRAST:
        raise ImageError(
            f"{name}: no ink was found (the image is blank: its darkest and lightest parts "
            f"differ from the background by less than {MIN_CONTRAST:.0%} of full scale)"
        )
    ink = (paper - grey) / darker if darker >= lighter else (grey - paper) / lighter
    return ink.clamp(0.0, 1.0)


def _upright(image: Image.Image) -> Image.Image:
    """The image turned as the camera's EXIF tag says; a phone photo is often stored sideways.
    A malformed tag is ignored: the pixels are still good."""
    try:
        return ImageOps.exif_transpose(image)
    except Exception:  # PIL's EXIF parser raises many types on malformed tags
        return image


def load_image(path: str | os.PathLike) -> torch.Tensor:
    """Ink map of one image file: float32 (height, width) in [0, 1], 1 = ink, 0 = paper.

    Reads any mode PIL knows (grey, RGB, palette, 16-bit, with transparency; a GIF's first
    frame) and follows a photo's EXIF orientation. Polarity is read from the border: dark ink on
    light paper is inverted, so ink is bright on dark as in MNIST. A file that cannot be read,
    or shows no ink, raises ``ImageError`` naming it.
    """
    name = Path(path)
    if not name.is_file():
        raise ImageError(f"{name} does not exist or is not a file")
    if name.stat().st_size == 0:
        raise ImageError(f"{name} is empty (0 bytes): not an image")
    try:
        with Image.open(name) as image:
            image.seek(0)  # a GIF or TIFF with several frames: the first
            image.load()  # decode now, so a truncated or corrupt file fails here
            grey, alpha = _grey_and_alpha(_upright(image))
    except Image.UnidentifiedImageError as failed:
        raise ImageError(f"{name} is not an image that PIL can read") from failed
    except Image.DecompressionBombError as failed:
        raise ImageError(f"{name} is too large to be a digit image ({failed})") from failed
    except OSError as failed:  # truncated files, unreadable files, broken compressed data
        reason = failed.strerror or str(failed)
        raise ImageError(f"{name} cannot be read: {reason}") from failed
    except Exception as failed:  # PIL's decoders raise SyntaxError, ValueError, ... on bad files
        raise ImageError(
            f"{name} is corrupt or not a supported image ({type(failed).__name__}: {failed})"
        ) from failed
    return _ink_map(grey, alpha, name)


def image_ink(image: Image.Image, name: str | os.PathLike = "the image") -> torch.Tensor:
    """Ink map of an image already in memory (a drawing on the demo's canvas), read exactly
    as ``load_image`` reads a file, so a drawing and a photo get the same treatment and the
    same errors; ``name`` is what an error message calls it."""
    try:
        grey, alpha = _grey_and_alpha(image)
    except Exception as failed:  # an image mode PIL cannot convert
        raise ImageError(f"{name} cannot be read ({type(failed).__name__}: {failed})") from None
    return _ink_map(grey, alpha, Path(name))


def _ink_map(grey: np.ndarray, alpha: np.ndarray | None, name: Path) -> torch.Tensor:
    """Luminance (and opacity) -> ink map: transparency composited, polarity fixed."""
    if grey.size == 0:
        raise ImageError(f"{name}: the image has no pixels")
    values = torch.from_numpy(np.ascontiguousarray(grey, dtype=np.float32))
    if alpha is not None:
        values = _composite(values, torch.from_numpy(np.ascontiguousarray(alpha)), name)
    return _ink(values, name)


def to_mnist(ink: torch.Tensor) -> torch.Tensor:
    """Ink map (any size, any positive scale) -> uint8 (28, 28) laid out as MNIST's digits.

    Drops ink fainter than ``NOISE_FRACTION`` of the strongest, crops to the rest, scales the
    crop (anti-aliased) so its longer side is 20 px, and pastes it into a 28x28 canvas with its
    centre of mass at pixel (14, 14), clipped at the edges. Intensities are stretched to 0..255
    like ``MNIST.data``: normalise them exactly as MNIST's, with mean 0.1307 and std 0.3081.
    """
    if ink.dim() != 2 or ink.numel() == 0:
        raise ImageError(f"an ink map must be a non-empty 2-D tensor, not {tuple(ink.shape)}")
    ink = ink.detach().to(torch.float32).cpu()
    if not bool(torch.isfinite(ink).all()):
        raise ImageError("the ink map has NaN or infinite values")
    top = float(ink.max())
    if top <= 0.0:
        raise ImageError("no ink was found (the ink map is all zero)")
    ink = torch.where(ink > NOISE_FRACTION * top, ink, torch.zeros(()))

    rows = torch.nonzero(ink.sum(1)).flatten()
    cols = torch.nonzero(ink.sum(0)).flatten()
    crop = ink[rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1]
    height, width = crop.shape
    scale = BOX / max(height, width)
    size = (max(1, round(height * scale)), max(1, round(width * scale)))
    small = F.interpolate(
        crop[None, None], size=size, mode="bilinear", antialias=True, align_corners=False
    )[0, 0].clamp(min=0.0)
    small = small / small.max()

    mass = small.sum()
    cy = float((small.sum(1) * torch.arange(size[0])).sum() / mass)
    cx = float((small.sum(0) * torch.arange(size[1])).sum() / mass)
    top_row, left_col = round(CENTRE - cy), round(CENTRE - cx)
    canvas = torch.zeros(SIZE, SIZE)
    # overlap of the pasted image with the canvas, in canvas and in image coordinates
    y0, x0 = max(top_row, 0), max(left_col, 0)
    y1, x1 = min(top_row + size[0], SIZE), min(left_col + size[1], SIZE)
    if y1 > y0 and x1 > x0:
        canvas[y0:y1, x0:x1] = small[y0 - top_row : y1 - top_row, x0 - left_col : x1 - left_col]
    return (canvas * 255.0).round().to(torch.uint8)


def label_from_name(path: str | os.PathLike) -> int | None:
    """The true digit when the file name starts with one ("7_mine.png" -> 7), else None."""
    first = Path(path).name[:1]
    return int(first) if first and first in "0123456789" else None


def prepare(
    paths: str | os.PathLike | Iterable[str | os.PathLike],
) -> tuple[torch.Tensor, list[ImageResult]]:
    """Many files -> (uint8 (n_good, 28, 28), one ImageResult per file, in the given order).

    A single path goes through ``find_images`` (a file or a folder; a missing path or an empty
    folder raises ``ImageError``, as there is nothing to report per file). Then every file is
    tried: a good one gets a row of the tensor, a bad one its error message; none stops the rest.
    """
    files = (
        find_images(paths) if isinstance(paths, (str, os.PathLike)) else [Path(p) for p in paths]
    )
    images: list[torch.Tensor] = []
    results: list[ImageResult] = []
    for file in files:
        label = label_from_name(file)
        try:
            image = to_mnist(load_image(file))
        except ImageError as failed:
            results.append(ImageResult(file, label, error=str(failed)))
        except Exception as failed:  # an unforeseen failure is one file's problem, too
            error = f"{file}: {type(failed).__name__}: {failed}"
            results.append(ImageResult(file, label, error=error))
        else:
            results.append(ImageResult(file, label, row=len(images)))
            images.append(image)
    batch = torch.stack(images) if images else torch.zeros(0, SIZE, SIZE, dtype=torch.uint8)
    return batch, results


# -- MNIST digits redrawn as a user would supply them: how the pipeline above is checked ------
USER_SHEET = (480, 400)  # width, height: larger than any redrawn digit, so it can sit off centre
USER_FORMATS = ("jpg", "png", "tif")


def redraw_as_user(
    digit: torch.Tensor, rng: np.random.Generator, sheet: tuple[int, int] = USER_SHEET
) -> np.ndarray:
    """An MNIST digit (uint8 28x28) as a user's drawing: scaled to 100-300 px, on a larger
    sheet, hugging one side. Returned as ink (uint8, 255 = ink); ``save_user_image`` turns it
    into paper and strokes."""
    side = int(rng.integers(100, 301))
    big = np.asarray(Image.fromarray(digit.numpy()).resize((side, side), Image.BICUBIC))
    width, height = sheet
    margin = 10
    left = margin if rng.random() < 0.5 else width - side - margin
    top = int(rng.integers(margin, height - side - margin + 1))
    canvas = np.zeros((height, width), dtype=np.uint8)
    canvas[top : top + side, left : left + side] = big
    return canvas


def save_user_image(ink: np.ndarray, fmt: str, path: Path) -> Path:
    """Save ink as a user's file: ``jpg`` black on white paper (quality 85), ``png`` RGBA with
    opaque black ink on transparent paper (whose stored colour is black too, as drawing apps
    store it), ``tif`` white on black."""
    path = Path(path).with_suffix(f".{fmt}")
    if fmt == "jpg":
        Image.fromarray(255 - ink).convert("RGB").save(path, quality=85)
    elif fmt == "png":
        rgba = np.zeros((*ink.shape, 4), dtype=np.uint8)
        rgba[..., 3] = ink
        Image.fromarray(rgba, "RGBA").save(path, compress_level=1)
    elif fmt == "tif":
        Image.fromarray(ink).save(path)
    else:
        raise ValueError(f"fmt={fmt!r}: choose one of {', '.join(USER_FORMATS)}")
    return path

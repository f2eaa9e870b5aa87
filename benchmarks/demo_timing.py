"""How fast the demo answers, the source of the README's "How fast" figures:
``python benchmarks/demo_timing.py [ckpt_path=<mnist run>] [repeats=3]`` (``make demo-bench``).

It serves the real page (``python -m seqnets.demo``) on a free localhost port with an MNIST
run: ``ckpt_path``'s, else the best completed one under ``outputs/``, else a small one trained
here in a temporary directory with the demo tests' recipe. It times, ``repeats`` times each:
an MNIST test digit sent as a PNG through the page's API (after one untimed call, which also
spares the browser figures the server's first-call costs); a page load in headless Chromium
in a fresh context (no cache, as a new visitor): its first contentful paint and when the
drawing canvas exists, from navigation start; a stroke drawn on that page: from the mouse's
release, and from the request's sending (Gradio's ``queue/join``), to the answer's text; the
server's answer function alone in this process on the digit as a drawing (after one untimed
call). Medians and ranges are printed with the CPU and the load average at the start and the
end (figures from a busy machine do not compare) and written to
``outputs/bench/<time>/demo.json``. The server and the browser are stopped on every exit.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
from demo_server import CHROMIUM, CHROMIUM_ARGS, demo_server  # beside this file
from PIL import Image

from seqnets.demo.catalog import Run, best_per_task, find_runs, from_checkpoint
from seqnets.errors import ConfigError, check_int, exit_usage

USAGE = "python benchmarks/demo_timing.py [ckpt_path=<mnist run dir or .ckpt>] [repeats=3]"
# tests/test_demo.py's MNIST run (tiny() presets included): trained when none is at hand.
SMALL_RUN = ["debug=fast", "trainer=cpu", "trainer.enable_model_summary=false", "task=mnist"]
SMALL_RUN += ["model.hidden=16", "callbacks.analysis.inside=false"]
ANSWER = "The network reads"
# The answer's text is on the page: the browser's clock then (ms from navigation start).
SHOWN = f"(id) => document.getElementById(id)?.innerText.includes('{ANSWER}')"
SHOWN += " && performance.now()"
RELEASED = """() => { window.releasedAt = null; window.addEventListener('pointerup',
  () => { window.releasedAt ??= performance.now(); }, true); }"""
# Every change to the answer's elements (text, probabilities, pictures), on the browser's
# clock: the page answers during the stroke too, so the answer to the whole drawing is the
# last change once the page is quiet.
WATCH = """(ids) => { window.changedAt = [];
  const seen = new MutationObserver(() => window.changedAt.push(performance.now()));
  for (const id of ids) seen.observe(document.getElementById(id),
    {subtree: true, childList: true, attributes: true, characterData: true}); }"""
QUIET_MS = 2000  # no answer arrives later than this after the last one, on this machine
SENT = """() => performance.getEntriesByType('resource').find(e =>
  e.name.includes('/queue/join') && e.startTime >= window.releasedAt)?.startTime ?? null"""
# The canvas is there: a person could draw now (no tool to pick first).
CANVAS = "(id) => !!document.querySelector(`#${id} canvas[data-ready]`) && performance.now()"
BROWSER = ("page load: first content", "page load: canvas ready",
           "drawing: mouse released to answer", "drawing: request sent to answer")  # fmt: skip
PAINT = "() => performance.getEntriesByName('first-contentful-paint')[0]?.startTime ?? null"


def parse(argv: list[str]) -> tuple[str | None, int]:
    """``ckpt_path`` and ``repeats`` from ``key=value`` arguments, as the other commands."""
    given: dict[str, str] = {}
    for arg in argv:
        key, sep, value = arg.partition("=")
        if not sep or key not in ("ckpt_path", "repeats"):
            raise ConfigError(f"{arg!r} is not allowed: usage: {USAGE}")
        given[key] = value
    repeats = given.get("repeats", "3")
    return given.get("ckpt_path") or None, check_int(
        "repeats", int(repeats) if repeats.isdigit() else repeats, 1
    )


def cpu_model() -> str:
    """The CPU's name as the kernel reports it (the figures depend on it)."""
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return "unknown"


def draws(run: Run) -> bool:
    """Whether the run's task is answered from a drawing on the page."""
    return run.task_object().demo_tab().input == "drawing"


def mnist_run(ckpt_path: str | None, workdir: Path) -> tuple[Run, str]:
    """The run the server answers with, and where it came from."""
    if ckpt_path:
        run = from_checkpoint(ckpt_path)
        if not draws(run):
            raise ConfigError(f"ckpt_path={ckpt_path} is a {run.task} run: give an MNIST one")
        return run, "given as ckpt_path"
    found = [run for run in best_per_task(find_runs("outputs")).values() if draws(run)]
    if found:
        return found[0], "the best completed MNIST run under outputs/"
    print("seqnets demo timing: no completed MNIST run under outputs/: training a small one")
    print(f"  python -m seqnets.train {' '.join(SMALL_RUN)}  (in a temporary directory)")
    args = [*SMALL_RUN, f"hydra.run.dir={workdir / 'run'}"]
    done = subprocess.run([sys.executable, "-m", "seqnets.train", *args], capture_output=True)
    if done.returncode:
        raise RuntimeError(f"training failed:\n{(done.stdout + done.stderr).decode()[-3000:]}")
    return from_checkpoint(workdir / "run"), "trained here: the demo tests' small run"


def timed(answer: Callable[[], str], repeats: int) -> list[float]:
    """Seconds per call of ``answer`` (which returns the answer's text), ``repeats`` calls
    after an untimed one that pays the first call's costs (loading, allocation)."""
    seconds = []
    for _ in range(repeats + 1):
        start = time.perf_counter()
        said = answer()
        seconds.append(time.perf_counter() - start)
        if ANSWER not in said:
            raise RuntimeError(f"no answer, but: {said}")
    return seconds[1:]


def through_api(url: str, run: Run, png: Path, repeats: int) -> list[float]:
    """Seconds from sending the PNG through the page's API to its answer."""
    from gradio_client import Client, handle_file

    client = Client(url, verbose=False, download_files=False)
    checkpoint, api = str(run.checkpoint), f"/{run.task}_upload"

    def send() -> str:
        return client.predict(checkpoint, handle_file(str(png)), api_name=api)[0]

    return timed(send, repeats)


def in_browser(url: str, task: str, repeats: int) -> tuple[dict[str, list[float]], str]:
    """Seconds per page load and drawing (see the module's docstring); Chromium's version."""
    from playwright.sync_api import sync_playwright

    found: dict[str, list[float]] = {name: [] for name in BROWSER}
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            for _ in range(repeats):
                tab = browser.new_page(viewport={"width": 1280, "height": 1000})  # new context
                tab.set_default_timeout(60_000)
                tab.goto(url, wait_until="commit")
                ready = tab.wait_for_function(CANVAS, arg=f"{task}-sketch").json_value()
                times = [tab.evaluate(PAINT), ready, *draw(tab, task)]
                for name, ms in zip(BROWSER, times, strict=True):
                    if ms is not None:
                        found[name].append(ms / 1000)
                tab.close()
            return found, browser.version
        finally:
            browser.close()


def draw(tab: Any, task: str) -> tuple[float, float | None]:
    """A downward stroke (a "1"), as the browser test draws, on the canvas as the page opens
    it (nothing clicked first): ms from the mouse's release, and from the sending of the
    request made after it, to the answer to the whole stroke on the page (its last change
    once quiet; 0 when the answer shown at release was already the final one)."""
    box = tab.locator(f"#{task}-sketch canvas").first.bounding_box()
    x, y = box["x"] + box["width"] / 2, box["y"] + box["height"] * 0.25
    tab.evaluate(RELEASED)
    tab.evaluate(WATCH, [f"{task}-answer", f"{task}-steps"])
    tab.mouse.move(x, y)
    tab.mouse.down()
    for step in range(1, 5):
        tab.mouse.move(x + step * 2, y + step * box["height"] * 0.13)
    tab.mouse.up()
    tab.wait_for_function(SHOWN, arg=f"{task}-answer")
    tab.wait_for_timeout(QUIET_MS)
    released, sent = tab.evaluate("() => window.releasedAt"), tab.evaluate(SENT)
    shown = max([released, *tab.evaluate("() => window.changedAt")])
    return shown - released, None if sent is None else max(0.0, shown - sent)


def in_process(run: Run, drawing: Image.Image, data_dir: str, repeats: int) -> list[float]:
    """Seconds the server's answer function takes for a drawing, without the page."""
    import torch

    from seqnets.demo.answers import Models
    from seqnets.demo.page import TabSpec, respond
    from seqnets.runtime import resolve_threads

    torch.set_num_threads(resolve_threads(None))  # as the server does by default
    models = Models([run], data_dir)
    spec = TabSpec(run.task, run.task_object().demo_tab(), [run], run)
    return timed(lambda: respond(models, spec, str(run.checkpoint), drawing, 1000)[0], repeats)


def digit_inputs(data_dir: str, folder: Path) -> tuple[Path, Image.Image]:
    """MNIST's first test digit as a user's PNG (black on white, as the tests upload it) and
    as the Sketchpad's drawing (black ink on a transparent 280x280 canvas)."""
    from seqnets.data.mnist import load_mnist

    pixels = load_mnist(data_dir)["test_x"][0].numpy().astype(np.uint8)
    png = folder / "digit.png"
    Image.fromarray(255 - pixels).resize((112, 112)).save(png)
    drawing = Image.new("RGBA", (280, 280), (0, 0, 0, 0))
    drawing.putalpha(Image.fromarray(pixels).resize((280, 280)))
    return png, drawing


def summary(seconds: list[float]) -> dict[str, Any]:
    seconds = [round(s, 4) for s in seconds]
    return {"median_s": statistics.median(seconds), "min_s": min(seconds),
            "max_s": max(seconds), "samples_s": seconds}  # fmt: skip


def main(argv: list[str]) -> None:
    ckpt_path, repeats = parse(argv)
    load_start, started = [round(x, 2) for x in os.getloadavg()], datetime.now(UTC)
    data_dir = os.environ.get("SEQNETS_DATA_DIR", "data")  # as conf/paths/default.yaml
    out = Path("outputs/bench") / datetime.now().strftime("%Y-%m-%d_%H-%M-%S-%f")
    with tempfile.TemporaryDirectory() as tmp:
        run, source = mnist_run(ckpt_path, Path(tmp))
        print(f"seqnets demo timing: {run.label} ({source})", flush=True)
        png, drawing = digit_inputs(data_dir, Path(tmp))
        with demo_server(f"ckpt_path={run.checkpoint}", "train_missing=false") as url:
            api = through_api(url, run, png, repeats)
            browser, version = in_browser(url, run.task, repeats)
        local = in_process(run, drawing, data_dir, repeats)
    figures = {name: s for name, s in browser.items() if s}
    figures |= {"API: PNG sent to answer": api, "in process: a drawing's answer": local}
    report = {
        "command": " ".join(["python benchmarks/demo_timing.py", *argv]),
        "date": started.isoformat(timespec="seconds"),
        "cpu": cpu_model(),
        "cores": os.cpu_count(),
        "load_average": {"start": load_start, "end": [round(x, 2) for x in os.getloadavg()]},
        "chromium": version,
        "run": {"label": run.label, "checkpoint": str(run.checkpoint), "source": source},
        "repeats": repeats,
        "figures": {name: summary(s) for name, s in figures.items()},
    }
    print(f"\n{'figure':<34}{'median s':>10}{'range s':>16}{'n':>4}")
    for name, row in report["figures"].items():
        span = f"{row['min_s']:.2f}-{row['max_s']:.2f}"
        print(f"{name:<34}{row['median_s']:>10.2f}{span:>16}{len(row['samples_s']):>4}")
    loads = report["load_average"]
    print(f"CPU: {report['cpu']} ({report['cores']} cores); Chromium {version}")
    print(f"load average (1, 5, 15 min): start {loads['start']}, end {loads['end']}")
    out.mkdir(parents=True)
    (out / "demo.json").write_text(json.dumps(report, indent=2, allow_nan=False))
    print(f"written {out / 'demo.json'}")


if __name__ == "__main__":
    try:
        main(sys.argv[1:])
    except ConfigError as error:
        exit_usage(str(error))
    except KeyboardInterrupt:
        sys.stderr.write("seqnets: stopped by SIGINT\n")
        sys.exit(130)

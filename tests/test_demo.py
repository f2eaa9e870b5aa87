"""The demo page, served for real: tiny real checkpoints trained through the CLI, the real
server on a free localhost port, its API called without a browser, and the page driven by a
real headless Chromium (drawing on the canvas, uploading files, typing sums and lists).

A failure says which side broke: ``test_answers_*`` call the answer code in this process,
``test_api_*`` the running server through Gradio's client, ``test_page_*`` the page in a
browser. Browser tests skip when Chromium or Playwright is missing, except under CI=true
(``.ci/run`` installs Chromium), where they must run.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
from PIL import Image

from tests.conftest import DATA_DIR, HAS_MNIST, REQUIRE_DATA, ROOT, cli_in_process, tiny

pytest.importorskip("gradio", reason="the demo's extra is not installed: pip install -e '.[demo]'")

from benchmarks.demo_server import CHROMIUM, CHROMIUM_ARGS, demo_server
from seqnets.data.images import ImageError
from seqnets.demo import answers
from seqnets.demo.catalog import best_per_task, find_runs
from seqnets.errors import ConfigError

# The cheapest binary_add recipe that adds 263604+493034 exactly for seed 0 (7 epochs were
# exact, 5 not; 10 leave a margin), scored on short sums only to save time.
ADDER = [
    "task=binary_add",
    "model=lstm",
    "model.hidden=5",
    "task.max_epochs=10",
    "task.eval_samples=100",
    "task.max_eval_len=20",
    "trainer=cpu",
]
OUTSIDE = f"hydra.searchpath=[file://{ROOT / 'tests' / 'conf'}]"
# The outside task's checkpoints name its classes: trusted, as a user would say so.
TRUSTED = {"SEQNETS_TRUSTED_TARGETS": "tests.outside_task."}
IN_CI = os.environ.get("CI") == "true"
MNIST_RUN = HAS_MNIST or REQUIRE_DATA
# How long the page may take to show what a test waits for (an answer usually comes within a
# second): a backstop for a page that never answers, generous so that a loaded machine passes.
TIMEOUT_MS = 120_000


class _Uncaptured:
    """Stands in for pytest's ``capsys`` where a module-scoped fixture has none."""

    def readouterr(self) -> SimpleNamespace:
        return SimpleNamespace(out="", err="")


@pytest.fixture(scope="module")
def root(tmp_path_factory) -> Path:
    """A folder whose ``outputs/`` holds a trained run of each task, trained by the real
    entry point in this process (a new process would pay ~8 s of imports per run)."""
    folder = tmp_path_factory.mktemp("demo")
    jobs = {
        "binary_add": ADDER,
        "remember": tiny("task=remember", "model.hidden=16", "callbacks.analysis.inside=false"),
        # The adding problem: its tab is declared by its Task, its answer the default one.
        "adding": tiny("task=adding", "model.hidden=8", "task.max_eval_len=20"),
        # A task written outside the package (tests/outside_task.py), no demo code at all.
        "parity": tiny(OUTSIDE, "task=parity", "model=gru", "model.hidden=8"),
    }
    if MNIST_RUN:
        jobs["mnist"] = tiny("task=mnist", "model.hidden=16", "callbacks.analysis.inside=false")
    for task, args in jobs.items():
        where = f"hydra.run.dir={folder / 'outputs' / 'runs' / task}"
        code, _ = cli_in_process(*args, where, cwd=folder, capsys=_Uncaptured())
        assert code == 0, f"training {task} failed (exit {code})"
    return folder


@pytest.fixture(scope="module")
def models(root):
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("SEQNETS_TRUSTED_TARGETS", TRUSTED["SEQNETS_TRUSTED_TARGETS"])
        runs = find_runs(root / "outputs")
        cache = answers.Models(runs, str(DATA_DIR))
        for run in best_per_task(runs).values():
            cache.get(str(run.checkpoint))  # loaded while trusted
    return cache, best_per_task(runs)


def loaded(models, task: str) -> answers.Loaded:
    cache, best = models
    return cache.get(str(best[task].checkpoint))


@pytest.fixture(scope="module")
def digit_png(root) -> Path:
    """MNIST's first test digit (a 7) saved as a PNG, black on white, as a user's scan."""
    from seqnets.data.mnist import load_mnist

    test = load_mnist(DATA_DIR)
    path = root / f"{int(test['test_y'][0])}_mnist.png"
    Image.fromarray(255 - test["test_x"][0].numpy()).resize((112, 112)).save(path)
    return path


@pytest.fixture(scope="module")
def blank_png(root) -> Path:
    path = root / "blank.png"
    Image.new("L", (80, 60), 255).save(path)
    return path


# -- the answers, in this process ---------------------------------------------------------
def test_answers_runs_found(models):
    cache, best = models
    assert {"binary_add", "remember"} <= set(best)
    assert best["binary_add"].score == 1.0
    assert cache.get(str(best["binary_add"].checkpoint)).state["carry_unit"] is not None
    assert "lstm h=5" in best["binary_add"].label and "seed 0" in best["binary_add"].label


def test_answers_add_and_refusals(models):
    adder = loaded(models, "binary_add")
    answer = adder.answer("263604+493034", 1000)
    result = answer.numbers
    assert result["pred"] == 756638 and result["wrong_bits"] == 0
    assert "= **756638**" in answer.text and answer.steps is not None
    assert len(result["prob"]) == len(result["carry"]) == len(result["unit_values"]) == 20
    assert all(p > 0.5 for p, bit in zip(result["prob"], result["true_lsb"], strict=True) if bit)
    with pytest.raises(ConfigError, match="'1a' is not allowed"):
        adder.answer("12+1a", 1000)
    with pytest.raises(ConfigError, match="more than this page's cap of 1000"):
        adder.answer(f"{2**1000}+1", 1000)


def test_answers_remember_and_refusals(models):
    memory = loaded(models, "remember")
    result = memory.answer("[6, 8, 0, 2, 8, 7]", 1000).numbers
    assert result["sequence"] == [6, 8, 0, 2, 8, 7] and result["true"] == 0
    assert len(result["steps"]) == 6 and abs(sum(result["steps"][-1]) - 1) < 1e-4
    with pytest.raises(ConfigError, match="fewer than K=3"):
        memory.answer("4 5", 1000)
    with pytest.raises(ConfigError, match="every element must be a digit"):
        memory.answer("1,x,3", 1000)


def test_answers_default_for_a_task_that_declares_nothing(models):
    """The outside parity task declares no demo: a text box, its predict, its markdown and
    the readout after each step of what predict fed the network."""
    parity = loaded(models, "parity")
    tab = parity.task.demo_tab()
    assert tab.input == "text" and tab.title == "Parity of a bit string"
    answer = parity.answer("0110", 1000)
    assert answer.text.startswith("- 0110 -> ") and answer.steps is not None
    assert answer.steps.axes[0].images[0].get_array().shape == (2, 4)  # 2 classes x 4 steps
    with pytest.raises(ConfigError, match="give a bit string like 0110"):
        parity.answer("012", 1000)
    with pytest.raises(ConfigError, match="more than this page's cap of 3"):
        parity.answer("0110", 3)


def test_answers_adding(models):
    adding = loaded(models, "adding")
    assert adding.task.demo_tab().input == "numbers"
    answer = adding.answer("0.3 *0.5 0.1 *0.9", 1000)
    assert "marked 0.5 and 0.9" in answer.text and "(true 1.400" in answer.text
    assert answer.steps is not None


@pytest.mark.skipif(not MNIST_RUN, reason=f"MNIST not in {DATA_DIR}")
def test_answers_digit(models, digit_png, blank_png):
    reader = loaded(models, "mnist")
    answer = reader.answer(str(digit_png), 1000)
    result = answer.numbers
    assert tuple(result["image"].shape) == (28, 28) and len(result["rows"]) == 28
    assert result["answer"] == max(range(10), key=lambda d: result["probs"][d])
    assert answer.image.size == (168, 168) and set(answer.probabilities) == set("0123456789")
    with pytest.raises(ImageError, match=r"^blank.png: no ink was found"):
        reader.answer(str(blank_png), 1000)
    with pytest.raises(ImageError, match="the drawing: no ink was found"):
        reader.answer(Image.new("RGBA", (50, 50), (0, 0, 0, 0)), 1000)


def test_bad_settings_one_line(tmp_path, capsys):
    """Refused before anything is loaded or served: one line, exit code 2."""
    for setting, fragment in [
        ("port=70000", "port=70000 is not allowed"),
        ("max_input=1", "max_input=1 is not allowed"),
        (f"ckpt_path={tmp_path / 'none.ckpt'}", "does not exist"),
    ]:
        code, said = cli_in_process(
            setting,
            "train_missing=false",
            module="seqnets.demo.__main__",
            cwd=tmp_path,
            capsys=capsys,
        )
        lines = [line for line in said.splitlines() if line.strip()]
        assert code == 2 and len(lines) == 1 and fragment in lines[0], said


def test_no_runs_says_how_to_train(monkeypatch, capsys):
    """Without runs the page names the command that trains one; in a terminal the command
    asks first, and trains nothing when the answer is no."""
    from omegaconf import OmegaConf

    from seqnets.demo.__main__ import missing_lines, offer_training

    cfg = OmegaConf.load(Path(__file__).parents[1] / "conf" / "demo.yaml")
    lines = missing_lines(cfg, {})
    assert set(lines) == {"mnist", "binary_add", "remember", "adding"}
    assert "python -m seqnets.train task=mnist" in lines["mnist"]
    monkeypatch.setattr(sys.stdin, "isatty", lambda: True)
    monkeypatch.setattr("builtins.input", lambda prompt: "n")
    monkeypatch.setattr(subprocess, "run", lambda *a, **k: pytest.fail("trained anyway"))
    assert offer_training(cfg, ["mnist"]) is False
    assert "python -m seqnets.train task=mnist" in capsys.readouterr().out
    cfg.train_missing = False
    assert offer_training(cfg, ["mnist"]) is False


# -- the server, through its API -----------------------------------------------------------
@pytest.fixture(scope="module")
def server(root):
    """``python -m seqnets.demo`` on a free localhost port, stopped (Ctrl-C) at the end."""
    env = {**os.environ, "SEQNETS_DATA_DIR": str(DATA_DIR), "SEQNETS_THREADS": "1", **TRUSTED}
    # The outside task's module is importable, as a user's is from PYTHONPATH.
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    with demo_server("train_missing=false", cwd=root, env=env) as url:
        assert url.startswith("http://127.0.0.1:")  # localhost only, unless asked otherwise
        yield url


@pytest.fixture(scope="module")
def client(server):
    from gradio_client import Client

    return Client(server, verbose=False, download_files=False)


def test_api_add(client, models):
    _, best = models
    said, figure = client.predict(
        str(best["binary_add"].checkpoint), "263604+493034", api_name="/binary_add"
    )
    assert "= **756638**" in said and figure is not None
    said, figure = client.predict(
        str(best["binary_add"].checkpoint), "12+1a", api_name="/binary_add"
    )
    assert said.startswith("**Not read:**") and "'1a' is not allowed" in said and figure is None


def test_api_remember(client, models):
    _, best = models
    expected = loaded(models, "remember").answer("6,8,0,2,8,7", 1000).numbers["pred"]
    said, _ = client.predict(str(best["remember"].checkpoint), "6,8,0,2,8,7", api_name="/remember")
    assert f"answers **{expected}**" in said and "the list has 0 there" in said


@pytest.mark.skipif(not MNIST_RUN, reason=f"MNIST not in {DATA_DIR}")
def test_api_upload(client, models, digit_png, blank_png):
    from gradio_client import handle_file

    _, best = models
    checkpoint = str(best["mnist"].checkpoint)
    expected = loaded(models, "mnist").answer(str(digit_png), 1000).numbers["answer"]
    said, seen, label, rows = client.predict(
        checkpoint, handle_file(str(digit_png)), api_name="/mnist_upload"
    )
    assert f"reads **{expected}**" in said and label["label"] == str(expected)
    said, seen, label, rows = client.predict(
        checkpoint, handle_file(str(blank_png)), api_name="/mnist_upload"
    )
    assert "blank.png: no ink was found" in said and "Traceback" not in said
    assert seen is None and rows is None
    broken = digit_png.parent / "5_broken.png"
    broken.write_bytes(b"not an image")
    said, *_ = client.predict(checkpoint, handle_file(str(broken)), api_name="/mnist_upload")
    assert said == "**Not read:** 5\\_broken.png is not an image that PIL can read"


# -- the page, in a real browser -------------------------------------------------------------
@pytest.fixture(scope="module")
def page(server, tmp_path_factory):
    """One headless Chromium page on the demo, for every browser test."""
    reason = None
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        reason = "playwright is not installed (pip install -e '.[dev]')"
    if reason is None and not Path(CHROMIUM).is_file():
        reason = f"no Chromium at {CHROMIUM} (apt-get install chromium; .ci/run does)"
    if reason:
        if IN_CI:
            pytest.fail(f"CI=true: browser tests must run, but {reason}")
        pytest.skip(reason)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        tab = browser.new_page(viewport={"width": 1280, "height": 1000})
        tab.set_default_timeout(TIMEOUT_MS)
        tab.goto(server)
        tab.wait_for_selector("#mnist-sketch canvas[data-ready]")  # not just drawn: listening
        tab.shots = tmp_path_factory.mktemp("screenshots")  # type: ignore[attr-defined]
        yield tab
        browser.close()


def _answer(tab, elem: str, fragment: str) -> str:
    """The text of ``#elem`` once it holds ``fragment``."""
    tab.wait_for_function(
        "([id, text]) => document.getElementById(id)?.innerText.includes(text)",
        arg=[elem, fragment],
    )
    return tab.locator(f"#{elem}").inner_text()


@pytest.mark.slow  # a browser
@pytest.mark.skipif(not MNIST_RUN, reason=f"MNIST not in {DATA_DIR}")
def test_page_draw(page):
    """The canvas is ready when the page opens: a stroke is answered with no click first."""
    box = page.locator("#mnist-sketch canvas").first.bounding_box()
    x, y = box["x"] + box["width"] / 2, box["y"] + box["height"] * 0.25
    page.mouse.move(x, y)
    page.mouse.down()
    for step in range(1, 5):  # a downward stroke, a "1" (each move redraws the canvas: few)
        page.mouse.move(x + step * 2, y + step * box["height"] * 0.13)
    page.mouse.up()
    said = _answer(page, "mnist-answer", "The network reads")
    assert said.split("reads ")[1][0] in "0123456789"
    assert page.locator("#mnist-seen img").count() == 1
    assert page.locator("#mnist-steps img").count() == 1
    page.screenshot(path=page.shots / "mnist.png", full_page=True)


@pytest.mark.slow  # a browser
@pytest.mark.skipif(not MNIST_RUN, reason=f"MNIST not in {DATA_DIR}")
def test_page_upload_digit_then_blank(page, models, digit_png, blank_png):
    expected = loaded(models, "mnist").answer(str(digit_png), 1000).numbers["answer"]
    page.set_input_files("#mnist-upload input[type=file]", str(digit_png))
    _answer(page, "mnist-answer", f"reads {expected} (")
    page.click("#mnist-upload button[aria-label='Clear']")
    page.set_input_files("#mnist-upload input[type=file]", str(blank_png))
    said = _answer(page, "mnist-answer", "Not read")
    assert said.count("\n") == 0 and "blank.png: no ink was found" in said
    assert "Traceback" not in page.content()
    page.screenshot(path=page.shots / "mnist-error.png", full_page=True)


def _tab(page, name: str) -> None:
    page.get_by_role("tab", name=name).click()


@pytest.mark.slow  # a browser
def test_page_add(page):
    _tab(page, "Add two numbers")
    page.fill("#binary_add-input textarea", "263604+493034")
    page.click("#binary_add-go")
    _answer(page, "binary_add-answer", "263604 + 493034 =")
    # The network's answer is the bold number; the true sum is computed by the page.
    assert page.locator("#binary_add-answer strong").first.inner_text() == "756638"
    page.wait_for_selector("#binary_add-steps img")
    page.screenshot(path=page.shots / "add.png", full_page=True)


def test_api_every_task_gets_a_tab(client, models):
    """The adding problem and the outside parity task are answered through their tabs."""
    _, best = models
    said, steps = client.predict(str(best["parity"].checkpoint), "0110", api_name="/parity")
    assert said.startswith("- 0110 -> ") and steps is not None
    said, steps = client.predict(
        str(best["adding"].checkpoint), "0.3 *0.5 0.1 *0.9", api_name="/adding"
    )
    assert "marked 0.5 and 0.9" in said and steps is not None


@pytest.mark.slow  # a browser
def test_page_outside_task(page):
    _tab(page, "Parity of a bit string")
    page.fill("#parity-input textarea", "0110")
    page.click("#parity-go")
    said = _answer(page, "parity-answer", "0110 -> ")
    assert said.split("-> ")[1][0] in "01"
    page.wait_for_selector("#parity-steps img")


@pytest.mark.slow  # a browser
def test_page_remember(page, models):
    expected = loaded(models, "remember").answer("6,8,0,2,8,7,3", 1000).numbers["pred"]
    _tab(page, "Remember the digit at index K")
    page.fill("#remember-input textarea", "6,8,0,2,8,7,3")
    page.click("#remember-go")
    said = _answer(page, "remember-answer", "the list has 0 there")
    assert "index K=3" in said
    assert page.locator("#remember-answer strong").first.inner_text() == str(expected)
    page.screenshot(path=page.shots / "remember.png", full_page=True)

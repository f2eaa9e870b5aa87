"""Extending seqnets from a folder of one's own (docs/extending.md), end to end: ``seqnets.new``
writes a task and a cell in a temporary folder outside the repository, and every command
works with them (train, a sweep, evaluate, predict, summarize, the report's section, the
demo's tab answering in the API and in headless Chromium) with nothing in ``src/seqnets/``
or ``conf/`` changed. The commands run as a user types them, each in a process of its own,
from that folder, with it on ``PYTHONPATH`` and its configs on ``hydra.searchpath``."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import DATA_DIR


def test_new_writes_python_that_parses_and_refuses_bad_names(tmp_path, monkeypatch):
    """Quick: the skeletons are valid Python and YAML; a bad name or an existing file stops
    ``new`` before it writes anything."""
    import ast

    import yaml

    from seqnets import new
    from seqnets.errors import ConfigError

    for kind in ("task", "cell"):
        for path, text in new.files(kind, "my_thing").items():
            if path.endswith(".py"):
                ast.parse(text)
            else:
                yaml.safe_load(text)
    with pytest.raises(ConfigError, match="NAME='My-Task' is not allowed"):
        new.files("task", "My-Task")
    with pytest.raises(ConfigError, match="'model' is not allowed: usage"):
        new.files("model", "x")
    monkeypatch.chdir(tmp_path)
    (tmp_path / "conf" / "model").mkdir(parents=True)
    (tmp_path / "conf" / "model" / "x.yaml").write_text("mine\n")
    with pytest.raises(ConfigError, match=r"conf/model/x\.yaml already exist"):
        new.main(["cell", "x"])
    assert not (tmp_path / "x_cell.py").exists()
    assert (tmp_path / "conf" / "model" / "x.yaml").read_text() == "mine\n"


def _env(folder: Path) -> dict[str, str]:
    path = os.pathsep.join(filter(None, [str(folder), os.environ.get("PYTHONPATH")]))
    return {
        **os.environ,
        "PYTHONPATH": path,
        "SEQNETS_DATA_DIR": str(DATA_DIR),
        "SEQNETS_TRUSTED_TARGETS": "parity_task.,indrnn_cell.",
        "SEQNETS_THREADS": "1",
        "MPLBACKEND": "Agg",
    }


def _run(folder: Path, *args: str, module: str = "seqnets.train") -> subprocess.CompletedProcess:
    done = subprocess.run(
        [sys.executable, "-m", module, *args],
        cwd=folder,
        env=_env(folder),
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, f"{module} {args}:\n{done.stdout[-2000:]}\n{done.stderr[-3000:]}"
    return done


@pytest.mark.slow
def test_a_task_and_a_cell_of_ones_own(tmp_path):
    folder = tmp_path / "mywork"
    folder.mkdir()
    said = _run(folder, "task", "parity", module="seqnets.new").stdout
    assert "hydra.searchpath=[file://" in said and "PYTHONPATH" in said
    _run(folder, "cell", "indrnn", module="seqnets.new")
    search = f"hydra.searchpath=[file://{folder / 'conf'}]"

    # The skeletons' own tests: the cell meets the contract, the task trains.
    tests = ["tests/test_indrnn_cell.py", "tests/test_parity_task.py"]
    _run(folder, "-p", "no:cacheprovider", "-q", *tests, module="pytest")

    # Train with the user's cell, then a sweep over two sizes.
    _run(folder, "task=parity", "model=indrnn", "model.hidden=8", "debug=fast", search)
    (run,) = (folder / "outputs" / "runs").glob("*/*")
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["status"] == "completed" and metrics["config"]["model"]["cell"] == (
        "indrnn_cell.Indrnn"
    )
    _run(folder, "-m", "task=parity", "model=indrnn", "model.hidden=4,8", "debug=fast", search)
    assert len(list((folder / "outputs" / "multirun").rglob("metrics.json"))) == 2

    # Evaluate and predict rebuild the user's task and cell from the checkpoint (trusted).
    _run(folder, f"ckpt_path={run}", "lengths=[2,6]", module="seqnets.evaluate")
    _run(folder, f"ckpt_path={run}", 'input="0110"', module="seqnets.predict")
    (predictions,) = (folder / "outputs" / "predict").rglob("predictions.json")
    assert json.loads(predictions.read_text())["rows"][0]["bits"] == "0110"

    table = _run(folder, "outputs", module="seqnets.summarize").stdout
    assert "| parity | Indrnn h=8 | max_len=9" in table

    # The report's section from the user's experiment folder.
    _run(folder, "sections=[parity]", "seeds=[0]", "quick=true", "parallel=1", search,
         module="seqnets.report")  # fmt: skip
    report = (folder / "outputs" / "report" / "latest" / "report.md").read_text()
    assert "## 1. Parity" in report and "experiment=parity/gru_h8" in report

    _demo(folder)


def _demo(folder: Path) -> None:
    """The demo finds the runs, gives the user's task a tab, and answers in it."""
    from benchmarks.demo_server import CHROMIUM, CHROMIUM_ARGS, demo_server

    pytest.importorskip("gradio")
    from gradio_client import Client

    with demo_server("train_missing=false", cwd=folder, env=_env(folder)) as url:
        client = Client(url, verbose=False, download_files=False)
        runs = sorted((folder / "outputs").rglob("best*.ckpt"))
        best = [str(p.resolve()) for p in runs if "parity" in str(p)]
        answers = [client.predict(ckpt, "0110", api_name="/parity")[0] for ckpt in best[:1]]
        assert answers[0].startswith("- 0110 -> ")
        if not Path(CHROMIUM).is_file():
            pytest.skip(f"no Chromium at {CHROMIUM}: the page itself was not opened")
        from playwright.sync_api import sync_playwright

        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            page = browser.new_page()
            page.set_default_timeout(120_000)  # a backstop: a loaded machine is slow, not wrong
            page.goto(url)
            page.get_by_role("tab", name="Parity").click()
            page.fill("#parity-input textarea", "0110")
            page.click("#parity-go")
            page.wait_for_function(
                "() => document.getElementById('parity-answer')?.innerText.includes('0110 ->')"
            )
            page.wait_for_selector("#parity-steps img")
            browser.close()

"""The report from real (tiny) runs: every section and table, valid figures, numbers traced
back to the runs' metrics.json, reuse of finished runs, failed runs shown as failed, and a
real TensorBoard server reading the runs; observations computed from the numbers."""

from __future__ import annotations

import base64
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from PIL import Image

from seqnets.report import render
from tests.conftest import DATA_DIR, needs_mnist

# A quick build over a subset of each section's runs (every section and table is still made).
SUBSET = [
    "quick=true",
    "seeds=[0]",
    "experiments.mnist=[mnist/lstm_128,mnist/gru_128]",
    "experiments.remember=[remember/lstm_h5,remember/rnn_h5]",
    "experiments.binary_add=[binary_add/h5_ce_L3,binary_add/h5_ce_L4,binary_add/h5_ce_L7]",
    "inside.binary_add=binary_add/h5_ce_L7",
    "inside.remember=remember/lstm_h5",
]
PNG = b"\x89PNG\r\n\x1a\n"


def report(cwd: Path, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "SEQNETS_DATA_DIR": str(DATA_DIR), "MPLBACKEND": "Agg"}
    proc = subprocess.run(
        [sys.executable, "-m", "seqnets.report", *SUBSET, *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> dict:
    cwd = tmp_path_factory.mktemp("report")
    proc = report(cwd)
    return {
        "cwd": cwd,
        "out": (cwd / "outputs" / "report" / "latest").resolve(),
        "log": proc.stdout,
    }


@needs_mnist
def test_every_section_table_and_figure(built):
    out = built["out"]
    text = (out / "report.md").read_text()
    for heading in (
        "## 1. MNIST read row by row",
        "## 2. Remember the digit at index K",
        "## 3. Binary addition",
        "### Hidden size and loss, trained at L=3",
        "### Training length, LSTM hidden 5, cross-entropy",
        "## Inside the networks",
        "### Observations",
    ):
        assert heading in text, heading
    assert "| run | cell | hidden |" in text and "| hidden | RNN % | LSTM % | GRU % |" in text
    assert "| digit | precision | recall | F1 | support |" in text
    assert "commit `" in text and "cores" in text and "min**" in text
    linked = re.findall(r"\]\((figures/[^)]+\.png)\)", text)
    assert len(linked) >= 10
    for path in linked:
        image = out / path
        assert image.read_bytes()[:8] == PNG
        Image.open(image).verify()
    html = (out / "report.html").read_text()
    assert "<table>" in html and 'src="figures/' not in html  # self-contained
    embedded = re.findall(r'src="data:image/png;base64,([^"]+)"', html)
    assert len(embedded) == len(linked)
    assert all(base64.b64decode(data)[:8] == PNG for data in embedded)
    assert "run 1 of" in built["log"] and "min left" in built["log"]


def value(metrics: dict, source: str) -> float:
    """The number ``source`` names in a run's metrics.json (read here independently)."""
    if source.startswith("test/"):
        return metrics["test"][source]
    if source == "train_time_s/epochs_trained":
        return metrics["train_time_s"] / metrics["epochs_trained"]
    found = re.fullmatch(r"by_length\[(\d+)\]\.(\w+)", source)
    if found:
        length, metric = int(found[1]), found[2]
        return next(r[metric] for r in metrics["by_length"] if r["length"] == length)
    found = re.fullmatch(r"mean\(by_length\[(\d+)\.\.(\d+)\]\.(\w+)\)", source)
    if found:
        low, high, metric = int(found[1]), int(found[2]), found[3]
        rows = [r[metric] for r in metrics["by_length"] if low <= r["length"] <= high]
        return sum(rows) / len(rows)
    return metrics[source]


def stats(node):
    """Every mean ± std record in results.json."""
    if isinstance(node, dict):
        if "runs" in node and "source" in node:
            yield node
        for child in node.values():
            yield from stats(child)
    elif isinstance(node, list):
        for child in node:
            yield from stats(child)


@needs_mnist
def test_results_json_numbers_are_the_runs_numbers(built):
    results = json.loads((built["out"] / "results.json").read_text())
    checked = 0
    for record in stats(results):
        for run in record["runs"]:
            metrics = json.loads((Path(built["cwd"]) / run["dir"] / "metrics.json").read_text())
            assert run["value"] == pytest.approx(value(metrics, record["source"]), abs=1e-9)
            checked += 1
        if record["runs"]:
            mean = sum(r["value"] for r in record["runs"]) / len(record["runs"])
            assert record["mean"] == pytest.approx(mean)
    assert checked > 40


@needs_mnist
def test_rebuild_reuses_runs_then_shows_failed_ones(built):
    cwd = built["cwd"]
    start = time.monotonic()
    proc = report(cwd)
    assert "every run is already there: nothing to train" in proc.stdout
    assert time.monotonic() - start < 60
    # a run killed before it wrote its record, and a run that diverged
    results = json.loads((built["out"] / "results.json").read_text())["runs"]
    dirs = {r["experiment"]: Path(cwd) / r["dir"] for r in results}
    killed, diverged = dirs["remember/rnn_h5"], dirs["binary_add/h5_ce_L4"]
    (killed / "metrics.json").unlink()
    record = json.loads((diverged / "metrics.json").read_text())
    record |= {
        "status": "diverged",
        "test": {},
        "diverged": {"step": 9, "value": "nan", "what": "training loss", "epoch": 0},
    }
    (diverged / "metrics.json").write_text(json.dumps(record))
    report(cwd, "train=false")
    text = (cwd / "outputs" / "report" / "latest" / "report.md").read_text()
    assert "seed 0: **unfinished**" in text
    assert "seed 0: **diverged** at step 9" in text


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def get_json(url: str):
    with urllib.request.urlopen(url, timeout=10) as answer:
        return json.loads(answer.read())


@needs_mnist
def test_tensorboard_server_lists_runs_scalars_and_images(built):
    port = free_port()
    logdir = Path(built["cwd"]) / "outputs" / "multirun"
    tensorboard = shutil.which("tensorboard", path=str(Path(sys.executable).parent))
    server = subprocess.Popen(
        [tensorboard, "--logdir", str(logdir), "--port", str(port), "--host", "127.0.0.1"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        base = f"http://127.0.0.1:{port}"
        deadline, runs = time.monotonic() + 90, []
        while time.monotonic() < deadline and not runs:
            try:
                runs = get_json(f"{base}/data/runs")
            except OSError:
                time.sleep(1)
        assert any("mnist" in r for r in runs) and any("binary_add" in r for r in runs)
        scalars = get_json(f"{base}/data/plugin/scalars/tags")
        images = get_json(f"{base}/data/plugin/images/tags")
        mnist = next(r for r in scalars if "mnist" in r and r.endswith("tensorboard"))
        assert {"val/acc", "train/loss", "test/acc"} <= set(scalars[mnist])
        assert "test/confusion_matrix" in images[mnist]
    finally:
        server.terminate()
        server.wait(timeout=30)


def fake_row(name: str, accs: list[float], seconds: float = 10.0) -> render.Row:
    cell = name.split("_")[0].removeprefix("bi")
    runs = [
        {
            "status": "completed",
            "dir": f"/runs/{name}/{seed}",
            "config": {
                "model": {"cell": cell, "hidden": 128, "num_layers": 1, "bidirectional": False}
            },
            "test": {"test/acc": acc},
            "best_val": acc,
            "train_time_s": seconds * 5,
            "epochs_trained": 5,
            "num_parameters": 1,
        }
        for seed, acc in enumerate(accs)
    ]
    return render.Row(f"mnist/{name}", runs, list(range(len(accs))))


def test_observations_follow_the_numbers():
    lstm_wins = [
        fake_row("lstm_128", [0.990, 0.991, 0.992]),
        fake_row("gru_128", [0.980, 0.981, 0.982]),
    ]
    gru_wins = [
        fake_row("lstm_128", [0.980, 0.981, 0.982]),
        fake_row("gru_128", [0.990, 0.991, 0.992]),
    ]
    tie = [fake_row("lstm_128", [0.985, 0.990, 0.995]), fake_row("gru_128", [0.984, 0.991, 0.994])]
    one, two, three = (render.mnist_observations(rows) for rows in (lstm_wins, gru_wins, tie))
    assert one != two
    assert "Highest mean test accuracy: lstm_128" in one[0]
    assert "LSTM (99.10 ± 0.10 %) > GRU" in one[1]
    assert "Highest mean test accuracy: gru_128" in two[0]
    assert "GRU (99.10 ± 0.10 %) > LSTM" in two[1]
    assert "tie" in three[1]  # a difference within the spread over seeds is called a tie


def test_the_best_run_follows_the_monitor_mode_and_skips_rows_without_scores():
    def row(name: str, values: list, mode: str) -> render.Row:
        config = {"task": {"monitor_mode": mode}}
        runs = [
            {"status": "completed", "best_val": v, "dir": name, "config": config} for v in values
        ]
        return render.Row(experiment=name, runs=runs, seeds=list(range(len(values))))

    low, high = row("low", [0.1, 0.2], "min"), row("high", [0.5, 0.6], "min")
    unscored, missing = row("unscored", [None], "min"), render.Row("missing", [None], [0])
    rows = [high, unscored, low, missing]
    assert render.monitor_mode(rows) == "min"
    # a validation loss: the lowest mean is best (not the highest)
    assert render.best_row(rows, render.field("best_val"), "min") is low
    # equal means compare their numbers only (rows themselves do not order)
    tie = row("tie", [0.2, 0.1], "min")
    assert render.best_row([low, tie], render.field("best_val"), "min") in (low, tie)

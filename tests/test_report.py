"""The report from real (tiny) runs: every section and table, valid figures, numbers traced
back to the runs' metrics.json, reuse of finished runs, failed runs shown as failed, and a
real TensorBoard server reading the runs; observations computed from the numbers."""

from __future__ import annotations

import base64
import json
import os
import re
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from PIL import Image

from seqnets import CONFIG_MODULE
from seqnets.report.plan import Planned, experiments_of
from seqnets.report.render import render_all
from seqnets.reportkit import stats as report_stats
from seqnets.tasks.base import Task
from seqnets.tasks.mnist import report as mnist_report
from tests.conftest import CONF, DATA_DIR, WAIT_S, needs_mnist

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


@pytest.mark.slow  # a real report build (the "built" fixture)
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
    # the remember table's columns: the cells of its rows, in their order
    assert "| run | cell | hidden |" in text and "| hidden | LSTM % | RNN % |" in text
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


@pytest.mark.slow  # a real report build (the "built" fixture)
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


@pytest.mark.slow  # a real report build (the "built" fixture)
@needs_mnist
def test_rebuild_reuses_runs_then_shows_failed_ones(built):
    cwd = built["cwd"]
    trained = sorted((cwd / "outputs" / "multirun").rglob("metrics.json"))
    proc = report(cwd)
    assert "every run is already there: nothing to train" in proc.stdout
    assert sorted((cwd / "outputs" / "multirun").rglob("metrics.json")) == trained
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


def served(base: str) -> dict:
    """What a TensorBoard server at ``base`` shows so far: its runs, scalar and image tags
    (empty while it is starting)."""
    try:
        return {
            "runs": get_json(f"{base}/data/runs"),
            "scalars": get_json(f"{base}/data/plugin/scalars/tags"),
            "images": get_json(f"{base}/data/plugin/images/tags"),
        }
    except OSError:  # not listening yet
        return {"runs": [], "scalars": {}, "images": {}}


def shows_the_runs(seen: dict) -> bool:
    """Both tasks' runs listed, and an MNIST run's scalars and confusion matrix loaded."""
    runs, scalars, images = seen["runs"], seen["scalars"], seen["images"]
    mnist = [r for r in scalars if "mnist" in r and r.endswith("tensorboard")]
    return (
        any("mnist" in r for r in runs)
        and any("binary_add" in r for r in runs)
        and any(
            {"val/acc", "train/loss", "test/acc"} <= set(scalars[r])
            and "test/confusion_matrix" in images.get(r, {})
            for r in mnist
        )
    )


@pytest.mark.slow  # a real report build (the "built" fixture)
@needs_mnist
def test_tensorboard_server_lists_runs_scalars_and_images(built, tmp_path):
    # The server loads the runs in the background: the test waits until it shows them all, and
    # fails at once if the server exits (WAIT_S only turns a server that never loads them into a
    # failure that says what it showed).
    port = free_port()
    logdir = Path(built["cwd"]) / "outputs" / "multirun"
    said = tmp_path / "tensorboard.log"
    serve = ["--logdir", str(logdir), "--port", str(port), "--host", "127.0.0.1"]
    with open(said, "w") as log:
        server = subprocess.Popen(
            [sys.executable, "-m", "tensorboard.main", *serve],  # this environment's
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    try:
        base, start = f"http://127.0.0.1:{port}", time.monotonic()
        seen: dict = {"runs": [], "scalars": {}, "images": {}}
        while not shows_the_runs(seen):
            assert server.poll() is None, f"tensorboard exited:\n{said.read_text()[-3000:]}"
            assert time.monotonic() - start < WAIT_S, f"after {WAIT_S:.0f} s it shows {seen}"
            time.sleep(0.5)
            seen = served(base)
    finally:
        server.terminate()
        server.wait()


def fake_row(
    name: str, accs: list[float], seconds: float = 10.0, **model: object
) -> report_stats.Row:
    cell = name.split("_")[0].removeprefix("bi")
    model = {"cell": cell, "hidden": 128, "num_layers": 1, "bidirectional": False} | model
    runs = [
        {
            "status": "completed",
            "dir": f"/runs/{name}/{seed}",
            "config": {"model": model},
            "test": {"test/acc": acc},
            "best_val": acc,
            "train_time_s": seconds * 5,
            "epochs_trained": 5,
            "num_parameters": 1,
        }
        for seed, acc in enumerate(accs)
    ]
    return report_stats.Row(f"mnist/{name}", runs, list(range(len(accs))))


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
    one, two, three = (mnist_report.observations(rows) for rows in (lstm_wins, gru_wins, tie))
    assert one != two
    assert "Highest mean test accuracy: lstm_128" in one[0]
    # the sentence names the setting compared and both values, from the configs
    assert one[1].startswith("model.cell gru vs lstm (gru_128 vs lstm_128, all else alike)")
    assert "lstm_128 beats gru_128 by 1.00 points (99.10 ± 0.10 vs 98.10 ± 0.10)" in one[1]
    assert "Highest mean test accuracy: gru_128" in two[0]
    assert "gru_128 beats lstm_128" in two[1]
    assert "tie" in three[1]  # a difference within the spread over seeds is called a tie


def test_observations_compare_rows_by_their_configs_not_their_names():
    rows = [
        fake_row("a", [0.90, 0.91, 0.92], cell="rnn"),
        fake_row("b", [0.95, 0.96, 0.97], cell="rnn", hidden=256),
        fake_row("c", [0.80, 0.81, 0.82], cell="rnn", hidden=256, num_layers=2),
        fake_row("d", [0.97, 0.98, 0.99], cell="lstm", hidden=64, bidirectional=True),
    ]
    said = mnist_report.observations(rows)
    assert any(s.startswith("model.hidden 256 vs 128 (b vs a, all else alike)") for s in said)
    assert any(s.startswith("model.num_layers 2 vs 1 (c vs b, all else alike)") for s in said)
    assert not any("d vs" in s or "vs d" in s for s in said)  # d differs in three settings
    renamed = [report_stats.Row(f"mnist/x{i}", r.runs, r.seeds) for i, r in enumerate(rows)]
    again = mnist_report.observations(renamed)
    assert len(again) == len(said)  # a renamed experiment is neither dropped nor misstated
    assert any(s.startswith("model.hidden 256 vs 128 (x1 vs x0,") for s in again)


def test_the_best_run_follows_the_monitor_mode_and_skips_rows_without_scores():
    def row(name: str, values: list, mode: str) -> report_stats.Row:
        config = {"task": {"monitor_mode": mode}}
        runs = [
            {"status": "completed", "best_val": v, "dir": name, "config": config} for v in values
        ]
        return report_stats.Row(experiment=name, runs=runs, seeds=list(range(len(values))))

    low, high = row("low", [0.1, 0.2], "min"), row("high", [0.5, 0.6], "min")
    unscored, missing = row("unscored", [None], "min"), report_stats.Row("missing", [None], [0])
    rows = [high, unscored, low, missing]
    assert report_stats.monitor_mode(rows) == "min"
    # a validation loss: the lowest mean is best (not the highest)
    assert report_stats.best_row(rows, report_stats.field("best_val"), "min") is low
    # equal means compare their numbers only (rows themselves do not order)
    tie = row("tie", [0.2, 0.1], "min")
    assert report_stats.best_row([low, tie], report_stats.field("best_val"), "min") in (low, tie)


class Adding(Task):
    """A task with no report.py of its own: its section is the generic one."""

    name = "adding"
    title = "Adding two marked numbers"
    setting_keys = ("max_len",)


def adding_run(seed: int, hidden: int, acc: float) -> dict:
    task = {"_target_": "tests.test_report.Adding", "name": "adding", "max_len": 10}
    task |= {"monitor": "val/acc", "monitor_mode": "max"}
    return {
        "status": "completed",
        "seed": seed,
        "dir": f"/runs/adding_h{hidden}/{seed}",
        "config": {
            "task": task,
            "model": {"cell": "lstm", "hidden": hidden, "num_layers": 1, "bidirectional": False},
        },
        "test": {"test/acc": acc, "test/loss": 1 - acc},
        "best_val": acc,
        "by_length": [{"length": n, "samples": 10, "acc": acc} for n in (5, 10, 20)],
        "train_loss_steps": [[1, 1 - acc], [2, 1 - acc]],
        "history": [{"train/acc": acc, "val/acc": acc, "train/loss": 0.1, "val/loss": 0.1}],
    }


def test_a_task_without_its_own_report_gets_the_generic_section(tmp_path):
    plan = [
        Planned("adding", f"adding/h{h}", s, f"id{h}{s}", run=adding_run(s, h, acc + s / 100))
        for h, acc in ((4, 0.5), (8, 0.9))
        for s in (0, 1)
    ]
    info = {
        "date": "today",
        "wall_s": 1.0,
        "trained": 0,
        "reused": 4,
        "machine": {"platform": "p", "processor": "x", "cores": 2},
        "versions": {},
        "commit": "c",
        "command": "python -m seqnets.report sections=[adding]",
        "commands": {"adding": "python -m seqnets.report sections=[adding]"},
    }
    render_all(plan, tmp_path, ["adding"], [0, 1], {}, info)
    text = (tmp_path / "report.md").read_text()
    assert "## 1. Adding two marked numbers" in text
    assert "| run | model | max_len | best val/acc | test acc | test loss | runs |" in text
    assert "| h8 | lstm h=8 | 10 | 0.9050 ± 0.0071 | 0.9050 ± 0.0071 |" in text
    assert "model.hidden 8 vs 4 (h8 vs h4, all else alike), test acc: h8 beats h4" in text
    # no inside entry for the section: its best experiment on validation
    results = json.loads((tmp_path / "results.json").read_text())
    assert results["inside"]["adding"]["dir"] == "/runs/adding_h8/0"
    assert (tmp_path / "figures" / "adding_length.png").exists()


def test_a_section_without_an_experiments_entry_takes_every_experiment_config():
    from hydra import initialize_config_module
    from omegaconf import OmegaConf

    cfg = OmegaConf.create({"experiments": {"mnist": ["mnist/lstm_128"]}})
    with initialize_config_module(config_module=CONFIG_MODULE, version_base="1.3"):
        assert experiments_of(cfg, "mnist") == ["mnist/lstm_128"]
        found = experiments_of(cfg, "remember")
        assert experiments_of(cfg, "no_such_task") == []
    files = sorted((CONF / "experiment" / "remember").glob("*.yaml"))
    assert found == [f"remember/{f.stem}" for f in files] and "remember/lstm_h10" in found


def test_sections_come_from_every_folder_of_the_search_path(tmp_path, capsys):
    """A user's experiment folder on ``hydra.searchpath`` is a section; a section with no
    experiment configs says where to write them."""
    from tests.conftest import ROOT, cli_in_process

    user = tmp_path / "conf"
    (user / "experiment" / "parity").mkdir(parents=True)
    (user / "experiment" / "parity" / "gru_h8.yaml").write_text(
        "# @package _global_\ndefaults:\n  - override /task: parity\n  - override /model: gru\n"
    )
    search = f"hydra.searchpath=[file://{user},file://{ROOT / 'tests' / 'conf'}]"
    common = (search, "train=false", f"runs_dir={tmp_path / 'outputs'}", "seeds=[0]")
    code, err = cli_in_process(
        "sections=[parens]", *common, cwd=tmp_path, capsys=capsys, module="seqnets.report.__main__"
    )
    assert code == 2 and "no experiment configs for parens" in err
    assert "parity" in err.split("choose from")[1] and "experiment/parens/<run>.yaml" in err
    code, err = cli_in_process(
        "sections=[parity]", *common, cwd=tmp_path, capsys=capsys, module="seqnets.report.__main__"
    )
    assert code == 0, err
    text = (tmp_path / "outputs" / "report" / "latest" / "report.md").read_text()
    assert "## 1. Parity of a bit string" in text and "experiment=parity/gru_h8" in text

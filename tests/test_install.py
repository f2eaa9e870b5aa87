"""seqnets installed from its wheel, as another project would depend on it.

The wheel is built from this checkout and installed into a fresh virtual environment, which
reuses the libraries already installed here (torch, Lightning, Hydra: nothing is downloaded)
through a ``.pth`` file that names their folders; the seqnets it imports is the wheel's, not
the checkout's (checked first). From a folder outside the repository, it then trains, runs a
two-job sweep, evaluates and predicts with the trained checkpoint, summarises and reports the
runs, composes the demo's config, and trains with a config folder of the user's own added by
``hydra.searchpath``.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import DATA_DIR, ROOT, load_metrics

pytestmark = pytest.mark.slow

# What setuptools reads to build the wheel: copied out of the checkout, so that the build
# writes nothing here (and a stale build/ folder cannot slip old files into the wheel).
SOURCES = ("pyproject.toml", "setup.py", "README.md", "src", "conf")
# seqnets' dependencies, found where this interpreter imports them from.
DEPENDENCIES = (
    "torch",
    "torchvision",
    "lightning",
    "hydra",
    "omegaconf",
    "torchmetrics",
    "matplotlib",
    "tensorboard",
    "markdown",
    "PIL",
)
PIP = [sys.executable, "-m", "pip", "--disable-pip-version-check"]
TINY = ["debug=fast", "task=remember", "model.hidden=4", "trainer=cpu"]


def build_wheel(folder: Path) -> Path:
    """The wheel ``pip wheel`` builds from a copy of the checkout's sources."""
    source = folder / "source"
    source.mkdir()
    for name in SOURCES:
        path = ROOT / name
        if path.is_dir():
            ignore = shutil.ignore_patterns("__pycache__", "*.egg-info")
            shutil.copytree(path, source / name, ignore=ignore)
        else:
            shutil.copy2(path, source / name)
    subprocess.run(
        [*PIP, "wheel", "--no-deps", "--no-build-isolation", "--no-index", "-w", folder, source],
        check=True,
        capture_output=True,
    )
    (wheel,) = folder.glob("seqnets-*.whl")
    return wheel


def dependency_folders() -> list[str]:
    """The folders this interpreter imports seqnets' dependencies from (none of them holds
    an importable seqnets: an editable install's hook there is a ``.pth`` file, which a
    folder named in another ``.pth`` file does not run)."""
    folders = []
    for name in DEPENDENCIES:
        spec = importlib.util.find_spec(name)
        assert spec is not None and spec.origin is not None, f"{name} is not installed"
        folder = str(Path(spec.origin).parents[1])
        if folder not in folders:
            folders.append(folder)
    return folders


@pytest.fixture(scope="module")
def venv(tmp_path_factory) -> dict:
    """A fresh virtual environment holding the wheel: its interpreter, its site-packages and
    a folder outside the repository to run from."""
    folder = tmp_path_factory.mktemp("install")
    wheel = build_wheel(folder)
    env = folder / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", env], check=True)
    python = env / "bin" / "python"
    site = subprocess.run(
        [python, "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()
    # --target: pip installs the wheel's files there and looks at no other environment.
    subprocess.run(
        [*PIP, "install", "--no-deps", "--no-index", "--target", site, wheel],
        check=True,
        capture_output=True,
    )
    Path(site, "dependencies.pth").write_text("\n".join(dependency_folders()) + "\n")
    work = folder / "work"
    work.mkdir()
    return {"python": python, "site": Path(site), "work": work}


def python(venv: dict, *args: str) -> subprocess.CompletedProcess:
    """``python <args>`` in the fresh environment, from its work folder, with nothing of the
    checkout on the path."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}
    env |= {"SEQNETS_DATA_DIR": str(DATA_DIR), "MPLBACKEND": "Agg"}
    proc = subprocess.run(
        [venv["python"], *args], cwd=venv["work"], env=env, capture_output=True, text=True
    )
    assert proc.returncode == 0, f"{args}: exit {proc.returncode}\n{proc.stderr[-3000:]}"
    return proc


def run(venv: dict, *args: str, module: str = "seqnets.train") -> subprocess.CompletedProcess:
    """``python -m <module> <args>`` in the fresh environment."""
    return python(venv, "-m", module, *args)


def test_the_wheel_is_what_runs(venv):
    code = "import seqnets; print(seqnets.__file__); print(seqnets.configs())"
    package, configs = python(venv, "-c", code).stdout.split()
    assert Path(package) == venv["site"] / "seqnets" / "__init__.py"
    assert Path(configs) == venv["site"] / "seqnets" / "conf"
    assert (Path(configs) / "train.yaml").is_file()


def test_train_sweep_evaluate_predict_from_another_folder(venv):
    work = venv["work"]
    run(venv, *TINY, f"hydra.run.dir={work / 'one'}")
    metrics = load_metrics(work / "one")
    assert metrics["status"] == "completed" and 0.0 <= metrics["test"]["test/acc"] <= 1.0

    run(venv, "-m", *TINY, "seed=0,1", f"hydra.sweep.dir={work / 'sweep'}")
    jobs = sorted(p.parent for p in (work / "sweep").glob("*/metrics.json"))
    assert [load_metrics(j)["status"] for j in jobs] == ["completed", "completed"]
    assert {load_metrics(j)["seed"] for j in jobs} == {0, 1}

    # The grouped launcher comes with the wheel (hydra_plugins.seqnets_launcher).
    tiny = [a for a in TINY if not a.startswith("model.hidden=")]
    grouped = ["-m", *tiny, "model.hidden=3,4", "hydra/launcher=grouped", "hydra.launcher.n_jobs=1"]
    run(venv, *grouped, f"hydra.sweep.dir={work / 'grouped'}")
    together = [load_metrics(p.parent) for p in (work / "grouped").glob("*/metrics.json")]
    assert [(r["status"], r["grouped"]["members"]) for r in together] == [("completed", 2)] * 2
    assert (venv["site"] / "hydra_plugins" / "seqnets_launcher" / "grouped.py").is_file()

    run(venv, f"ckpt_path={work / 'one'}", "lengths=[3,6]", module="seqnets.evaluate")
    (evaluated,) = (work / "outputs" / "evaluate").rglob("metrics.json")
    rows = load_metrics(evaluated.parent)["by_length"]
    assert [r["length"] for r in rows] == [3, 4, 5, 6]

    run(venv, f"ckpt_path={work / 'one'}", "input=[6,8,0,2]", module="seqnets.predict")
    (predictions,) = (work / "outputs" / "predict").rglob("predictions.json")
    (row,) = json.loads(predictions.read_text())["rows"]
    assert row["pred"] in range(10)

    table = run(venv, str(work / "sweep"), module="seqnets.summarize").stdout
    assert "remember" in table

    report = ["sections=[remember]", "seeds=[0,1]", "train=false", f"runs_dir={work}"]
    run(venv, *report, module="seqnets.report")
    (built,) = (work / "report").glob("2*/report.md")  # beside the runs (runs_dir)
    assert "not run from a git checkout" in built.read_text()

    assert "port:" in run(venv, "--cfg", "job", module="seqnets.demo").stdout


def test_a_users_own_config_folder(venv):
    # A task config of the user's own, beside the packaged ones, through Hydra's search path.
    mine = venv["work"].parent / "my_configs"
    (mine / "task").mkdir(parents=True)
    (mine / "task" / "short_remember.yaml").write_text(
        "defaults:\n  - remember\n  - _self_\nmax_eval_len: 7\n"
    )
    out = venv["work"] / "mine"
    search = f"hydra.searchpath=[file://{mine}]"
    run(venv, *TINY, "task=short_remember", search, f"hydra.run.dir={out}")
    metrics = load_metrics(out)
    assert metrics["status"] == "completed"
    assert metrics["by_length"][-1]["length"] == 7  # the packaged remember.yaml says 20

"""Shared fixtures: the real config tree, the real CLI, real MNIST from the data directory."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from hydra import compose, initialize_config_module
from hydra.core.global_hydra import GlobalHydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, open_dict

import seqnets
from seqnets import CONFIG_MODULE

ROOT = Path(__file__).resolve().parents[1]
CONF = ROOT / "conf"
DATA_DIR = Path(os.environ.get("SEQNETS_DATA_DIR", ROOT.parent / "shared" / "data")).resolve()
HAS_MNIST = (DATA_DIR / "MNIST" / "raw" / "train-images-idx3-ubyte").exists()
# CI sets SEQNETS_REQUIRE_DATA=1: there a wrong data path must fail the MNIST tests, not skip them.
REQUIRE_DATA = os.environ.get("SEQNETS_REQUIRE_DATA") == "1"
needs_mnist = pytest.mark.skipif(
    not HAS_MNIST and not REQUIRE_DATA, reason=f"MNIST not in {DATA_DIR} (set SEQNETS_DATA_DIR)"
)
# Under pytest-xdist the workers share the cores: every run they start (and each worker's own
# torch) takes one thread, as two processes of two threads on two cores collapse.
if int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1")) > 1:
    os.environ.setdefault("SEQNETS_THREADS", "1")
    import torch

    torch.set_num_threads(1)
# A few batches per stage: enough to exercise every part, quick on two cores.
TINY = ["debug=fast", "trainer=cpu", "trainer.enable_model_summary=false"]


def tiny(*args: str) -> list[str]:
    """``args`` after TINY's presets, leaving out a preset that ``args`` sets itself (Hydra
    takes one value per key)."""
    keys = {a.lstrip("+~").split("=", 1)[0] for a in args}
    return [t for t in TINY if t.split("=", 1)[0] not in keys] + list(args)


def yaml_files(folder: Path) -> dict[str, bytes]:
    """Every config file below ``folder``, by its path relative to it."""
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*.yaml"))}


def pytest_configure(config: pytest.Config) -> None:
    """Refuse to run against other configs than this checkout's: the commands read
    ``seqnets.conf`` (the installed package's configs), the tests read and compose
    ``conf/`` here, and an editable install of another checkout (or none) would make the two
    differ without a word."""
    install = "install this checkout: `make venv`, or `pip install --no-deps -e .`"
    try:
        packaged = Path(str(seqnets.configs()))
    except ModuleNotFoundError:
        raise pytest.UsageError(f"{CONFIG_MODULE} cannot be imported: {install}") from None
    if packaged.resolve() != CONF.resolve() and yaml_files(packaged) != yaml_files(CONF):
        raise pytest.UsageError(
            f"the commands read their configs from {packaged} ({CONFIG_MODULE}), which differ "
            f"from this checkout's {CONF}: {install}"
        )


def pytest_report_header() -> str:
    """Which seqnets, and which configs, the tests run: a checkout's or an installed one."""
    return f"seqnets: {Path(seqnets.__file__).parent}; configs: {seqnets.configs()}"


@pytest.fixture
def compose_cfg(tmp_path):
    """Compose the real config (the installed config package, as the CLI does) with a run dir
    in tmp."""

    def _compose(*overrides: str) -> DictConfig:
        GlobalHydra.instance().clear()
        with initialize_config_module(config_module=CONFIG_MODULE, version_base="1.3"):
            cfg = compose("train", overrides=list(overrides), return_hydra_config=True)
        HydraConfig.instance().set_config(cfg)
        with open_dict(cfg):
            cfg.paths.output_dir = str(tmp_path)
            cfg.paths.data_dir = str(DATA_DIR)
            del cfg.hydra
        return cfg

    yield _compose
    GlobalHydra.instance().clear()


def run_cli(
    *args: str, cwd: Path, check: bool = True, module: str = "seqnets.train"
) -> subprocess.CompletedProcess:
    """Run ``python -m seqnets.train`` (or another of the commands) as a user would, from
    ``cwd``, in a process of its own."""
    env = {**os.environ, "SEQNETS_DATA_DIR": str(DATA_DIR), "MPLBACKEND": "Agg"}
    proc = subprocess.run(
        [sys.executable, "-m", module, *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    if check and proc.returncode != 0:
        raise AssertionError(
            f"exit {proc.returncode}\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
        )
    return proc


def cli_in_process(
    *args: str, cwd: Path, capsys: pytest.CaptureFixture, module: str = "seqnets.train"
) -> tuple[int, str]:
    """Run a command's real entry point (Hydra, checks, exit codes) in this process, which
    skips the ~6 s of imports a new process pays: ``(exit code, stderr)``."""
    import importlib

    from seqnets.sweeps import cli

    entry = importlib.import_module(module)
    argv, here = sys.argv, os.getcwd()
    sys.argv = [module, *args]
    os.chdir(cwd)
    capsys.readouterr()
    try:
        cli(entry.main)
        code = 0
    except SystemExit as done:
        code = done.code if isinstance(done.code, int) else 1
    finally:
        sys.argv = argv
        os.chdir(here)
        GlobalHydra.instance().clear()
    return code, capsys.readouterr().err


def strict_json(path: Path) -> dict:
    """A file parsed as strict JSON: NaN and Infinity tokens fail."""
    from seqnets.records import loads_strict

    return loads_strict(path.read_text())


def run_dirs(cwd: Path) -> list[Path]:
    """Every run directory (single runs and multirun jobs) under ``cwd/outputs``."""
    return sorted(p.parent for p in (cwd / "outputs").rglob(".hydra"))


def load_metrics(run_dir: Path) -> dict:
    """A run's metrics.json, which must be strict JSON."""
    return strict_json(run_dir / "metrics.json")


def run_one(*args: str, cwd: Path) -> tuple[Path, dict]:
    """Run one job of the real CLI; its run directory and its metrics."""
    run_cli(*args, cwd=cwd)
    (run,) = run_dirs(cwd)
    return run, load_metrics(run)

"""Shared fixtures: the real config tree, the real CLI, real MNIST from the data directory."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, open_dict

ROOT = Path(__file__).resolve().parents[1]
CONF = ROOT / "conf"
DATA_DIR = Path(os.environ.get("SEQNETS_DATA_DIR", ROOT.parent / "shared" / "data")).resolve()
HAS_MNIST = (DATA_DIR / "MNIST" / "raw" / "train-images-idx3-ubyte").exists()
needs_mnist = pytest.mark.skipif(
    not HAS_MNIST, reason=f"MNIST not in {DATA_DIR} (set SEQNETS_DATA_DIR)"
)
# A few batches per stage: enough to exercise every part, quick on two cores.
TINY = ["debug=fast", "trainer=cpu", "trainer.enable_model_summary=false"]


@pytest.fixture
def compose_cfg(tmp_path):
    """Compose the real config (absolute config dir, as the CLI would) with a run dir in tmp."""

    def _compose(*overrides: str) -> DictConfig:
        GlobalHydra.instance().clear()
        with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
            cfg = compose("train", overrides=list(overrides), return_hydra_config=True)
        HydraConfig.instance().set_config(cfg)
        with open_dict(cfg):
            cfg.paths.output_dir = str(tmp_path)
            cfg.paths.data_dir = str(DATA_DIR)
            del cfg.hydra
        return cfg

    yield _compose
    GlobalHydra.instance().clear()


def run_cli(*args: str, cwd: Path, check: bool = True) -> subprocess.CompletedProcess:
    """Run ``python -m seqnets.train`` as a user would, from ``cwd``."""
    env = {**os.environ, "SEQNETS_DATA_DIR": str(DATA_DIR), "MPLBACKEND": "Agg"}
    proc = subprocess.run(
        [sys.executable, "-m", "seqnets.train", *args],
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


def run_dirs(cwd: Path) -> list[Path]:
    """Every run directory (single runs and multirun jobs) under ``cwd/outputs``."""
    return sorted(p.parent for p in (cwd / "outputs").rglob(".hydra"))


def load_metrics(run_dir: Path) -> dict:
    return json.loads((run_dir / "metrics.json").read_text())


def run_one(*args: str, cwd: Path) -> tuple[Path, dict]:
    """Run one job of the real CLI; its run directory and its metrics."""
    run_cli(*args, cwd=cwd)
    (run,) = run_dirs(cwd)
    return run, load_metrics(run)

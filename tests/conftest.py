"""Shared fixtures: the real config tree, the real CLI, real MNIST from the data directory."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
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


def cli_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    """The environment of a command the tests start: this one, the data directory, no
    display."""
    return {**os.environ, "SEQNETS_DATA_DIR": str(DATA_DIR), "MPLBACKEND": "Agg", **(extra or {})}


def user_code_env() -> dict[str, str]:
    """What lets a command import the tests' own modules (``tests.gate``, ``tests.outside_task``)
    as a user's own code, and rebuild checkpoints that name them."""
    path = os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH", "")) if p)
    return {"PYTHONPATH": path, "SEQNETS_TRUSTED_TARGETS": "tests."}


def run_cli(
    *args: str,
    cwd: Path,
    check: bool = True,
    module: str = "seqnets.train",
    env: dict[str, str] | None = None,
) -> subprocess.CompletedProcess:
    """Run ``python -m seqnets.train`` (or another of the commands) as a user would, from
    ``cwd``, in a process of its own (``env``: variables to add to its environment)."""
    proc = subprocess.run(
        [sys.executable, "-m", module, *args],
        cwd=cwd,
        env=cli_env(env),
        capture_output=True,
        text=True,
    )
    if check and proc.returncode != 0:
        raise AssertionError(
            f"exit {proc.returncode}\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
        )
    return proc


# Backstops, not verdicts: what a test waits for comes in seconds; these only turn a command
# that hangs into a failure that says what it printed (pytest-timeout ends the test anyway).
WAIT_S = 300.0
STOP_S = 120.0


class Running:
    """A command running in a process of its own (its own process group), its output (stdout
    and stderr together) read as it comes, so that a test acts when the command has got to a
    point it prints, never after a delay; and fails at once, saying what the command printed,
    when the command ends without getting there. Use it as a context manager: a command still
    running when the test ends is killed."""

    def __init__(
        self,
        *args: str,
        cwd: Path,
        module: str = "seqnets.train",
        env: dict[str, str] | None = None,
    ) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", module, *args],
            cwd=cwd,
            env=cli_env(env),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,
        )
        self.lines: list[str] = []
        self._changed = threading.Condition()
        self._ended = False
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            with self._changed:
                self.lines.append(line)
                self._changed.notify_all()
        with self._changed:
            self._ended = True
            self._changed.notify_all()

    @property
    def output(self) -> str:
        """Everything the command printed so far."""
        with self._changed:
            return "".join(self.lines)

    def tail(self, chars: int = 4000) -> str:
        return self.output[-chars:]

    def wait_for(self, text: str, timeout: float = WAIT_S) -> str:
        """The first line that holds ``text``, once printed. Fails at once if the command
        ends without printing it."""
        seen = 0

        def arrived() -> bool:
            nonlocal seen
            while seen < len(self.lines):
                if text in self.lines[seen]:
                    return True
                seen += 1
            return self._ended

        with self._changed:
            self._changed.wait_for(arrived, timeout)
            if seen < len(self.lines):
                return self.lines[seen]
            ended = self._ended
        if ended:
            raise AssertionError(
                f"the command ended (exit {self.proc.wait()}) without printing {text!r}:\n"
                + self.tail()
            )
        self.kill()
        raise AssertionError(f"no {text!r} within {timeout:.0f} s (killed):\n" + self.tail())

    def signal(self, signum: int) -> None:
        """Send ``signum`` to the command (not to its process group: a user's Ctrl-C reaches
        the group, but the tests ask exactly what one signal to the main process does)."""
        assert self.proc.poll() is None, "the command ended before the signal:\n" + self.tail()
        self.proc.send_signal(signum)

    def finish(self, timeout: float = STOP_S) -> int:
        """The command's exit code once it ends; a command still running after ``timeout``
        is killed and the test fails."""
        try:
            code = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            raise AssertionError(
                f"the command still ran {timeout:.0f} s later (killed):\n" + self.tail()
            ) from None
        self._reader.join()
        return code

    def kill(self) -> None:
        """SIGKILL to the command's whole process group (a sweep's jobs too)."""
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait()
        self._reader.join()

    def __enter__(self) -> Running:
        return self

    def __exit__(self, *exc: object) -> None:
        self.kill()


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

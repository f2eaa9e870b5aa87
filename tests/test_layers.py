"""The import contract (``pyproject.toml``, docs/layers.md) holds, and it has teeth: each of
the upward imports the layers were freed of makes ``lint-imports`` fail again."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
LINT_IMPORTS = shutil.which("lint-imports", path=str(Path(sys.executable).parent))
pytestmark = pytest.mark.skipif(LINT_IMPORTS is None, reason="import-linter not installed")

# (module, an import it must not make): the violations the layers were freed of, and one per
# boundary besides.
UPWARD = [
    ("tasks/mnist/report.py", "from seqnets.report import plan"),
    ("reportkit/generic.py", "from seqnets.tasks import task_of"),
    ("callbacks.py", "def f():\n    from seqnets.tasks import task_of_run"),
    ("train.py", "from seqnets.tasks.analysis import TestAnalysis"),
    ("data/mnist.py", "from seqnets.plots import digit_grid"),
    ("models/module.py", "from seqnets import callbacks"),
    ("evaluate.py", "from seqnets import predict"),
    ("errors.py", "from seqnets import records"),
]


def lint(tree: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [LINT_IMPORTS, "--no-cache"],
        cwd=tree,
        env={"PYTHONPATH": str(tree / "src"), "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
    )


@pytest.fixture(scope="module")
def tree(tmp_path_factory) -> Path:
    """A copy of the package and the contract, to break on purpose."""
    tree = tmp_path_factory.mktemp("layers")
    shutil.copytree(ROOT / "src", tree / "src", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "pyproject.toml", tree)
    return tree


def test_the_contract_is_kept(tree):
    proc = lint(tree)
    assert proc.returncode == 0, proc.stdout[-2000:]


@pytest.mark.parametrize(("module", "line"), UPWARD)
def test_an_upward_import_breaks_it(tree, module, line):
    path = tree / "src" / "seqnets" / module
    original = path.read_text()
    path.write_text(f"{original}\n{line}  # noqa\n")
    try:
        proc = lint(tree)
    finally:
        path.write_text(original)
    assert proc.returncode != 0, f"{module} may import upwards: {line}"
    assert "BROKEN" in proc.stdout


def test_a_module_without_a_layer_breaks_it(tree):
    new = tree / "src" / "seqnets" / "unplaced.py"
    new.write_text('"""A module the contract does not place."""\n')
    try:
        proc = lint(tree)
    finally:
        new.unlink()
    assert proc.returncode != 0 and "not listed as layers" in proc.stdout

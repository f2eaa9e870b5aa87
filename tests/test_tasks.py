"""The task contract: every registered task is complete, an unknown one gets one clear line,
and a task written outside the package trains, evaluates and predicts with no change to
``src/seqnets/``."""

from __future__ import annotations

import json

import pytest
from hydra import compose, initialize_config_module

from seqnets import CONFIG_MODULE
from seqnets.errors import ConfigError
from seqnets.tasks import TASKS, task_class, task_of
from seqnets.tasks.base import Task
from tests.conftest import ROOT, cli_in_process, load_metrics, run_dirs, tiny

OUTSIDE = f"hydra.searchpath=[file://{ROOT / 'tests' / 'conf'}]"


@pytest.mark.parametrize("name", list(TASKS))
def test_every_registered_task_has_a_config_and_a_complete_class(name):
    cls = task_class(name)
    assert issubclass(cls, Task) and cls.name == name and cls.title != Task.title
    with initialize_config_module(config_module=CONFIG_MODULE, version_base="1.3"):
        cfg = compose("train", overrides=[f"task={name}"])
    assert cfg.task.name == name
    task = task_of(cfg.task)
    assert type(task) is cls
    assert set(task.setting_keys) <= set(cfg.task), "settings of the task's config"
    assert task.datamodule().name == name


def test_unknown_task_gets_one_clear_line():
    with pytest.raises(ConfigError, match=r"task 'parrot' is not known: choose from mnist, "):
        task_of({"name": "parrot"})
    with pytest.raises(ConfigError, match=r"task._target_='nowhere.Task' cannot be imported"):
        task_of({"name": "x", "_target_": "nowhere.Task"})
    with pytest.raises(ConfigError, match=r"is not a seqnets\.tasks\.base\.Task"):
        task_of({"_target_": "seqnets.data.adding.AddingDataModule"})


def test_a_task_written_outside_the_package(tmp_path, capsys, monkeypatch):
    """tests/outside_task.py and tests/conf/task/parity.yaml: train, evaluate, predict (a
    checkpoint naming the user's own classes is rebuilt once the user trusts the module)."""
    code, err = cli_in_process(
        *tiny(OUTSIDE, "task=parity", "model=gru", "model.hidden=8"), cwd=tmp_path, capsys=capsys
    )
    assert code == 0, err
    (run,) = run_dirs(tmp_path)
    metrics = load_metrics(run)
    assert metrics["status"] == "completed" and 0.0 <= metrics["test"]["test/acc"] <= 1.0
    assert [r["length"] for r in metrics["by_length"]] == list(range(2, 13))
    assert metrics["inside"]["note"] == "no inside analysis for task 'parity'"

    code, err = cli_in_process(
        f"ckpt_path={run}", cwd=tmp_path, capsys=capsys, module="seqnets.evaluate"
    )
    assert code == 2 and "SEQNETS_TRUSTED_TARGETS=tests.outside_task." in err
    monkeypatch.setenv("SEQNETS_TRUSTED_TARGETS", "tests.outside_task.")

    code, err = cli_in_process(
        f"ckpt_path={run}", "lengths=[2,20]", cwd=tmp_path, capsys=capsys, module="seqnets.evaluate"
    )
    assert code == 0, err
    (evaluated,) = (tmp_path / "outputs" / "evaluate").rglob("metrics.json")
    lengths = [r["length"] for r in load_metrics(evaluated.parent)["by_length"]]
    assert lengths == list(range(2, 21))

    code, err = cli_in_process(
        f"ckpt_path={run}",
        "input=[0110,101,12]",
        cwd=tmp_path,
        capsys=capsys,
        module="seqnets.predict",
    )
    assert code == 2 and "'12' is not allowed: give a bit string like 0110" in err
    (predictions,) = (tmp_path / "outputs" / "predict").rglob("predictions.json")
    predicted = predictions.parent
    rows = json.loads(predictions.read_text())["rows"]
    assert [r.get("bits") for r in rows] == ["0110", "101", None]
    assert rows[0]["pred"] in (0, 1) and "- 0110 -> " in (predicted / "predictions.md").read_text()


def test_nothing_branches_on_a_task_or_cell_name():
    """Outside a task's own modules, the cell module and the registries, no code compares
    against a task's or a cell's name, keys a table by one, or matches one: the demo page
    included, which builds its tabs from what each task declares (``Task.demo_tab``)."""
    import ast

    from seqnets.models.cells import CELLS

    names = set(TASKS) | set(CELLS)
    src = ROOT / "src" / "seqnets"
    own = [src / "tasks" / "__init__.py", src / "models" / "cells.py"]
    own += [src / "tasks" / name for name in TASKS] + [src / "data" / f"{n}.py" for n in TASKS]
    found = []
    for path in sorted(src.rglob("*.py")):
        if any(path == o or o in path.parents for o in own):
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Compare):
                named = [node.left, *node.comparators]
            elif isinstance(node, ast.Dict):
                named = [k for k in node.keys if k is not None]
            elif isinstance(node, ast.MatchValue):
                named = [node.value]
            else:
                continue
            for value in named:
                if isinstance(value, ast.Constant) and value.value in names:
                    found.append(f"{path.relative_to(ROOT)}:{value.lineno}: {value.value!r}")
                elif isinstance(value, ast.Tuple | ast.List | ast.Set):
                    found += [
                        f"{path.relative_to(ROOT)}:{e.lineno}: {e.value!r}"
                        for e in value.elts
                        if isinstance(e, ast.Constant) and e.value in names
                    ]
    assert not found, "\n".join(found)

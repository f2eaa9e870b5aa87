"""``python -m seqnets.new task NAME`` / ``python -m seqnets.new cell NAME``: a working skeleton
of a task or a cell, written in the current folder, that seqnets finds without a change to
the package (docs/extending.md).

A task: ``NAME_task.py`` (its DataModule and its Task), ``conf/task/NAME.yaml``,
``conf/experiment/NAME/gru_h8.yaml`` (its report section) and ``tests/test_NAME_task.py``.
A cell: ``NAME_cell.py`` (a class under the cell contract), ``conf/model/NAME.yaml`` and
``tests/test_NAME_cell.py`` (``check_cell`` on it). Each trains at once with ``debug=fast``
and shows in ``summarize``, the report and the demo; the command prints the lines that do it
(the folder on ``PYTHONPATH``, the config folder on ``hydra.searchpath``). Nothing existing is
overwritten.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

from seqnets.errors import ConfigError, exit_usage
from seqnets.skeletons import (
    CELL_CONFIG,
    CELL_MODULE,
    CELL_TEST,
    EXPERIMENT,
    TASK_CONFIG,
    TASK_MODULE,
    TASK_TEST,
)

USAGE = "python -m seqnets.new task NAME | python -m seqnets.new cell NAME"


def camel(name: str) -> str:
    """``my_task`` -> ``MyTask``: the class names of the skeleton."""
    return "".join(part[:1].upper() + part[1:] for part in name.split("_"))


def check_name(name: str) -> str:
    """A name that is a Python identifier in snake case, as module and config names need."""
    if not re.fullmatch(r"[a-z][a-z0-9_]*", name or ""):
        raise ConfigError(
            f"NAME={name!r} is not allowed: use lower case letters, digits and _, starting "
            f"with a letter (it names a module, a config and a class)"
        )
    return name


def files(kind: str, name: str) -> dict[str, str]:
    """The skeleton's files, path -> text."""
    name = check_name(name)
    module = f"{name}_{kind}"
    fill = {"name": name, "camel": camel(name), "module": module}
    if kind == "task":
        fill["title"] = name.replace("_", " ").capitalize()
        return {
            f"{module}.py": TASK_MODULE.format(**fill),
            f"conf/task/{name}.yaml": TASK_CONFIG.format(**fill),
            f"conf/experiment/{name}/gru_h8.yaml": EXPERIMENT.format(**fill),
            f"tests/test_{module}.py": TASK_TEST.format(**fill),
        }
    if kind == "cell":
        return {
            f"{module}.py": CELL_MODULE.format(**fill),
            f"conf/model/{name}.yaml": CELL_CONFIG.format(**fill),
            f"tests/test_{module}.py": CELL_TEST.format(**fill),
        }
    raise ConfigError(f"{kind!r} is not allowed: usage: {USAGE}")


def next_steps(kind: str, name: str, folder: Path) -> str:
    """What to type next: importable, on the search path, trusted."""
    module = f"{name}_{kind}"
    search = f"'hydra.searchpath=[file://{folder / 'conf'}]'"
    train = f"task={name}" if kind == "task" else f"task=remember model={name} model.hidden=8"
    lines = [
        "next (from this folder):",
        f"  export PYTHONPATH={folder}${{PYTHONPATH:+:$PYTHONPATH}}",
        f"  export SEQNETS_TRUSTED_TARGETS=${{SEQNETS_TRUSTED_TARGETS:+$SEQNETS_TRUSTED_TARGETS,}}"
        f"{module}.  # its checkpoints name your classes",
        f"  python -m seqnets.train {train} debug=fast {search}",
        f"  python -m pytest tests/test_{module}.py",
    ]
    if kind == "task":
        lines += [
            "  python -m seqnets.predict ckpt_path=<run dir> input=0110",
            f"  python -m seqnets.report sections=[{name}] quick=true {search}",
            "  python -m seqnets.summarize outputs; python -m seqnets.demo",
        ]
    return "\n".join(lines)


def main(argv: list[str]) -> None:
    if len(argv) != 2:
        raise ConfigError(f"{' '.join(argv) or 'nothing'!r} is not allowed: usage: {USAGE}")
    kind, name = argv
    folder = Path.cwd()
    written = files(kind, name)
    taken = [path for path in written if (folder / path).exists()]
    if taken:
        raise ConfigError(
            f"{', '.join(taken)} already exist(s) in {folder}: nothing was written (move them "
            f"away or choose another name)"
        )
    for path, text in written.items():
        (folder / path).parent.mkdir(parents=True, exist_ok=True)
        (folder / path).write_text(text)
        print(f"wrote {path}")
    print(next_steps(kind, name, folder))


if __name__ == "__main__":
    try:
        main(sys.argv[1:])
    except ConfigError as error:
        exit_usage(str(error))

"""What sets one experiment apart from another, read from the runs' configs (never from the
experiments' names): the settings of a row, the groups of rows that differ in exactly one
setting, and the reference reports' numbers matched to a row by its settings."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from seqnets.reportkit.stats import Row

# The task config's parts that are not a setting of the run (or repeat one).
NOT_SETTINGS = ("datamodule", "objective", "monitor", "monitor_mode")
# Settings that go together and so are compared as one: report A's L2 penalty replaces weight
# decay rather than adding to it; the forget-gate bias is the LSTM's alone (each cell's config
# sets its own).
BUNDLES = (("l2", "task.weight_decay"), ("model.cell", "model.forget_bias"))


def freeze(value: Any) -> Any:
    """A config value as a hashable one (lists as tuples)."""
    if isinstance(value, list | tuple):
        return tuple(freeze(v) for v in value)
    if isinstance(value, dict):
        return tuple(sorted((k, freeze(v)) for k, v in value.items()))
    return value


def settings(config: dict[str, Any]) -> dict[str, Any]:
    """A run's settings, flat: ``model.*``, ``task.*`` (its setting keys and every other number the
    task config sets, not its DataModule's copy of them), ``l2``, and the optimizer's and
    scheduler's classes."""
    out: dict[str, Any] = {}
    for key, value in (config.get("model") or {}).items():
        if key != "_target_":
            out[f"model.{key}"] = freeze(value)
    for key, value in (config.get("task") or {}).items():
        if key not in NOT_SETTINGS:
            out[f"task.{key}"] = freeze(value)
    if "l2" in config:
        out["l2"] = config["l2"]
    for node in ("optimizer", "scheduler"):
        part = config.get(node)
        if isinstance(part, dict):
            out[node] = part.get("_target_")
    return out


def show(value: Any) -> str:
    """A setting's value as a sentence shows it."""
    if value is None:
        return "none"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, tuple):
        return "[" + ", ".join(show(v) for v in value) + "]"
    return str(value)


@dataclass
class Varied:
    """Rows whose configs differ in one setting (``keys``: one key, or a bundle's keys that
    differ) and agree on every other; ``values[i]`` is row i's value of ``keys``."""

    keys: tuple[str, ...]
    rows: list[Row]
    values: list[tuple[Any, ...]]

    @property
    def what(self) -> str:
        return ", ".join(self.keys)

    def value(self, row: Row) -> str:
        return ", ".join(show(v) for v in self.values[self.rows.index(row)])


def units(keys: Iterable[str]) -> list[tuple[str, ...]]:
    """The settings compared one at a time: each key alone, a bundle's keys together (at
    the place of its first key)."""
    keys = list(keys)
    out: list[tuple[str, ...]] = []
    for key in keys:
        bundle = next((b for b in BUNDLES if key in b), None)
        unit = tuple(k for k in bundle if k in keys) if bundle else (key,)
        if unit not in out:
            out.append(unit)
    return out


def one_apart(rows: Sequence[Row], only: Sequence[str] | None = None) -> list[Varied]:
    """Every largest group of rows whose configs differ in exactly one setting (or one
    bundle) and agree on all the others, in the order of the settings, then of the rows.
    ``only``: the settings to vary (default: all)."""
    configured = [(row, settings(row.config)) for row in rows if row.config]
    keys: dict[str, None] = {}
    for _, s in configured:
        keys.update(dict.fromkeys(s))
    out = []
    for unit in units(keys):
        if only is not None and not set(unit) & set(only):
            continue
        parts: dict[tuple, list[tuple[Row, tuple]]] = {}
        for row, s in configured:
            rest = tuple(sorted((k, repr(v)) for k, v in s.items() if k not in unit))
            parts.setdefault(rest, []).append((row, tuple(s.get(k) for k in unit)))
        for members in parts.values():
            values = [v for _, v in members]
            if len(members) < 2 or len(set(values)) < len(values):
                continue
            differ = [i for i in range(len(unit)) if len({v[i] for v in values}) > 1]
            out.append(
                Varied(
                    tuple(unit[i] for i in differ),
                    [r for r, _ in members],
                    [tuple(v[i] for i in differ) for v in values],
                )
            )
    return out


def matches(reference: dict[str, Any], config: dict[str, Any]) -> bool:
    """Whether a run's config has every setting a reference figure was measured with."""
    mine = settings(config)
    return all(k in mine and mine[k] == freeze(v) for k, v in reference.items())


def lookup(references: Sequence[tuple[dict[str, Any], Any]], config: dict[str, Any]) -> Any:
    """The figure of the first reference whose settings the config has (None: none)."""
    return next((value for ref, value in references if matches(ref, config)), None)


def common(rows: Sequence[Row], read: Callable[[dict[str, Any]], Any], fmt=str) -> str:
    """A value every row's config has, as text; rows that disagree give each value once
    ("3/5"), so a sentence never states one value for runs that had several."""
    seen: dict[Any, None] = {}
    for row in rows:
        if row.config:
            try:
                seen[freeze(read(row.config))] = None
            except (KeyError, TypeError):
                continue
    return "/".join(fmt(v) for v in seen) if seen else "?"

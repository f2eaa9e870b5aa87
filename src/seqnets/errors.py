"""The ways a run can end other than success, each with its own exit code.

A user's bad value is a ``ConfigError`` (exit 2): the entry point prints its message in one
line. A run that trained but went wrong is a ``RunDiverged`` (exit 1). A stop asked by a
signal exits 128 + its number, as for any Unix command (130 for Ctrl-C, 143 for SIGTERM:
``seqnets.signals``).
"""

from __future__ import annotations

import importlib
import math
import sys
from typing import Any, NoReturn

EXIT_FAILED, EXIT_USAGE = 1, 2  # a signal's stop: 128 + its number (seqnets.signals)


class ConfigError(ValueError):
    """A value a user chose (config, file, directory) is not allowed; the message says why."""


def exit_usage(*lines: str) -> NoReturn:
    """End a command on a user's mistake: each line as ``seqnets: error: ...``, exit 2."""
    for line in lines:
        sys.stderr.write(f"seqnets: error: {line}\n")
    sys.exit(EXIT_USAGE)


class RunDiverged(RuntimeError):
    """Training produced a non-finite loss: the run stops there, its weights are unusable."""

    def __init__(self, step: int, value: float, what: str = "training loss") -> None:
        self.step, self.value, self.what = step, value, what
        super().__init__(f"the {what} became {value} at step {step}")


def check_int(name: str, value: object, low: int, high: int | None = None, why: str = "") -> int:
    """``value`` if it is an int in ``[low, high]``; otherwise a ConfigError that names it
    (and, with ``why``, where the bounds come from)."""
    allowed = f">= {low}" if high is None else f"in {low}..{high}"
    if (
        isinstance(value, bool)
        or not isinstance(value, int)
        or value < low
        or (high is not None and value > high)
    ):
        raise ConfigError(
            f"{name}={value!r} is not allowed: it must be an integer {allowed}"
            + (f" ({why})" if why else "")
        )
    return value


def check_real(
    name: str,
    value: object,
    low: float | None = None,
    high: float | None = None,
    *,
    low_open: bool = False,
    high_open: bool = False,
) -> float:
    """``value`` as a float if it is a finite number within the bounds (open or closed);
    otherwise a ConfigError naming it and the allowed range."""
    ok = isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
    if ok and low is not None:
        ok = value > low if low_open else value >= low
    if ok and high is not None:
        ok = value < high if high_open else value <= high
    if not ok:
        bounds = []
        if low is not None:
            bounds.append(f"{'>' if low_open else '>='} {low:g}")
        if high is not None:
            bounds.append(f"{'<' if high_open else '<='} {high:g}")
        allowed = " and ".join(bounds)
        raise ConfigError(
            f"{name}={value!r} is not allowed: it must be a finite number"
            + (f" {allowed}" if allowed else "")
        )
    return float(value)  # type: ignore[arg-type]


def check_bool(name: str, value: object) -> bool:
    """``value`` if it is a real boolean: the string ``"false"`` is truthy in Python, so a
    quoted value would silently mean the opposite of what it says."""
    if not isinstance(value, bool):
        raise ConfigError(f"{name}={value!r} is not allowed: it must be true or false (unquoted)")
    return value


def check_choice(name: str, value: object, allowed: tuple[str, ...], why: str = "") -> str:
    """Return ``value`` if it is one of ``allowed``, else raise a ConfigError listing them."""
    if value not in allowed:
        raise ConfigError(
            f"{name}={value!r} is not allowed: choose one of {', '.join(allowed)}"
            + (f" ({why})" if why else "")
        )
    return value  # type: ignore[return-value]


def import_by_path(setting: str, path: str) -> Any:
    """What ``path`` (``module.Name``) names, for a setting that takes a user's own class
    (``model.cell``, ``task._target_``): one line naming the setting and the cause when it
    cannot be imported. Not Hydra's ``get_class``, which logs an error of its own first."""
    try:
        module, _, attribute = str(path).rpartition(".")
        return getattr(importlib.import_module(module), attribute)
    except (ImportError, AttributeError, ValueError) as error:
        raise ConfigError(
            f"{setting}={path!r} cannot be imported ({type(error).__name__}: {error}); is its "
            f"folder on PYTHONPATH?"
        ) from None

"""A callback that holds a training run at a chosen step until the test acts on it.

A test that stops a run with a signal (or kills it) must act at a known point of the run: sent
after a delay, or when a file appears, the signal lands wherever a machine of that speed has
got to (or after the run has ended), and the verdict depends on the machine. A run started
with :func:`overrides` prints :data:`HOLDING` at the start of step ``at_step`` and waits there
until the process is asked to stop (``seqnets.signals``) or is killed; the test reads its
output for that line (``tests.conftest.Running``), then acts.

The gate is a user's own callback, added through Hydra alone: ``+callbacks.gate._target_=``.
It holds only in a process whose environment sets ``SEQNETS_TEST_GATE`` to its ``tag`` (so a
run resumed from its checkpoint, whose stored config names the gate too, goes straight on),
and only once.
"""

from __future__ import annotations

import os
import time
from typing import Any

import lightning as L

from seqnets import signals

ARM = "SEQNETS_TEST_GATE"
HOLDING = "gate: holding at step"
# Only a backstop for a test that died without signalling: a held run fails rather than
# waiting for ever.
PATIENCE_S = 900.0


def overrides(at_step: int, tag: str = "on") -> list[str]:
    """The command-line overrides that add the gate to a run (``tag`` may interpolate, e.g.
    ``${seed}`` to hold one job of a sweep)."""
    return [
        "+callbacks.gate._target_=tests.gate.Gate",
        f"+callbacks.gate.at_step={at_step}",
        f"+callbacks.gate.tag={tag}",
    ]


def armed(tag: str = "on") -> dict[str, str]:
    """The environment that arms the gates tagged ``tag``."""
    return {ARM: str(tag)}


class Gate(L.Callback):
    """Holds training at the start of step ``at_step`` (before its update) until a stop is
    asked; see the module's docstring."""

    # It only watches the step count: a sweep's grouped runs hold together (seqnets.grouping).
    group_alongside = True

    def __init__(self, at_step: int, tag: Any = "on") -> None:
        self.at_step = at_step
        self.tag = str(tag)
        self.held = False

    def on_train_batch_start(self, trainer: L.Trainer, *args: Any) -> None:
        if self.held or trainer.global_step != self.at_step or os.environ.get(ARM) != self.tag:
            return
        self.held = True
        print(f"{HOLDING} {self.at_step}", flush=True)
        start = time.monotonic()
        while signals.state.received is None:  # set by seqnets' handler, which then returns
            if time.monotonic() - start > PATIENCE_S:
                raise RuntimeError(f"gate: no stop asked within {PATIENCE_S:.0f} s")
            time.sleep(0.01)

"""How every command stops when asked: SIGINT (Ctrl-C) and SIGTERM (``timeout``, ``docker
stop``, systemd, a cluster scheduler's preemption or time limit) alike.

Outside training a signal stops the command at once: the handler raises ``Stopped`` (a
``KeyboardInterrupt``, so Lightning shuts its loops down as for a Ctrl-C) wherever the
process is, validation, testing, the test analysis, ``evaluate``, ``predict`` or the report.
While training is under way the stop is deferred to the start of the next call of the
training step (``callbacks.InterruptCheckpoint``): a stop raised anywhere else could land
after an optimiser update but before Lightning counts it, and the run resumed from the
checkpoint saved then would train that batch twice. A second signal stops at once.

Lightning registers its own SIGTERM handler for each ``fit``/``test``, which only marks the
signal and lets long work go on (the test analysis is one call of a hook); so
``InterruptCheckpoint`` puts this module's handler back when training starts, and outside
``fit`` Lightning's handler calls this one after its own.
"""

from __future__ import annotations

import logging
import os
import signal
import threading
from collections.abc import Callable
from types import FrameType
from typing import Any

log = logging.getLogger(__name__)

SIGNALS = (signal.SIGINT, signal.SIGTERM)


class Stopped(KeyboardInterrupt):
    """The command was asked to stop by ``signum``."""

    def __init__(self, signum: int) -> None:
        self.signum = signum
        super().__init__(signal.Signals(signum).name)


def preemption_signal() -> int | None:
    """The signal a cluster job gets before it is preempted or reaches its time limit, when
    it runs under submitit (Hydra's SLURM launcher): SIGUSR2 unless
    ``SUBMITIT_PREEMPT_SIGNAL`` names another. Submitit's handler for it requeues the job."""
    if not os.environ.get("SUBMITIT_EXECUTOR"):
        return None
    return getattr(signal, "SIG" + os.environ.get("SUBMITIT_PREEMPT_SIGNAL", "USR2"), None)


def stop_signals() -> tuple[int, ...]:
    """The signals that stop a training run at its next step."""
    preempt = preemption_signal()
    return (*SIGNALS, preempt) if preempt is not None else SIGNALS


class _State:
    """What the process has been asked: the signal received (None: none yet), whether a
    training loop will stop at its next step (``deferring``) rather than at once, and the
    handler that requeues a preempted cluster job (submitit's), once training has saved."""

    def __init__(self) -> None:
        self.received: int | None = None
        self.deferring = False
        self.requeue: Callable[..., Any] | None = None


state = _State()


def handle(signum: int, frame: FrameType | None) -> None:
    """The handler for every signal in ``SIGNALS``."""
    first = state.received is None
    state.received = signum
    name = signal.Signals(signum).name
    if state.deferring and first:
        log.warning("%s: stopping at the next training step (again: stop now)", name)
        return
    raise Stopped(signum)


def install() -> None:
    """This module's handler for SIGINT and SIGTERM (from the main thread only: Python lets
    no other set one), and a fresh state: each command, and each test, starts unasked."""
    state.received, state.deferring = None, False
    if threading.current_thread() is threading.main_thread():
        for signum in SIGNALS:
            signal.signal(signum, handle)


def requeue() -> None:
    """For a job preempted under submitit, once its checkpoint is saved: hand over to
    submitit's handler, which requeues the job (it resumes in its own directory,
    ``reuse.job``) and exits."""
    handler = state.requeue
    if state.received is not None and state.received == preemption_signal() and callable(handler):
        handler(state.received, None)


def exit_code(signum: int | None) -> int:
    """The shell's convention: 128 + the signal's number (130 for Ctrl-C, 143 for SIGTERM)."""
    return 128 + (signum or signal.SIGINT)


def name(signum: int | None) -> str:
    """``SIGTERM``, ``SIGINT``: how records and messages name the signal."""
    return signal.Signals(signum or signal.SIGINT).name

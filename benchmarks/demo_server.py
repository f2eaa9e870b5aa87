"""The real demo server in a process of its own, and the browser that opens it: shared by the
browser tests (tests/test_demo.py) and ``benchmarks/demo_timing.py``, so that what they check
and what they time is what a user gets from ``python -m seqnets.demo``, started and stopped
the same way in both. Test and timing support: it lives outside the package."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

CHROMIUM = os.environ.get("SEQNETS_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
# Headless without a GPU, and nothing fetched from outside this machine.
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
START_TIMEOUT_S = 120  # imports, loading the networks and Gradio's start, on a loaded machine
# Gradio's shutdown takes a second or two; a loaded machine may take far longer, and only a
# server that never stops should fail.
STOP_TIMEOUT_S = 120


def free_port() -> int:
    """A localhost port nobody listens on now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def demo_server(
    *args: str, cwd: str | Path = ".", env: dict[str, str] | None = None
) -> Iterator[str]:
    """The page's address while ``python -m seqnets.demo <args>`` serves it on a free
    localhost port; stopped with Ctrl-C (SIGINT) on leaving, as a user stops it. Raises
    RuntimeError with what it printed if it does not start, and if it does not stop on
    Ctrl-C (after killing it)."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "seqnets.demo", f"port={free_port()}", *args],
        cwd=cwd,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    assert proc.stdout is not None
    said: list[str] = []
    try:
        url, start = None, time.monotonic()
        while url is None and time.monotonic() - start < START_TIMEOUT_S:
            line = proc.stdout.readline()
            if not line and proc.poll() is not None:
                break
            said.append(line)
            if "serving on " in line:
                url = line.split("serving on ")[1].split()[0]
        if url is None:
            raise RuntimeError("the demo did not start:\n" + "".join(said))
        # Keep reading what it prints: a full pipe would block the server.
        threading.Thread(target=lambda: said.extend(proc.stdout), daemon=True).start()
        yield url
    except BaseException:
        _stop(proc, check=False)  # the error that brought us here is the one to report
        raise
    _stop(proc, check=True)


def _stop(proc: subprocess.Popen, check: bool) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGINT)
    try:
        proc.wait(timeout=STOP_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        if check:
            raise RuntimeError("the demo did not stop on Ctrl-C") from None

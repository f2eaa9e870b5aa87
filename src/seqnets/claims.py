"""Claims: the right to train one run (``seqnets.reuse`` takes one before it looks for it).

While a job trains, it holds a claim: ``<runs_dir>/claims/<identity>.lock``, naming its
process, host and run directory, created atomically (a complete file hard-linked into place:
atomic on local disks and NFS alike). A job that finds its run claimed waits for the claim to
go, then reads the result, so two sweeps or reports on the same ``outputs/`` never train one
run twice. A claim is stale, and taken over, when its process is dead (same host) or when its
heartbeat (the file's mtime, touched every ``heartbeat_s``) is older than ``stale_after_s``
(another host: a SLURM node whose job hit its time limit).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import socket
import threading
import time
import uuid
from pathlib import Path
from typing import Any

from omegaconf import DictConfig

log = logging.getLogger(__name__)
CLAIMS = "claims"  # below a runs directory: one lock file per run being trained

_held: set[str] = set()  # tokens of the claims this process holds


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process
        return True
    return True


def _read_holder(path: Path) -> dict[str, Any] | None:
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        return None
    except ValueError:  # never half-written (linked complete), but a foreign file: a holder
        return {}


class Claim:
    """The right to train one run, held while it trains (see the module's docstring)."""

    def __init__(self, directory: Path, ident: str, run_dir: Path, settings: DictConfig) -> None:
        self.path = Path(directory) / f"{ident}.lock"
        self.heartbeat_s = float(settings.heartbeat_s)
        self.stale_after_s = float(settings.stale_after_s)
        self.me = {
            "pid": os.getpid(),
            "host": socket.gethostname(),
            "started": time.strftime("%Y-%m-%d %H:%M:%S"),
            "run_dir": str(run_dir),
            "token": uuid.uuid4().hex,
        }
        self._stop = threading.Event()
        self._beat: threading.Thread | None = None

    def take(self) -> dict[str, Any] | None:
        """Take the claim: None when taken, else the live holder's record."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        while True:
            if self._create():
                _held.add(self.me["token"])
                self._beat = threading.Thread(target=self._heartbeat, daemon=True)
                self._beat.start()
                return None
            holder = _read_holder(self.path)
            if holder is None:  # released between our two looks
                continue
            if not self.is_stale(holder):
                return holder
            self._remove_stale(holder)

    def _create(self) -> bool:
        """The lock file, complete from its first instant: written aside, then hard-linked
        into place (the link fails if the file exists, atomically, NFS included)."""
        aside = self.path.with_name(f"{self.path.name}.{self.me['token']}")
        aside.write_text(json.dumps(self.me))
        try:
            os.link(aside, self.path)
            return True
        except FileExistsError:
            return False
        except OSError:  # no hard links on this filesystem: an exclusive create instead
            try:
                handle = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
            except FileExistsError:
                return False
            with os.fdopen(handle, "w") as file:
                file.write(json.dumps(self.me))
            return True
        finally:
            aside.unlink(missing_ok=True)

    def is_stale(self, holder: dict[str, Any]) -> bool:
        """Whether ``holder`` is gone: its process dead on this host, or (another host) its
        heartbeat older than ``stale_after_s``."""
        if holder.get("host") == self.me["host"] and isinstance(holder.get("pid"), int):
            if holder["pid"] == self.me["pid"]:  # this process: held by a job still running?
                return holder.get("token") not in _held
            return not _alive(holder["pid"])
        try:
            age = time.time() - self.path.stat().st_mtime
        except FileNotFoundError:
            return False  # released: the next look finds it free
        return age > self.stale_after_s

    def _remove_stale(self, holder: dict[str, Any]) -> None:
        """Move the stale file aside and delete it, unless what was moved is not the claim
        judged stale (another process took it over meanwhile): that one is put back."""
        aside = self.path.with_name(f"{self.path.name}.{self.me['token']}.stale")
        try:
            os.rename(self.path, aside)
        except FileNotFoundError:
            return
        if _read_holder(aside) != holder:
            with contextlib.suppress(FileExistsError):
                os.link(aside, self.path)
        else:
            log.warning("taking over the stale claim %s (%s)", self.path, describe(holder))
        aside.unlink(missing_ok=True)

    def _heartbeat(self) -> None:
        while not self._stop.wait(self.heartbeat_s):
            try:
                os.utime(self.path)
            except OSError:
                return

    def release(self) -> None:
        """Give the claim back (only if the file is still ours)."""
        self._stop.set()
        _held.discard(self.me["token"])
        if (_read_holder(self.path) or {}).get("token") == self.me["token"]:
            self.path.unlink(missing_ok=True)


def describe(holder: dict[str, Any]) -> str:
    return (
        f"process {holder.get('pid', '?')} on {holder.get('host', '?')} since "
        f"{holder.get('started', '?')}, training {holder.get('run_dir', '?')}"
    )


def wait_while_held(path: Path, holder: dict[str, Any], claim: Claim, poll_s: float) -> None:
    """Until the claim file changes hands, goes, or its holder goes stale (a cheap look at one
    file every ``poll_s``; the runs are read again only after)."""
    while True:
        time.sleep(poll_s)
        now = _read_holder(path)
        if now != holder or claim.is_stale(holder):
            return

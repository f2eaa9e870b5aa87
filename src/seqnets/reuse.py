"""A run is trained once and reused after: what makes two runs the same, finding a finished
one, resuming one that was killed, and a sweep job that does whichever applies.

A run's identity is its resolved config with everything that does not change what it
computes taken out (its own directory, the data directory, threads, the progress bar: see
``records.VOLATILE``), hashed. Two users of it, one implementation:

- every job of ``python -m seqnets.train -m ... sweep.resume=true`` (``job``, called by the
  entry point whichever launcher ran it: in process, joblib workers, SLURM nodes) reuses a
  finished run with its identity under ``sweep.runs_dir``, resumes a killed or interrupted
  one from its newest readable checkpoint, or trains it; re-running a sweep's command
  finishes what is missing;
- the report (``report/plan.py``) plans its runs by identity, finds them with ``index``, and
  trains the missing ones as such sweeps.

A job holds a claim while it trains (``seqnets.claims``), so two sweeps or reports on the
same ``outputs/`` never train one run twice.

A reused job's own directory gets a ``metrics.json`` of ``status: reused`` naming the run it
reused (``records.read_run`` follows it); the reused run's files are only read, never touched.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import sys
from collections import Counter, defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any

from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf, open_dict

from seqnets import records, signals
from seqnets.claims import CLAIMS, Claim, describe, wait_while_held
from seqnets.errors import ConfigError, check_bool, check_choice, check_real

log = logging.getLogger(__name__)

RUN = "<run>"  # a run's own directory, in a normalised config
DATA = "<data>"  # the data directory, in a normalised config
ROOTS = ("runs", "multirun")  # where runs are, below a runs directory (single runs, sweeps)
# Records that are results: reused as they are (failed and diverged ones unless retrained).
RESULTS = (records.COMPLETED, records.DIVERGED, records.FAILED)
RETRAINABLE = (records.FAILED, records.DIVERGED)
# Records of runs that stopped before their end: resumed from their newest checkpoint.
RESUMABLE = (records.UNFINISHED, records.INTERRUPTED, records.UNREADABLE)
# What a sweep job did (the sweep's summary counts them).
REUSED, RESUMED, TRAINED = "reused", "resumed", "trained"
CHECKPOINTS = "checkpoints"


# --- identity -------------------------------------------------------------------------------


def normalized(config: dict[str, Any], output_dir: str, data_dir: str) -> dict[str, Any]:
    """``config`` without what does not change a run's result, its own paths replaced by
    placeholders (a run's config holds them resolved, e.g. in the checkpoint directory)."""
    config = records.reanchor(records.reanchor(config, output_dir, RUN), data_dir, DATA)
    config = records.current_targets(config)
    for keys in (key.split(".") for key in records.VOLATILE):
        node = config
        for key in keys[:-1]:
            node = node.get(key, {}) if isinstance(node, dict) else {}
        if isinstance(node, dict):
            node.pop(keys[-1], None)
    return config


def identity(config: dict[str, Any]) -> str:
    """A run's identity: a hash of its resolved config's paths-free, volatile-free content."""
    paths = config.get("paths") or {}
    content = normalized(config, paths.get("output_dir", ""), paths.get("data_dir", ""))
    return hashlib.sha256(json.dumps(content, sort_keys=True).encode()).hexdigest()[:16]


# --- finding runs ---------------------------------------------------------------------------


def roots(runs_dir: str | Path) -> list[Path]:
    """The folders below ``runs_dir`` that hold runs (``outputs/runs``, ``outputs/multirun``)."""
    return [Path(runs_dir) / name for name in ROOTS]


def index(
    where: list[Path], slim: bool = False
) -> tuple[dict[str, list[dict[str, Any]]], list[dict[str, Any]]]:
    """Every run below ``where`` by identity, and every run read. A sweep job that reused a
    run counts as that run (once). An asking job's own new directory is among them, neither
    a result nor a checkpoint to resume from; unless the sweep writes where an earlier one
    did (a fixed ``hydra.sweep.dir``): then what is there is reused or resumed in place.

    ``slim``: only what a sweep job decides by (``essentials``), remembered between its jobs."""
    seen: dict[str, tuple[str | None, dict[str, Any]]] = {}
    for root in where:
        for run_dir in records.run_dirs(root):
            if slim:
                record = essentials(run_dir)
                ident = record["identity"]
            else:
                record = records.read_run(run_dir)
                ident = identity(record["config"]) if record.get("config") else None
            key = str(Path(record["dir"]).resolve())
            if key not in seen or not record.get("reused_in"):  # as found, not as pointed to
                seen[key] = (ident, record)
    by_identity: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for ident, record in seen.values():
        if ident is not None:
            by_identity[ident].append(record)
    return by_identity, [record for _, record in seen.values()]


_essentials: dict[str, tuple[tuple[int, int, int], dict[str, Any]]] = {}
ESSENTIALS = ("status", "dir", "best_val", "reused_in")


def essentials(run_dir: Path) -> dict[str, Any]:
    """A run's status, directory, best validation value and identity: what a sweep job
    decides by. Every job of a sweep looks at every run under ``outputs/`` (a record holds
    every step's loss: ~1 s per 100 runs to read), so a process remembers them while a run's
    record file is unchanged (a run without one, maybe still running, is read every time)."""
    try:
        stat = (run_dir / records.METRICS).stat()
        stamp = (stat.st_ino, stat.st_mtime_ns, stat.st_size)
    except FileNotFoundError:
        stamp = None
    known = _essentials.get(str(run_dir))
    if stamp is not None and known is not None and known[0] == stamp:
        return known[1]
    record = records.read_run(run_dir)
    found = {key: record.get(key) for key in ESSENTIALS}
    found["identity"] = identity(record["config"]) if record.get("config") else None
    if stamp is not None:
        _essentials[str(run_dir)] = (stamp, found)
    return found


def newest(candidates: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The most recently written of ``candidates`` (by directory mtime), or None."""
    existing = [r for r in candidates if Path(r["dir"]).exists()]
    return max(existing, key=lambda r: Path(r["dir"]).stat().st_mtime, default=None)


def result(candidates: list[dict[str, Any]], retrain: tuple[str, ...] = ()) -> dict | None:
    """The run to reuse: the newest completed one, else the newest other result (diverged,
    failed) whose status is not in ``retrain``; None when the run must be (re)trained."""
    done = [r for r in candidates if r["status"] == records.COMPLETED]
    others = [r for r in candidates if r["status"] in RESULTS and r["status"] not in retrain]
    return newest(done) or newest(others)


def resume_point(candidates: list[dict[str, Any]]) -> Path | None:
    """The newest readable checkpoint of a run that stopped before its end (killed, Ctrl-C,
    a time limit, an unreadable record), to continue it from; None if there is none.

    A SIGKILL can land while a checkpoint is written, so each is read before it is trusted,
    newest first (an older one is an earlier epoch end of the same run: still exact)."""
    from seqnets.checkpoints import CheckpointError, load_checkpoint

    files = [
        file
        for run in candidates
        if run["status"] in RESUMABLE
        for file in (Path(run["dir"]) / CHECKPOINTS).glob("*.ckpt")
    ]
    for file in sorted(files, key=lambda f: f.stat().st_mtime, reverse=True):
        try:
            load_checkpoint(file)
            return file
        except CheckpointError as error:
            log.warning("not resuming from %s: %s", file, error)
    return None


# What only a run that started training leaves in its directory (Hydra writes ``.hydra/`` and
# the log of any command it starts there, refused ones too).
TRAINED_ENTRIES = (records.METRICS, CHECKPOINTS, "tensorboard", "csv", "figures")


def occupant(run_dir: Path, ident: str, reuse: bool) -> str | None:
    """Why a job must not run in ``run_dir``, or None when it may. A fixed ``hydra.run.dir``
    or ``hydra.sweep.dir`` can point a job at a directory that already holds a run: the job
    may continue it (same identity, stopped before its end: a requeued cluster job) or, with
    ``sweep.resume``, reuse it (same identity, a result); anything else would write one
    run's files over another's."""
    if not any((run_dir / entry).exists() for entry in TRAINED_ENTRIES):
        return None
    found = essentials(run_dir)
    same = found["identity"] == ident
    if same and (found["status"] in RESUMABLE or (reuse and found["status"] in RESULTS)):
        return None
    what = "this same run" if same else "another run"
    hint = " or add sweep.resume=true to reuse it" if same and found["status"] in RESULTS else ""
    return (
        f"{run_dir} already holds {what} ({found['status']}), and a run never writes over "
        f"another's files: choose a new hydra.run.dir / hydra.sweep.dir{hint}"
    )


def job_identity(config: DictConfig, output_dir: Path) -> str:
    """The identity of the run a job composed as ``config`` (Hydra's node included) would
    train in ``output_dir``: known before Hydra writes anything there."""
    config = config.copy()
    with open_dict(config):
        config.hydra.runtime.output_dir = str(output_dir.resolve())
        HydraConfig.instance().set_config(config)  # what ${hydra:runtime.output_dir} reads
        del config.hydra
    return identity(OmegaConf.to_container(config, resolve=True))


# --- a sweep's job --------------------------------------------------------------------------


def check_settings(cfg: DictConfig) -> None:
    """The ``sweep`` settings' values (a ConfigError names a bad one)."""
    settings = cfg.get("sweep")
    if settings is None:
        return
    check_bool("sweep.resume", settings.resume)
    retrain = settings.retrain
    if not OmegaConf.is_list(retrain):
        raise ConfigError(f"sweep.retrain={retrain!r} is not allowed: a list, e.g. [failed]")
    for status in retrain:
        check_choice("sweep.retrain", status, RETRAINABLE)
    for key in ("poll_s", "heartbeat_s"):
        check_real(f"sweep.{key}", settings[key], 0.0, low_open=True)
    check_real("sweep.stale_after_s", settings.stale_after_s, float(settings.heartbeat_s))
    if not str(settings.runs_dir):
        raise ConfigError("sweep.runs_dir='' is not allowed: a folder, e.g. outputs")
    strategy = str(cfg.trainer.get("strategy", ""))
    if settings.resume and strategy.startswith("ddp"):
        raise ConfigError(
            f"sweep.resume=true is not allowed with trainer.strategy={strategy!r}: each DDP "
            f"process would claim the run and wait for the others"
        )


def job(cfg: DictConfig, train: Callable[..., float | None]) -> float | None:
    """One job, run as ``train(cfg)``, or with ``sweep.resume`` (and no ``ckpt_path`` of the
    user's): the run reused, resumed (``train(cfg, continuing=True)`` with ``cfg.ckpt_path``
    its checkpoint) or trained, under a claim. Returns what ``train`` returns (for a reused
    run: its best validation value, for sweepers)."""
    run_dir = Path(cfg.paths.output_dir)
    if not cfg.get("ckpt_path") and (here := resume_point([essentials(run_dir)])) is not None:
        # A job started again in its own run directory: a cluster requeues a preempted job
        # with the same arguments (signals.requeue). A new run never finds anything there
        # (run directories are named to the microsecond), so this holds with or without
        # sweep.resume.
        log.warning("this job stopped here before: resuming from %s", here)
        cfg.ckpt_path = str(here.resolve())
        return train(cfg, continuing=True)
    settings = cfg.get("sweep")
    if settings is None or not settings.resume or cfg.get("ckpt_path"):
        return train(cfg)
    ident = identity(OmegaConf.to_container(cfg, resolve=True))
    claim = Claim(Path(settings.runs_dir) / CLAIMS, ident, run_dir, settings)
    # Claimed before looking: what is found then stays so until the claim is given back.
    while (holder := claim.take()) is not None:
        log.info("waiting: this run is claimed by %s", describe(holder))
        try:
            wait_while_held(claim.path, holder, claim, float(settings.poll_s))
        except KeyboardInterrupt:  # nothing started: leave nothing
            records.discard_run_dir(run_dir)
            sys.stderr.write("seqnets: interrupted while waiting for a claimed run\n")
            sys.exit(signals.exit_code(signals.state.received))
    # The sweep's own directory too: a fixed hydra.sweep.dir (or run.dir) run again.
    here = run_dir.parent if HydraConfig.get().mode == RunMode.MULTIRUN else run_dir
    try:
        candidates = index([*roots(settings.runs_dir), here], slim=True)[0].get(ident, [])
        found = result(candidates, tuple(settings.retrain))
        if found is not None:
            return record_reuse(run_dir, found, ident)
        checkpoint = resume_point(candidates)
        if checkpoint is None:
            return train(cfg)
        log.info("resuming from %s", checkpoint)
        cfg.ckpt_path = str(checkpoint.resolve())
        return train(cfg, continuing=True)
    finally:
        claim.release()


def record_reuse(run_dir: Path, found: dict[str, Any], ident: str) -> float | None:
    """Record in this job's directory which run it reused, and return that run's best
    validation value (finite, or None: what sweepers read)."""
    source = str(Path(found["dir"]).resolve())  # readable from any working directory
    if source != str(run_dir.resolve()):  # the job's own directory already holds it: as is
        records.write_metrics(
            run_dir, {"status": records.REUSED, "reused_from": source, "identity": ident}
        )
    log.info("reused %s (%s)", found["dir"], found["status"])
    value = found.get("best_val")
    return value if isinstance(value, float) and math.isfinite(value) else None


def how(job_record: dict[str, Any], since: float | None = None) -> str | None:
    """What a sweep job did, from its own record (``read_run(..., follow=False)``): reused,
    resumed or trained; None for a job that did not run (invalid, or no record yet). A record
    written before ``since`` (the sweep's start) was found in the job's own directory and
    reused as it is (a fixed ``hydra.sweep.dir`` run again)."""
    if job_record["status"] == records.REUSED or _written_before(job_record, since):
        return REUSED
    if job_record.get("resumed_from"):
        return RESUMED
    if job_record["status"] in (*RESULTS, records.INTERRUPTED):
        return TRAINED
    return None


def _written_before(job_record: dict[str, Any], since: float | None) -> bool:
    path = Path(job_record["dir"]) / records.METRICS
    return since is not None and path.exists() and path.stat().st_mtime < since


def count_outcomes(job_dirs: list[Path], since: float | None = None) -> Counter:
    """How many of these sweep jobs were reused, resumed, trained (``since``: see ``how``)."""
    records_ = (records.read_run(d, follow=False) for d in job_dirs)
    return Counter(h for record in records_ if (h := how(record, since)))

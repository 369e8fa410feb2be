"""Overheads of an engine, measured once per machine (or cluster) shape and cached.

Never guessed: each figure is timed on the real engine with no-op work.

- ``start_seconds``: starting the process pool, all workers warm (0 for a running cluster);
- ``task_seconds``: one task's cost as the caller sees it with every worker busy
  (submit, pickle, pipe or network, result);
- ``item_seconds``: the extra cost of one more small item in a task;
- ``bytes_per_second``: pickling and moving payload bytes to a worker and back;
- ``thread_task_seconds``: one task through this process's thread pool.

Cached as JSON in ``<user cache dir>/overheads/<fingerprint id>.json``.

>>> o = Overheads(0.1, 1e-4, 1e-6, 1e9, 2e-5, "forkserver", 0.0)
>>> o.task_seconds
0.0001
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import os
import tempfile
import threading
import time
from dataclasses import dataclass

from .. import config
from ..engines.chunks import identity

logger = logging.getLogger("amorsize_dask")

# Calibration sizes: enough tasks that the per-task figure is stable to ~10% on a
# 2-core machine, small enough that calibrating takes well under a second, once.
_CALIBRATION_TASKS = 300
_CALIBRATION_ITEMS = 20_000
_CALIBRATION_PAYLOAD_BYTES = 4 << 20
_CALIBRATION_PAYLOADS = 4
# A cached figures file is a few hundred bytes; anything larger is not ours.
_MAX_CACHE_BYTES = 4096
# Re-measure when the cached figures are older than this.
_MAX_AGE_SECONDS = 30 * 24 * 3600


@dataclass(frozen=True)
class Overheads:
    start_seconds: float
    task_seconds: float
    item_seconds: float
    bytes_per_second: float
    thread_task_seconds: float
    start_method: str  # process start method, or "dask" for a cluster
    measured_at: float


_memo: dict[str, Overheads] = {}
_measure_lock = threading.Lock()


def cache_path(fingerprint_id: str):
    return config.user_cache_dir() / "overheads" / f"{fingerprint_id}.json"


def cached(fingerprint_id: str) -> Overheads | None:
    """The cached figures for this shape, or None if not measured yet (or stale)."""
    if fingerprint_id in _memo:
        return _memo[fingerprint_id]
    try:
        with open(cache_path(fingerprint_id), "rb") as f:
            text = f.read(_MAX_CACHE_BYTES + 1)
        if len(text) > _MAX_CACHE_BYTES:
            return None
        data = json.loads(text)
        found = Overheads(**{k.name: data[k.name] for k in dataclasses.fields(Overheads)})
        numbers = [v for v in dataclasses.astuple(found) if isinstance(v, float)]
        if not all(math.isfinite(v) and v >= 0 for v in numbers) or found.bytes_per_second <= 0:
            return None
        if time.time() - found.measured_at > _MAX_AGE_SECONDS:
            return None
    except (OSError, ValueError, KeyError, TypeError, RecursionError):  # corrupt or hostile: re-measure
        return None
    _memo[fingerprint_id] = found
    return found


def measure_local(process_engine, thread_engine, n_workers: int) -> Overheads:
    """Time the local engines on no-op work; starts the process pool (which stays up).

    A pool already running (another call may be using it) is left alone: its start was
    measured when it started (``process_engine.last_start_seconds``).
    """
    n_workers = max(1, n_workers)
    process_engine.pool(n_workers)

    def run(items, chunksize):
        process_engine.run(identity, items, n_workers=n_workers, chunksize=chunksize, first_index=0)

    task, item, bandwidth = _time_engine(run, n_workers)
    t0 = time.perf_counter()
    thread_engine.run(identity, list(range(_CALIBRATION_TASKS)), n_workers=2, chunksize=1, first_index=0)
    thread_task = (time.perf_counter() - t0) / _CALIBRATION_TASKS
    return Overheads(process_engine.last_start_seconds, task, item, bandwidth, thread_task,
                     process_engine.start_method, time.time())


def measure_cluster(dask_engine, n_threads: int) -> Overheads:
    """Time a running cluster on no-op tasks (the cluster's start is not ours to pay)."""

    def run(items, chunksize):
        dask_engine.run(identity, items, n_workers=n_threads, chunksize=chunksize, first_index=0)

    task, item, bandwidth = _time_engine(run, n_threads)
    return Overheads(0.0, task, item, bandwidth, 0.0, "dask", time.time())


def _time_engine(run, n_workers: int) -> tuple[float, float, float]:
    """(seconds per task, per extra item, bytes per second) of an engine's ``run``."""

    def timed(items, chunksize):
        t0 = time.perf_counter()
        run(items, chunksize)
        return time.perf_counter() - t0

    timed(list(range(4 * n_workers)), 1)  # warm: functions cached, connections open
    per_task = timed(list(range(_CALIBRATION_TASKS)), 1) / _CALIBRATION_TASKS
    n_chunks = 2 * n_workers
    items_elapsed = timed(list(range(_CALIBRATION_ITEMS)), _CALIBRATION_ITEMS // n_chunks)
    per_item = max(0.0, items_elapsed - n_chunks * per_task) / _CALIBRATION_ITEMS
    payloads = [bytes(_CALIBRATION_PAYLOAD_BYTES) for _ in range(_CALIBRATION_PAYLOADS)]
    payload_elapsed = timed(payloads, 1)
    moved = 2 * _CALIBRATION_PAYLOAD_BYTES * _CALIBRATION_PAYLOADS
    bandwidth = moved / max(payload_elapsed - _CALIBRATION_PAYLOADS * per_task, 1e-6)
    return per_task, per_item, bandwidth


def get(fingerprint_id: str, measure) -> Overheads:
    """Cached figures for ``fingerprint_id``, or ``measure()`` them now and cache them.

    One measurement at a time in a process: calls from other threads wait for it and
    use its figures (measuring twice at once would time each other).
    """
    found = cached(fingerprint_id)
    if found is not None:
        return found
    with _measure_lock:
        found = cached(fingerprint_id)  # measured by another thread while this one waited
        if found is not None:
            return found
        found = measure()
        logger.info("measured overheads of %s: %s", fingerprint_id, found)
        _memo[fingerprint_id] = found
        _save(fingerprint_id, found)
    return found


def _save(fingerprint_id: str, found: Overheads) -> None:
    path = cache_path(fingerprint_id)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".overheads-", suffix=".tmp")
        with os.fdopen(fd, "w") as f:
            json.dump(dataclasses.asdict(found), f)
        os.replace(tmp, path)
    except OSError as exc:
        logger.warning("could not cache overheads in %s: %s", path.parent, exc)

"""Machine overheads, measured once per machine shape and cached (never guessed).

- ``process_start_seconds``: starting the process pool (all workers, warm);
- ``process_task_seconds``: one task's round trip through the pool (submit, pickle,
  pipe, result), as the parent sees it with every worker busy;
- ``process_item_seconds``: the extra cost of one more small item in a task;
- ``process_bytes_per_second``: pickling and moving payload bytes to a worker and back;
- ``thread_task_seconds``: one task through the thread pool.

Cached as JSON in ``<user cache dir>/overheads/<fingerprint>.json``.

>>> o = Overheads(0.1, 1e-4, 1e-6, 1e9, 2e-5, "forkserver", 0.0)
>>> o.process_task_seconds
0.0001
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import os
import tempfile
import time
from dataclasses import dataclass

from . import config
from .engines.chunks import identity
from .fingerprint import local_fingerprint

logger = logging.getLogger("amorsize_dask")

# Calibration workload sizes: enough tasks that the per-task figure is stable to ~10%
# on a 2-core machine, small enough that calibrating takes ~0.3 s once per machine.
_CALIBRATION_TASKS = 300
_CALIBRATION_ITEMS = 20_000
_CALIBRATION_PAYLOAD_BYTES = 4 << 20
_CALIBRATION_PAYLOADS = 4
# Re-measure when the cached figures are older than this.
_MAX_AGE_SECONDS = 30 * 24 * 3600


@dataclass(frozen=True)
class Overheads:
    process_start_seconds: float
    process_task_seconds: float
    process_item_seconds: float
    process_bytes_per_second: float
    thread_task_seconds: float
    start_method: str
    measured_at: float


_memo: dict[str, Overheads] = {}


def cache_path(fingerprint_id: str):
    return config.user_cache_dir() / "overheads" / f"{fingerprint_id}.json"


def cached_overheads(start_method: str) -> Overheads | None:
    """The cached figures for this machine shape, or None if not measured yet."""
    fp = local_fingerprint(start_method).id
    if fp in _memo:
        return _memo[fp]
    try:
        with open(cache_path(fp)) as f:
            data = json.load(f)
        found = Overheads(**{k.name: data[k.name] for k in dataclasses.fields(Overheads)})
        if not all(
            math.isfinite(v) and v >= 0 for v in dataclasses.astuple(found) if isinstance(v, float)
        ):
            return None
        if time.time() - found.measured_at > _MAX_AGE_SECONDS:
            return None
    except (OSError, ValueError, KeyError, TypeError):
        return None
    _memo[fp] = found
    return found


def get_overheads(process_engine, thread_engine, n_workers: int) -> Overheads:
    """Cached figures, or measure them now with the real engines (and cache them)."""
    found = cached_overheads(process_engine.start_method)
    if found is not None:
        return found
    measured = measure(process_engine, thread_engine, n_workers)
    _memo[local_fingerprint(process_engine.start_method).id] = measured
    _save(measured)
    return measured


def measure(process_engine, thread_engine, n_workers: int) -> Overheads:
    """Time the engines on no-op work; starts the process pool (which stays up)."""
    n_workers = max(1, n_workers)
    if process_engine.is_warm(n_workers):
        process_engine.shutdown()
    process_engine.pool(n_workers)
    start = process_engine.last_start_seconds

    def timed(engine, items, chunksize, workers):
        t0 = time.perf_counter()
        engine.run(identity, items, n_workers=workers, chunksize=chunksize, first_index=0)
        return time.perf_counter() - t0

    timed(process_engine, list(range(4 * n_workers)), 1, n_workers)  # warm the function cache
    per_task = timed(process_engine, list(range(_CALIBRATION_TASKS)), 1, n_workers) / _CALIBRATION_TASKS
    n_chunks = 2 * n_workers
    items_elapsed = timed(
        process_engine, list(range(_CALIBRATION_ITEMS)), _CALIBRATION_ITEMS // n_chunks, n_workers
    )
    per_item = max(0.0, items_elapsed - n_chunks * per_task) / _CALIBRATION_ITEMS
    payloads = [bytes(_CALIBRATION_PAYLOAD_BYTES) for _ in range(_CALIBRATION_PAYLOADS)]
    payload_elapsed = timed(process_engine, payloads, 1, n_workers)
    moved = 2 * _CALIBRATION_PAYLOAD_BYTES * _CALIBRATION_PAYLOADS
    bandwidth = moved / max(payload_elapsed - _CALIBRATION_PAYLOADS * per_task, 1e-6)
    thread_per_task = timed(thread_engine, list(range(_CALIBRATION_TASKS)), 1, 2) / _CALIBRATION_TASKS
    found = Overheads(
        process_start_seconds=start,
        process_task_seconds=per_task,
        process_item_seconds=per_item,
        process_bytes_per_second=bandwidth,
        thread_task_seconds=thread_per_task,
        start_method=process_engine.start_method,
        measured_at=time.time(),
    )
    logger.info("measured machine overheads: %s", found)
    return found


def _save(found: Overheads) -> None:
    path = cache_path(local_fingerprint(found.start_method).id)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".overheads-", suffix=".tmp")
        with os.fdopen(fd, "w") as f:
            json.dump(dataclasses.asdict(found), f)
        os.replace(tmp, path)
    except OSError as exc:
        logger.warning("could not cache machine overheads in %s: %s", path.parent, exc)

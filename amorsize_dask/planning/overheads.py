"""Overheads of an engine, measured once per machine (or cluster) shape and cached.

Never guessed: each figure is timed on the real engine with no-op work.

- ``start_seconds``: starting the process pool, all workers warm (0 for a running cluster);
- ``task_seconds``: one task's cost as the caller sees it with every worker busy
  (submit, pickle, pipe or network, result);
- ``item_seconds``: the extra cost of one more small item in a task;
- ``bytes_per_second``: pickling and moving payload bytes to a worker and back;
- ``thread_task_seconds``: one task through this process's thread pool.

Cached as JSON in ``<user cache dir>/overheads/<fingerprint id>.json`` for 30 days, or
for an hour when something else competed with the measurement (``provisional``: see
:mod:`.contention`): figures timed on a busy machine describe that moment, not the machine.

>>> o = Overheads(start_seconds=0.1, task_seconds=1e-4, item_seconds=1e-6, bytes_per_second=1e9,
...               thread_task_seconds=2e-5, start_method="forkserver", measured_at=0.0)
>>> o.task_seconds
0.0001
"""

from __future__ import annotations

import atexit
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
from .contention import Contention

__all__ = ["Overheads", "ESTIMATED_START_SECONDS", "ESTIMATED_TASK_SECONDS", "ESTIMATED_ITEM_SECONDS",
           "ESTIMATED_BYTES_PER_SECOND", "ESTIMATED_THREAD_TASK_SECONDS", "PROVISIONAL_MAX_AGE_SECONDS", "cache_path",
           "cached", "measure_local", "measure_cluster", "get", "estimate", "for_start_method", "measure_later",
           "run_later", "join_background"]

logger = logging.getLogger("amorsize_dask")

# Calibration sizes: enough tasks that the per-task figure is stable to ~10% on a
# 2-core machine, small enough that calibrating takes well under a second, once.
_CALIBRATION_TASKS = 300
_CALIBRATION_ITEMS = 20_000
_CALIBRATION_PAYLOAD_BYTES = 4 << 20
_CALIBRATION_PAYLOADS = 4
# Task and item figures are the best of this many timings: one timing taken while other
# work loaded the machine was kept for 30 days (an item overhead of 5.6 us instead of
# ~0.3 us made every process plan of bench family tiny 7x too dear; session 4).
_CALIBRATION_REPEAT = 3
# At exit, seconds to wait for a background measurement's current step (each is one
# engine run of calibration tasks: ~0.1 s on a quiet 2-core machine).
_EXIT_WAIT_SECONDS = 5.0
# A cached figures file is a few hundred bytes; anything larger is not ours.
_MAX_CACHE_BYTES = 4096
# Re-measure when the cached figures are older than this.
_MAX_AGE_SECONDS = 30 * 24 * 3600
# ... or than this, when they were measured while something else competed with the
# measurement: a busy spell (this project's test suite: ~70 s; a benchmark: minutes) is
# over by then, and measuring again costs 0.2-0.5 s in the background (session 6: 0.16-0.21
# s alone, 0.40-0.46 s beside 6 busy processes on 2 cores), at most once an hour.
PROVISIONAL_MAX_AGE_SECONDS = 3600


@dataclass(frozen=True, kw_only=True)
class Overheads:
    """An engine's measured overheads (see the module docstring); built by keyword only."""

    start_seconds: float
    task_seconds: float
    item_seconds: float
    bytes_per_second: float
    thread_task_seconds: float
    start_method: str  # process start method, or "dask" for a cluster
    measured_at: float
    estimated: bool = False  # True: :func:`estimate`'s figures, not measured on this machine yet
    provisional: bool = False  # True: measured while the machine was busy (kept for an hour)
    start_estimated: bool = False  # True: the pool start is another method's estimate (:func:`for_start_method`)


# Local figures for a machine not measured yet, so that calibrating is never on the
# critical path of a user's call: the plan uses these (and says so) while the measurement
# runs after the call, in the background (:func:`measure_later`). Measured on this project's
# 2-core development machine by ``amorsize-dask bench`` (its calibration line) and the
# first pool start of a fresh script with slim workers (97-117 ms, session 3), each
# rounded towards "parallel costs more" so that an estimate never invents a speedup.
ESTIMATED_START_SECONDS = 0.15
# A forked pool's start (2 workers), the first start line of ``amorsize-dask bench
# --fresh`` (median of 5 fresh scripts) on this machine: 14-17 ms in session 4, 15, 12
# and 13 ms in sessions 6-8, 9-10 ms in session 9; ~11.5 ms timed in a script after
# importing the package. Rounded up. At 20 ms, bench --fresh short-cpu's first call
# rated processes 1.03x serial and ran serially (~53 ms; ~44 ms on processes).
ESTIMATED_FORK_START_SECONDS = 0.015
ESTIMATED_TASK_SECONDS = 2e-4
ESTIMATED_ITEM_SECONDS = 3e-7
ESTIMATED_BYTES_PER_SECOND = 1.5e8
ESTIMATED_THREAD_TASK_SECONDS = 3e-5

_memo: dict[str, Overheads] = {}
_measure_lock = threading.Lock()
_later: dict[str, object] = {}  # fingerprint id -> measure(), to run after the current call
_later_lock = threading.Lock()
_background: list[threading.Thread] = []
_stopping = threading.Event()  # set at exit: a background measurement stops between its steps


class _Stopped(Exception):
    """The interpreter is exiting: a background measurement gives up (nothing is cached)."""


def cache_path(fingerprint_id: str):
    return config.user_cache_dir() / "overheads" / f"{fingerprint_id}.json"


def cached(fingerprint_id: str) -> Overheads | None:
    """The cached figures for this shape, or None if not measured yet (or stale)."""
    if fingerprint_id in _memo:
        found = _memo[fingerprint_id]
        if _fresh(found):
            return found
        del _memo[fingerprint_id]  # a long-running process measures again too
        return None
    try:
        with open(cache_path(fingerprint_id), "rb") as f:
            text = f.read(_MAX_CACHE_BYTES + 1)
        if len(text) > _MAX_CACHE_BYTES:
            return None
        data = json.loads(text)
        # Every field but the start's mark, which only :func:`for_start_method` sets after
        # reading (a file without it was written before it existed).
        found = Overheads(**{k.name: data[k.name] for k in dataclasses.fields(Overheads)
                             if k.name != "start_estimated"})
        numbers = [v for v in dataclasses.astuple(found) if isinstance(v, float)]
        if not all(math.isfinite(v) and v >= 0 for v in numbers) or found.bytes_per_second <= 0:
            return None
        if not _fresh(found):
            return None
    except (OSError, ValueError, KeyError, TypeError, RecursionError):  # corrupt or hostile: re-measure
        return None
    _memo[fingerprint_id] = found
    return found


def _fresh(found: Overheads) -> bool:
    """Not older than its lifetime (an hour when ``provisional``, else 30 days)."""
    lifetime = PROVISIONAL_MAX_AGE_SECONDS if found.provisional else _MAX_AGE_SECONDS
    return time.time() - found.measured_at <= lifetime


def measure_local(process_engine, thread_engine, n_workers: int) -> Overheads:
    """Time the local engines on no-op work; starts the process pool (which stays up).

    A pool already running (another call may be using it) is left alone: its start was
    measured when it started (``process_engine.last_start_seconds``).
    """
    n_workers = max(1, n_workers)
    process_engine.pool(n_workers)

    def run(items, chunksize):
        process_engine.run(identity, items, n_workers=n_workers, chunksize=chunksize, first_index=0)

    with Contention() as contention:
        task, item, bandwidth = _time_engine(run, n_workers, contention)
        with contention.step():
            t0 = time.perf_counter()
            thread_engine.run(identity, list(range(_CALIBRATION_TASKS)), n_workers=2, chunksize=1, first_index=0)
            thread_task = (time.perf_counter() - t0) / _CALIBRATION_TASKS
    return Overheads(start_seconds=process_engine.last_start_seconds, task_seconds=task, item_seconds=item,
                     bytes_per_second=bandwidth, thread_task_seconds=thread_task,
                     start_method=process_engine.last_start_method or process_engine.start_method,
                     measured_at=time.time(), provisional=_busy(contention))


def measure_cluster(dask_engine, n_threads: int) -> Overheads:
    """Time a running cluster on no-op tasks (the cluster's start is not ours to pay)."""

    def run(items, chunksize):
        dask_engine.run(identity, items, n_workers=n_threads, chunksize=chunksize, first_index=0)

    with Contention() as contention:
        task, item, bandwidth = _time_engine(run, n_threads, contention)
    return Overheads(start_seconds=0.0, task_seconds=task, item_seconds=item, bytes_per_second=bandwidth,
                     thread_task_seconds=0.0, start_method="dask", measured_at=time.time(),
                     provisional=_busy(contention))


def _busy(contention: Contention) -> bool:
    busy = contention.busy
    if busy:
        logger.info("overheads measured while something else competed (%s): kept for %d s only",
                    contention.describe(), PROVISIONAL_MAX_AGE_SECONDS)
    return busy


def _time_engine(run, n_workers: int, contention: Contention) -> tuple[float, float, float]:
    """(seconds per task, per extra item, bytes per second) of an engine's ``run``, each
    run a step of ``contention``."""

    def timed(items, chunksize, repeat=1):
        best = math.inf
        for _ in range(repeat):
            if _stopping.is_set():
                raise _Stopped()
            with contention.step():
                t0 = time.perf_counter()
                run(items, chunksize)
                best = min(best, time.perf_counter() - t0)
        return best

    timed(list(range(4 * n_workers)), 1)  # warm: functions cached, connections open
    tasks = _CALIBRATION_TASKS // _CALIBRATION_REPEAT
    per_task = timed(list(range(tasks)), 1, _CALIBRATION_REPEAT) / tasks
    n_chunks = 2 * n_workers
    items_elapsed = timed(list(range(_CALIBRATION_ITEMS)), _CALIBRATION_ITEMS // n_chunks, _CALIBRATION_REPEAT)
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


def estimate(start_method: str) -> Overheads:
    """This machine's overheads before they are measured (see ``ESTIMATED_*``).

    >>> estimate("forkserver").estimated
    True
    """
    return Overheads(start_seconds=_estimated_start_seconds(start_method), task_seconds=ESTIMATED_TASK_SECONDS,
                     item_seconds=ESTIMATED_ITEM_SECONDS, bytes_per_second=ESTIMATED_BYTES_PER_SECOND,
                     thread_task_seconds=ESTIMATED_THREAD_TASK_SECONDS, start_method=start_method,
                     measured_at=time.time(), estimated=True)


def _estimated_start_seconds(start_method: str) -> float:
    return ESTIMATED_FORK_START_SECONDS if start_method == "fork" else ESTIMATED_START_SECONDS


def for_start_method(found: Overheads, start_method: str) -> Overheads:
    """``found`` with the pool start of ``start_method``: the figures were measured with
    the method the calibrating pool used (the background calibration runs on a thread,
    so it never forks); a pool started now with another is costed by that method's
    estimate, marked ``start_estimated``.

    >>> forked = dataclasses.replace(estimate("fork"), estimated=False)
    >>> other = for_start_method(forked, "forkserver")
    >>> other.start_seconds == ESTIMATED_START_SECONDS, other.start_estimated
    (True, True)
    >>> for_start_method(forked, "fork") is forked
    True
    """
    if found.start_method in (start_method, "dask"):
        return found
    return dataclasses.replace(found, start_seconds=_estimated_start_seconds(start_method),
                               start_method=start_method, start_estimated=True)


def measure_later(fingerprint_id: str, measure) -> None:
    """Measure (and cache) these overheads once the current call is done: :func:`run_later`."""
    with _later_lock:
        _later.setdefault(fingerprint_id, measure)


def run_later() -> threading.Thread | None:
    """Start the measurements :func:`measure_later` asked for, on a background thread.

    Called at the end of a ``map``: the measurement then competes with nothing of that
    call, and a process that exits first simply measures again next time.
    """
    with _later_lock:
        todo = list(_later.items())
        _later.clear()
    if not todo:
        return None

    def measure_all():
        for fingerprint_id, measure in todo:
            try:
                if not _stopping.is_set():
                    get(fingerprint_id, measure)
            except Exception as exc:  # never the user's problem: the next call estimates again
                logger.info("measuring overheads of %s in the background failed: %s", fingerprint_id, exc)

    thread = threading.Thread(target=measure_all, name="amorsize-calibrate", daemon=True)
    with _later_lock:
        if not _background:
            _stop_at_exit()
        _background[:] = [t for t in _background if t.is_alive()] + [thread]
    thread.start()
    return thread


def join_background(timeout: float | None = None) -> bool:
    """Wait for background measurements to finish; True when none is running."""
    for thread in list(_background):
        thread.join(timeout)
    return not any(t.is_alive() for t in _background)


def _stop_at_exit() -> None:
    """At exit a background measurement stops after its current step, before the process
    pool is stopped (a worker killed mid-result would leave the pool's reader waiting):
    registered after the pool's own exit hook, it runs first."""

    def stop():
        _stopping.set()
        join_background(_EXIT_WAIT_SECONDS)

    register = getattr(threading, "_register_atexit", None)
    try:
        if register is not None:
            register(stop)
    except RuntimeError:  # already shutting down
        pass
    atexit.register(stop)


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

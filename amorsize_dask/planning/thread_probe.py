"""Two threads on the next items: does the function release the GIL?

The probe's results are kept (its items are not computed again). It also bounds what one
item costs once warmed up: each thread times its own items, and contention only slows
them, so the faster thread's seconds per item are at most the item's own. A first item
inflated by a fresh process's warm-up (bench --fresh big-inputs: 17.6 ms for np.median of
2 MB, 3.4 ms after) is the sample's only serial timing when the budget stops there.

>>> probe_threads(abs, [-1, -2, -3, -4], 0, 4, 1e-3).results
[1, 2, 3, 4]
"""

from __future__ import annotations

import dataclasses
import os
import threading
import time
from concurrent.futures import wait
from dataclasses import dataclass

from ..engines import exit_hooks
from ..engines.threads import THREAD_ONLY_FAILURES, ThreadPool
from .head import timed_serially

__all__ = ["PROBE_STOP_FACTOR", "ThreadProbe", "probe_threads"]


# A probe's threads stop taking items once it has run this many times the serial time of
# all its items (two threads that merely take turns run 1x; released, 0.5x). bench
# --fresh alloc's first call read two threads at 0.11x once: 6 items of 0.24 ms took
# ~13 ms. Stopped, what the threads left runs here.
PROBE_STOP_FACTOR = 2.0

_probe_pool: ThreadPool | None = None
# One probe at a time in a process: concurrent probes would share its two threads and
# time each other. A call that finds it busy (another thread's call, or a map nested in
# a probed function) does without a probe rather than wait.
_probe_lock = threading.Lock()


@dataclass(frozen=True)
class ThreadProbe:
    """What running some items on two threads showed: ``speedup`` of two threads over one
    (None when not measured); ``results``, the items' results in order; ``failure``,
    ``"Type: message"`` of an exception raised only on threads (the items then re-ran
    serially: these are the serial results)."""

    speedup: float | None
    results: list
    failure: str | None = None
    item_bound: float | None = None  # seconds per item of the faster thread: at most an item's own
    elapsed: float = 0.0  # wall seconds of the two threads' items
    cpu_seconds: float = 0.0  # CPU seconds of both threads
    n_threaded: int = 0  # items the threads ran (a probe stopped at its deadline ran the rest here)

    def measured(self, serial_item_seconds: float, computing: bool) -> "ThreadProbe":
        """This probe with its speedup over items of ``serial_item_seconds`` each: their
        serial time over the probe's wall time, at most 2; if ``computing``, at most both
        threads' CPU time over it (a thread waiting for the GIL spends none)."""
        if self.elapsed <= 0:
            return dataclasses.replace(self, speedup=1.0)
        speedup = serial_item_seconds * self.n_threaded / self.elapsed
        if computing:
            speedup = min(speedup, max(self.cpu_seconds / self.elapsed, 1.0))
        return dataclasses.replace(self, speedup=min(speedup, 2.0))


def probe_threads(func, items, first: int, n: int, serial_item_seconds: float, *,
                  computing: bool = False) -> ThreadProbe:
    """Run items[first:first+n] as two halves on two threads (see :class:`ThreadProbe`).
    Speedup: the items' serial time (``serial_item_seconds`` each) over the probe's wall
    time; if ``computing``, at most both threads' CPU time over it (a thread waiting for
    the GIL spends none: pure Python reads ~1x even when skewed items fool the reference).
    An exception on a thread is not the user's error: the item that raised it, and those
    its thread left, run again here, in order, so that an item that fails serially too
    raises as ``builtins.map`` would; every other item runs once.
    """
    if not _probe_lock.acquire(blocking=False):
        return ThreadProbe(None, [])
    try:
        try:
            pool = _started_probe_pool()
        except RuntimeError as exc:  # the main thread returned while a non-daemon thread sampled
            if not exit_hooks.refused_at_exit(exc):
                raise
            return ThreadProbe(None, [])
        return _probe_on(pool, func, items, first, n, serial_item_seconds, computing)
    finally:
        _probe_lock.release()


def _forget_probe_pool() -> None:  # in a forked child: the parent's probe threads are not here
    global _probe_pool, _probe_lock
    _probe_pool, _probe_lock = None, threading.Lock()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_probe_pool)


def _started_probe_pool() -> ThreadPool:
    """The probe's two threads, both started (a thread started during the probe would be
    timed as the function). Called with ``_probe_lock`` held."""
    global _probe_pool
    if _probe_pool is None:
        pool = ThreadPool(2, thread_name_prefix="amorsize-probe")
        barrier = threading.Barrier(2)
        for f in [pool.submit(barrier.wait, 5.0) for _ in range(2)]:
            f.result()
        _probe_pool = pool
    return _probe_pool


def _probe_on(pool, func, items, first, n, serial_item_seconds, computing) -> ThreadProbe:
    half = n // 2
    deadline = time.perf_counter() + PROBE_STOP_FACTOR * n * serial_item_seconds

    def run(lo, hi):
        out, failure = [], None
        start, cpu_start = time.perf_counter(), time.thread_time()
        try:
            for i in range(lo, hi):
                if out and time.perf_counter() > deadline:
                    break  # far slower than serial: the caller runs the rest
                out.append(func(items[i]))
        except Exception as exc:
            failure = exc
        return out, start, time.perf_counter(), time.thread_time() - cpu_start, failure

    def start(lo, hi):  # at exit the pool refuses new work: the half runs here
        return exit_hooks.submit_or_run_here(lambda: pool.submit(run, lo, hi), lambda: run(lo, hi))

    futures = [start(first, first + half), start(first + half, first + n)]
    try:
        (a, a_start, a_stop, a_cpu, a_failure), (b, b_start, b_stop, b_cpu, b_failure) = [f.result() for f in futures]
    finally:
        wait(futures)  # both halves done before any item runs here
    # A thread stopped at the deadline or by an exception: the items it left run here, in
    # order; an item that raised on the thread runs once more, raising here too as the
    # user's (:func:`~amorsize_dask.engines.threads.again_here`).
    results = list(a)
    _left_here(func, items, first + len(a), first + half, results)
    results += b
    _left_here(func, items, first + half + len(b), first + n, results)
    failures = [f for f in (a_failure, b_failure) if f is not None]
    if len(failures) >= THREAD_ONLY_FAILURES:  # both threads: the function's on threads
        return ThreadProbe(None, results, f"{type(failures[0]).__name__}: {failures[0]}"[:200])
    if failures:  # once, not here: a transient error, as likely as the threads' (no speedup read)
        return ThreadProbe(None, results)
    # Timed inside the threads: hand-over to and from the pool is not the function's.
    elapsed = max(a_stop, b_stop) - min(a_start, b_start)
    bound = min((a_stop - a_start) / max(len(a), 1), (b_stop - b_start) / max(len(b), 1)) if half else None
    n_threaded = len(a) + len(b)
    return ThreadProbe(None, results, item_bound=bound, elapsed=elapsed, cpu_seconds=a_cpu + b_cpu,
                       n_threaded=n_threaded).measured(serial_item_seconds, computing)


def _left_here(func, items, lo: int, hi: int, results: list) -> None:
    """Items lo..hi that a stopped probe thread did not run, run here."""
    if hi > lo:
        timed_serially(func, items, lo, hi - lo, results)

"""Thread engine: for functions that release the GIL or wait on I/O.

Pools are kept per size for the life of the process: idle threads cost little,
starting them costs milliseconds. Each pool knows when none of its threads is running
anything (:func:`only_idle_pool_threads`): the process engine may fork then.

>>> ThreadEngine().run(abs, [-1, -2, -3], n_workers=2, chunksize=2, first_index=0).results
[1, 2, 3]
"""

from __future__ import annotations

import contextvars
import itertools
import os
import threading
import weakref
from dataclasses import dataclass, replace
from concurrent.futures import Future, ThreadPoolExecutor, as_completed

from . import exit_hooks
from .base import Engine, Gathered, RunResult, chunk_bounds, raise_failure
from .chunks import run_chunk

__all__ = ["ThreadRunResult", "ThreadEngine", "ThreadPool", "only_idle_pool_threads", "again_here",
           "THREAD_ONLY_FAILURES", "THREAD_ONLY_SHARE"]

# Every pool and engine of this process: a forked child forgets them (their threads are the parent's).
_POOLS: "weakref.WeakSet[ThreadPool]" = weakref.WeakSet()
_ENGINES: "weakref.WeakSet[ThreadEngine]" = weakref.WeakSet()


class ThreadPool(ThreadPoolExecutor):
    """A thread pool that counts the tasks it holds, so that it can tell when none of its
    threads is running anything (their only state then: waiting for the next task).

    >>> pool = ThreadPool(2, thread_name_prefix="doc")
    >>> pool.submit(abs, -1).result(), pool.idle
    (1, True)
    """

    def __init__(self, max_workers: int, thread_name_prefix: str, depth: int = 0):
        if depth:
            thread_name_prefix = f"{thread_name_prefix}-nested{depth}"
        super().__init__(max_workers, thread_name_prefix=thread_name_prefix)
        self.name_prefix = thread_name_prefix
        self.depth = depth  # maps on this pool run in maps on pools of every lower depth
        self._held = 0
        self._held_lock = threading.Lock()
        _POOLS.add(self)

    def submit(self, fn, /, *args, **kwargs):
        """As ``ThreadPoolExecutor.submit``, ``fn`` run in a copy of the caller's context, as
        ``asyncio.to_thread`` runs it: numpy's error state and decimal's context are context
        variables (a negative square root under ``np.errstate(invalid="raise")`` gave nan
        on threads where ``builtins.map`` raised)."""
        with self._held_lock:
            self._held += 1
        try:
            future = super().submit(contextvars.copy_context().run, fn, *args, **kwargs)
        except BaseException:
            self._release(None)
            raise
        future.add_done_callback(self._release)
        return future

    def _release(self, _future) -> None:
        with self._held_lock:
            self._held -= 1

    @property
    def idle(self) -> bool:
        return self._held == 0

    def owns(self, thread: threading.Thread) -> bool:
        return thread.name.startswith(self.name_prefix + "_")


def nesting_depth() -> int:
    """0 here; 1 + its pool's depth on a thread of one of this library's thread pools: a
    map called there must not wait for its own pool's threads, all of which may be
    running items of maps waiting for it (hunt 13: a map on threads inside one hung)."""
    me = threading.current_thread()
    owner = next((p for p in list(_POOLS) if p.owns(me)), None)
    return 0 if owner is None else owner.depth + 1


def only_idle_pool_threads(threads) -> bool:
    """True when every thread of ``threads`` belongs to an idle :class:`ThreadPool`."""
    pools = list(_POOLS)
    for thread in threads:
        owner = next((p for p in pools if p.owns(thread)), None)
        if owner is None or not owner.idle:
            return False
    return True


# An exception seen on threads only (the item ran here without it) rules threads out for
# the rest of a run, and for the function from then on, once it happened this many times
# in one run (or probe). Once is a transient error as often as a thread's: one reset
# connection taken for "not thread-safe" kept every later run of an I/O function off
# threads, 20x slower (tests/test_probe_safety.py, 0.05 s on 64 threads, then 1.05 s on 2
# processes). A function that fails off the main thread fails on every thread.
THREAD_ONLY_FAILURES = 2
# ... and on at least this share of the run's chunks: two resets among 800 requests (2% of
# its chunks) ruled threads out for good, and the function's later runs took 4-8x as long
# (hunt 17, session 22); a function that fails off the main thread fails on every chunk.
THREAD_ONLY_SHARE = 0.1


def again_here(func, items, lo: int, hi: int, first_index: int, out):
    """A chunk (``items[lo:hi]``) raised on a thread: its items from the one that raised on
    run once more, here. (The chunk's outcome, did that item run here without raising?)
    Raising here too, the exception is the caller's, as from ``builtins.map``: the item ran
    twice, every other item once."""
    at = out.failure.index - first_index
    here = run_chunk(func, items[at:hi], first_index + at, portable_only=False)
    threads_only = here.failure is None or here.failure.index != out.failure.index
    return replace(here, first_index=first_index + lo, results=out.results + here.results,
                   compute_seconds=out.compute_seconds + here.compute_seconds), threads_only


@dataclass
class ThreadRunResult(RunResult):
    """A run's results; ``thread_failure``: the exception seen only on threads, if any."""

    thread_failure: str | None = None


def _serially(func, items, lo: int, hi: int, first_index: int, progress):
    """Items ``lo..hi`` run here; an exception is the caller's, as from ``builtins.map``."""
    out = run_chunk(func, items[lo:hi], first_index + lo, portable_only=False)
    raise_failure(out.failure, func)
    if progress is not None:
        progress.advance(len(out.results))
    return out


class _Stoppable:
    """A chunk's items, read until :meth:`stop`: a thread then ends with its current item
    instead of the whole chunk (Ctrl-C raised at once, but the threads ran on through
    their 750-item chunks for 36 s).

    The items pass through ``itertools.compress`` against a list of as many True values,
    all in C: clearing the list ends the iteration at the next item (its iterator checks
    the length at each step, under the GIL). ~25 ns per item (timeit, 100,000 items of
    ``abs``: 28 -> 53 ns); a Python check per item (``takewhile`` and an Event) cost ~110.
    """

    def __init__(self, items):
        self.items, self._gate = items, [True] * len(items)

    def __len__(self) -> int:
        return len(self.items)

    def __iter__(self):
        return itertools.compress(self.items, self._gate)

    def stop(self) -> None:
        self._gate.clear()


class ThreadEngine(Engine):
    name = "threads"

    def __init__(self):
        self._pools: dict[tuple[int, int], ThreadPool] = {}  # by (threads, nesting depth)
        self._lock = threading.Lock()
        _ENGINES.add(self)

    def forget_pools(self) -> None:
        """In a forked child: the parent's threads do not exist here; new ones start on use."""
        self._pools = {}
        self._lock = threading.Lock()

    def pool(self, n_workers: int) -> ThreadPool:
        """The pool of ``n_workers`` threads (kept per size: starting threads is not free),
        one for each depth of maps nested in maps on threads (:func:`nesting_depth`)."""
        depth = nesting_depth()
        with self._lock:
            pool = self._pools.get((n_workers, depth))
            if pool is None:
                pool = self._pools[n_workers, depth] = ThreadPool(n_workers, "amorsize-thread", depth)
            return pool

    def run(self, func, items, *, n_workers, chunksize, first_index=0, progress=None, serial_retry=False):
        """Run the chunks on ``n_workers`` threads; results in item order.

        ``serial_retry``: a chunk that raises on a thread keeps the chunks not started yet
        from starting; once the threads are idle, the item that raised runs once more here
        (:func:`again_here`; alone, so that a race between items cannot raise it again),
        and only an exception raised here too reaches the caller; the chunks held back go
        to the threads again. Seen on threads only :data:`THREAD_ONLY_FAILURES` times, on
        :data:`THREAD_ONLY_SHARE` of the chunks or more, it is the threads': the rest runs
        here, in order, and ``thread_failure`` names it.
        """
        bounds = chunk_bounds(len(items), chunksize)
        run = _ThreadRun(self.pool(n_workers), func, items, first_index, progress, serial_retry)
        todo, ends = bounds, dict(bounds)
        while todo and run.thread_failure is None:
            for lo, out in sorted(run.round(todo)):
                run.again_here(lo, ends[lo], out)
            todo = [(lo, hi) for lo, hi in bounds if lo not in run.settled and run.gathered.needed(lo)]
        if run.thread_failure is not None:
            for lo, hi in bounds:
                if lo not in run.settled and run.gathered.needed(lo):
                    run.gathered.chunks[lo] = _serially(func, items, lo, hi, first_index, progress)
        results, compute = run.gathered.results(func, bounds)
        return ThreadRunResult(results, compute, len(bounds), thread_failure=run.thread_failure)

    def shutdown(self) -> None:
        with self._lock:
            pools, self._pools = list(self._pools.values()), {}
        for pool in pools:
            pool.shutdown(wait=False, cancel_futures=True)


class _ThreadRun:
    """One :meth:`ThreadEngine.run`: its chunks gathered (``settled``: taken, results or
    failure), and what failed on its threads."""

    def __init__(self, pool, func, items, first_index: int, progress, serial_retry: bool):
        self.pool, self.func, self.items, self.first_index = pool, func, items, first_index
        self.serial_retry, self.gathered, self.settled = serial_retry, Gathered(first_index, progress), set()
        self.thread_failure, self.threads_only = None, 0

    def round(self, todo) -> list:
        """Run ``todo`` on the threads until every chunk started has ended; the chunks that
        raised (``serial_retry``), as ``(lo, outcome)``, for :meth:`again_here`."""
        chunks = [_Stoppable(self.items[lo:hi]) for lo, hi in todo]  # stopped when the caller stops waiting
        futures = {_submit(self.pool, self.func, chunk, self.first_index + lo): lo
                   for chunk, (lo, _) in zip(chunks, todo)}
        failed = []
        try:
            for fut in as_completed(futures):
                if fut.cancelled():
                    continue
                out, lo = fut.result(), futures[fut]
                if out.failure is not None and self.serial_retry and self.gathered.needed(lo):
                    failed.append((lo, out))
                    for other in futures:
                        other.cancel()  # not started: held back until the item ran here
                    continue
                self.take(lo, out, futures)
        except BaseException:
            for chunk in chunks:
                chunk.stop()
            for fut in futures:
                fut.cancel()
            raise
        return failed

    def again_here(self, lo: int, hi: int, out) -> None:
        """The chunk at ``lo`` raised on a thread: from that item on, here (:func:`again_here`)."""
        if not self.gathered.needed(lo):
            return
        seen = f"{out.failure.type_name}: {out.failure.message}"[:200]
        out, threads_only = again_here(self.func, self.items, lo, hi, self.first_index, out)
        self.threads_only += threads_only
        self.take(lo, out, {})
        if self.threads_only >= max(THREAD_ONLY_FAILURES, THREAD_ONLY_SHARE * len(self.settled)):
            self.thread_failure = seen

    def take(self, lo: int, out, futures: dict) -> None:
        self.settled.add(lo)
        if not self.gathered.take(lo, out, remote=False):
            for other in self.gathered.unneeded(futures.items()):
                other.cancel()


def _submit(pool: ThreadPool, func, chunk, index: int) -> Future:
    """The chunk's future on ``pool``, or its outcome run here once the interpreter exits
    (:func:`.exit_hooks.submit_or_run_here`). portable_only=False: the exception raised by
    func is raised here as it is."""
    return exit_hooks.submit_or_run_here(lambda: pool.submit(run_chunk, func, chunk, index, False),
                                         lambda: run_chunk(func, chunk, index, False))


def _after_fork_in_child() -> None:
    for engine in list(_ENGINES):
        engine.forget_pools()
    _POOLS.clear()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)

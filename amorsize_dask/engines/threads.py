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
           "THREAD_ONLY_FAILURES"]

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


def _serially(func, items, lo: int, hi: int, first_index: int, progress, partial=None):
    """Items ``lo..hi`` run here; an exception is the caller's, as from ``builtins.map``.
    ``partial``: the chunk's outcome on a thread, whose results before its failure are
    kept (each item runs once, unless it raised on the thread)."""
    done = partial.results if partial is not None else []
    out = run_chunk(func, items[lo + len(done):hi], first_index + lo + len(done), portable_only=False)
    raise_failure(out.failure, func)
    if progress is not None:
        progress.advance(len(done) + len(out.results))
    return replace(out, first_index=first_index + lo, results=done + out.results,
                   compute_seconds=out.compute_seconds + (partial.compute_seconds if partial is not None else 0.0))


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

        ``serial_retry``: an item that raises on a thread runs once more here
        (:func:`again_here`); only an exception raised here too reaches the caller. Seen
        on threads only :data:`THREAD_ONLY_FAILURES` times, it is the threads': the chunks
        that raised, and those not started yet, run here, in order, and the result's
        ``thread_failure`` names it.
        """
        bounds = chunk_bounds(len(items), chunksize)
        pool = self.pool(n_workers)
        chunks = [_Stoppable(items[lo:hi]) for lo, hi in bounds]  # stopped when the caller stops waiting
        futures = {_submit(pool, func, chunk, first_index + lo): lo for chunk, (lo, _) in zip(chunks, bounds)}
        ends = dict(bounds)
        gathered, partial = Gathered(first_index, progress), {}
        thread_failure, threads_only = None, 0
        try:
            for fut in as_completed(futures):
                if fut.cancelled():
                    continue
                out, lo = fut.result(), futures[fut]
                if out.failure is not None and serial_retry and thread_failure is None and gathered.needed(lo):
                    seen = f"{out.failure.type_name}: {out.failure.message}"[:200]
                    out, once_more = again_here(func, items, lo, ends[lo], first_index, out)
                    threads_only += once_more
                    if threads_only >= THREAD_ONLY_FAILURES:
                        thread_failure = seen
                        for other in futures:
                            other.cancel()  # not started yet: they run here, serially
                elif out.failure is not None and serial_retry:
                    partial[lo] = out  # the items before the failure: not run again
                    continue
                if not gathered.take(lo, out, remote=False):
                    for other in gathered.unneeded(futures.items()):
                        other.cancel()
        except BaseException:
            for chunk in chunks:
                chunk.stop()
            for fut in futures:
                fut.cancel()
            raise
        if thread_failure is not None:
            for lo, hi in bounds:
                if lo not in gathered.chunks:
                    gathered.chunks[lo] = _serially(func, items, lo, hi, first_index, progress, partial.get(lo))
        results, compute = gathered.results(func, bounds)
        return ThreadRunResult(results, compute, len(bounds), thread_failure=thread_failure)

    def shutdown(self) -> None:
        with self._lock:
            pools, self._pools = list(self._pools.values()), {}
        for pool in pools:
            pool.shutdown(wait=False, cancel_futures=True)


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

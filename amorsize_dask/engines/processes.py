"""Process engine: a reusable pool of worker processes.

- Start-up is paid once per process, not per call: the pool stays up between calls and
  is shut down at interpreter exit. Start method ``auto`` (Linux) forks when no other
  thread of the caller is busy, else uses the forkserver; workers never run the caller's
  main module (:mod:`.worker_start`); a pool whose workers no longer match the caller
  (working directory, ``sys.path``, environment, start method, the function's module
  edited on disk) is replaced before it runs anything; a forked child forgets the pools.
- The function, items, results and exceptions travel with cloudpickle (:mod:`.transport`):
  lambdas, closures and classes defined in a script work, and come back as the caller's own.
- A worker that dies loses no items: the chunks it may have held run again on a fresh
  pool, one at a time, and an item that kills its worker each time is named (one run's
  bookkeeping, and which failure it raises: :mod:`.process_job`).
- With ``local_fallback`` (``engine="auto"``), a chunk whose items or results cannot be
  pickled runs in this process instead, with one warning; otherwise a TypeError names it.
- Ctrl-C stops the workers at once; nothing is left running.

>>> ProcessEngine().run(abs, [-1, -2, -3], n_workers=1, chunksize=2, first_index=0).results
[1, 2, 3]
"""

from __future__ import annotations

import multiprocessing
import os
import sys
import threading
import time
import weakref
from concurrent.futures import CancelledError, ProcessPoolExecutor, as_completed
from concurrent.futures.process import BrokenProcessPool

from .. import config
from ..errors import PackageChanged, WorkerStartError
from . import exit_hooks, process_worker, transport
from .base import Engine, RunResult, chunk_bounds
from .chunks import ChunkResult
from .function_parcel import FunctionParcel, remember_if_large, travels
from .pool_start import StartGate, start_all
from .pool_stop import stop_pool
from .process_job import MAX_CHUNK_RETRIES, ProcessJob, how_workers_died
from .caller_settings import CallerSettings
from .worker_start import (AUTO, caller_state, forkserver_preload, forking, module_stamps, package_changed,
                           resolve_start_method, slim_context)

__all__ = ["MAX_CHUNK_RETRIES", "default_start_method", "ProcessEngine", "shared_engine"]

def default_start_method() -> str:
    """``amorsize.start-method``; else on Linux ``auto`` (fork when no other thread is busy,
    else forkserver: :mod:`.worker_start`), forkserver where available, else spawn."""
    configured = config.get("start-method")
    if configured:
        return configured
    methods = multiprocessing.get_all_start_methods()
    if sys.platform.startswith("linux") and {"fork", "forkserver"} <= set(methods):
        return AUTO
    return "forkserver" if "forkserver" in methods else "spawn"


def _processes_of(executor: ProcessPoolExecutor) -> list:
    """The worker processes an executor has started so far."""
    return list((getattr(executor, "_processes", None) or {}).values())


class _Pool:
    """One executor of ``size`` workers, the caller state it started under, the files of
    the modules its workers imported, and how many runs are using it right now."""

    def __init__(self, executor: ProcessPoolExecutor, size: int, state: tuple, inherited: frozenset = frozenset()):
        self.executor = executor
        self.inherited = inherited  # tokens of the functions its workers hold (forked while registered)
        # Kept here: the executor forgets its processes once shut down without waiting.
        self.processes = _processes_of(executor)
        self.size = size
        self.state = state
        self.stamps: dict[str, tuple] = {}
        self.users = 0
        self.retired = False

    def matches(self, state: tuple, stamps: list) -> bool:
        if state != self.state or getattr(self.executor, "_broken", False):
            return False
        return all(self.stamps.get(name, stamp) == stamp for name, stamp in stamps)


class ProcessEngine(Engine):
    name = "processes"

    def __init__(self, start_method: str | None = None):
        self._requested_start_method = start_method
        self._pools: dict[int, _Pool] = {}
        self._draining: list[_Pool] = []  # retired pools whose workers may still be finishing
        self._lock = threading.RLock()
        self.last_start_seconds: float | None = None
        self.last_start_method: str | None = None  # "auto" resolved: the method the last pool started with
        self.one_time_seconds_total = 0.0  # pool starts, workers loading functions: one-time costs of runs
        self.modules_sent: set[str] = set()  # modules of functions sent before (imported there)
        _ENGINES.add(self)

    @property
    def start_method(self) -> str:
        return self._requested_start_method or default_start_method()

    def next_start_method(self) -> str:
        """The method a pool started now would use (``auto`` resolved)."""
        return resolve_start_method(self.start_method)

    def forget_pools(self) -> None:
        """In a forked child: the parent's pools are not this process's to use, stop or join."""
        exit_hooks.disown([proc for entry in [*self._pools.values(), *self._draining] for proc in entry.processes])
        self._pools, self._draining, self._lock = {}, [], threading.RLock()

    def is_warm(self, n_workers: int) -> bool:
        """True when a pool of ``n_workers`` that matches the caller is already running."""
        entry = self._pools.get(n_workers)
        return entry is not None and entry.matches(caller_state(self.start_method), [])

    def pool(self, n_workers: int) -> ProcessPoolExecutor:
        """The pool of ``n_workers`` processes, started (and warmed) if needed."""
        return self._entry(n_workers).executor

    def _entry(self, n_workers: int, func=None) -> _Pool:
        state = caller_state(self.start_method)
        stamps = module_stamps(func) if func is not None else []
        with self._lock:
            entry = self._pools.get(n_workers)
            if entry is not None and not entry.matches(state, stamps):
                self._retire(entry)  # stale workers: older code, another cwd/sys.path/environment
                entry = None
            if entry is None:
                # Pools of other sizes that nobody is using go: one set of workers at a time.
                for idle in list(self._pools.values()):
                    if idle.users == 0:
                        self._retire(idle)
                executor, inherited = self._start(n_workers)
                entry = self._pools[n_workers] = _Pool(executor, n_workers, state, inherited)
            for name, stamp in stamps:
                entry.stamps.setdefault(name, stamp)
            return entry

    def stop_if_idle(self, n_workers: int, wait: bool = False) -> bool:
        """Stop the pool of ``n_workers`` unless a run is using it (a pool started for
        nothing: its call ended up elsewhere); False when it did not. ``wait``: until its
        workers and threads are gone (then the next pool may fork)."""
        with self._lock:
            entry = self._pools.get(n_workers)
            if entry is None or entry.users:
                return False
            if not wait:
                self._retire(entry)
                return True
            del self._pools[n_workers]
            entry.retired = True
        _stop(entry)
        return True

    def _retire(self, entry: _Pool) -> None:
        """Take ``entry`` out of service; it stops now, or when its last user releases it."""
        if self._pools.get(entry.size) is entry:
            del self._pools[entry.size]
        entry.retired = True
        if entry.users == 0:
            # Idle, or finishing abandoned speculated items: its workers exit when done,
            # without holding up this call (Ctrl-C and exit still kill them: see shutdown).
            self._draining = [e for e in self._draining if any(p.is_alive() for p in e.processes)] + [entry]
            entry.executor.shutdown(wait=False, cancel_futures=True)

    def _start(self, n_workers: int) -> tuple[ProcessPoolExecutor, frozenset]:
        """A started pool, and the tokens of the functions its workers inherited."""
        t0 = time.perf_counter()
        heap_pad = config.worker_heap_pad()  # a bad setting fails before anything starts
        method = self.next_start_method()
        if changed := package_changed(method):
            raise WorkerStartError(PackageChanged(changed))
        ctx = slim_context(method)
        if method == "forkserver":
            ctx.set_forkserver_preload(forkserver_preload(process_worker.__name__))
        try:  # the start gate and the executor's queues need file descriptors too
            gate = StartGate(ctx)
            pool = ProcessPoolExecutor(
                n_workers, mp_context=ctx, initializer=process_worker.initialize_worker,
                initargs=(gate.for_workers(), CallerSettings.now(), heap_pad),
            )
        except OSError as exc:
            raise WorkerStartError(exc) from exc
        # Start every worker now (workers are otherwise spawned on demand), so start-up
        # is paid here and measured once. Forked, they hold the runs' functions registered
        # now (taken before the fork: a later registration is not theirs).
        inherited = frozenset(process_worker.INHERITED) if method == "fork" else frozenset()
        try:
            with forking(method):  # the workers fork as they are started
                start_all(pool, gate, n_workers)
        except BaseException as exc:  # Ctrl-C too; TimeoutError is an OSError
            # A worker that did start would wait at the gate for its missing peers
            # (60 s), and the interpreter's exit would wait for it.
            for process in _processes_of(pool):
                process.kill()
            pool.shutdown(wait=True, cancel_futures=True)
            if exit_hooks.refused_at_exit(exc) or not isinstance(exc, (BrokenProcessPool, OSError, RuntimeError)):
                raise
            raise WorkerStartError(exc) from exc
        self.last_start_seconds = time.perf_counter() - t0
        self.last_start_method = method
        self.one_time_seconds_total += self.last_start_seconds
        return pool, inherited

    def _acquire(self, n_workers: int, func=None) -> _Pool:
        with self._lock:
            entry = self._entry(n_workers, func)
            entry.users += 1
            return entry

    def _release(self, entry: _Pool) -> None:
        with self._lock:
            entry.users -= 1
            if entry.retired and entry.users == 0:
                self._draining.append(entry)
                entry.executor.shutdown(wait=False, cancel_futures=True)

    def _discard(self, entry: _Pool) -> None:
        """A broken pool goes (once, whoever notices first); the next acquire starts anew."""
        with self._lock:
            if self._pools.get(entry.size) is not entry:
                return
            del self._pools[entry.size]
            entry.retired = True
        _stop(entry, kill=True)

    def function_bytes(self, func) -> bytes:
        """``func`` as cloudpickle bytes (a TypeError naming it if it cannot travel); a
        large pickle is remembered (:func:`.function_parcel.remember_if_large`)."""
        payload = transport.dump_function(func)
        remember_if_large(func, payload)
        self.modules_sent.add(getattr(func, "__module__", None) or "")
        return payload

    def submit(self, func, chunk, first_index: int, n_workers: int, func_bytes: bytes | None = None):
        """Start one chunk on the pool now; :meth:`finish` its future later. ``func_bytes``:
        ``func`` pickled already (:meth:`function_bytes`; else pickled here).

        Raises TypeError, naming the function or the item, when they cannot be pickled.
        """
        return self.submit_parcel(FunctionParcel(self, func, func_bytes), chunk, first_index, n_workers)

    def submit_parcel(self, parcel: FunctionParcel, chunk, first_index: int, n_workers: int):
        """:meth:`submit` of the function of ``parcel``: by its token to a pool forked while
        it was registered (a stream's, :mod:`..stream.submitters`), else pickled once."""
        entry = self._entry(n_workers, parcel.func)
        func_key, func_bytes = parcel.for_pool(entry)
        payload = transport.dump_items(chunk, first_index, by_name=func_bytes is None)
        return entry.executor.submit(process_worker.run_pickled_chunk, func_key, func_bytes, payload, first_index)

    @staticmethod
    def finish(future) -> ChunkResult:
        """The chunk's outcome (results, compute time, failure) as the caller's own objects."""
        return transport.load_outcome(future.result())

    def collect(self, future, func, chunk, first_index: int, n_workers: int, *, local_fallback=False) -> RunResult:
        """The outcome of a chunk :meth:`submit`\\ ted earlier, its failure raised. If it never
        ran, or its worker died, it runs again on the pool: never in this process, which an
        item that ends its worker (``os._exit``, a segfault) would end too."""
        try:
            out = self.finish(future)
        except (BrokenProcessPool, CancelledError):
            return self.run(func, chunk, n_workers=n_workers, chunksize=max(1, len(chunk)),
                            first_index=first_index, local_fallback=local_fallback)
        job = ProcessJob(func, chunk, first_index, local_fallback, None)
        job.take(out, 0, len(chunk))
        return job.result([(0, len(chunk))])

    def reaches(self, func, n_workers: int) -> bool:
        """Can ``func`` run on a pool of ``n_workers``? One forked now inherits it (nothing of
        it pickled: :mod:`.function_parcel`); a running one needs it pickled."""
        return self.will_inherit(n_workers) or travels(func)

    def will_inherit(self, n_workers: int) -> bool:
        """Would a run on ``n_workers`` now fork its pool, so that its workers hold the
        function as it is (nothing of it pickled: :mod:`.function_parcel`)?"""
        return not self.is_warm(n_workers) and self.next_start_method() == "fork"

    def run(self, func, items, *, n_workers, chunksize, first_index=0, progress=None, local_fallback=False,
            func_bytes: bytes | None = None):
        """Run ``items`` in chunks on the pool; ``local_fallback``: what cannot be pickled
        runs in this process (one warning) instead of raising a TypeError. ``func_bytes``:
        ``func`` pickled already in this call (for a pool that does not inherit it)."""
        with FunctionParcel(self, func, func_bytes) as parcel:
            return self._run(parcel, ProcessJob(func, items, first_index, local_fallback, progress),
                             chunk_bounds(len(items), chunksize), n_workers)

    def _run(self, parcel: FunctionParcel, job: ProcessJob, bounds: list, n_workers: int) -> RunResult:
        try:
            parcel.make_ready(n_workers)
        except TypeError as exc:
            if not job.local_fallback:
                raise
            job.note(f"{exc}: every item ran in this process instead")
            for lo, hi in bounds:
                job.run_here(lo, hi)
            return job.result(bounds)
        todo = list(bounds)
        try:
            while todo:
                lost, unsent = self._round(parcel, job, todo, n_workers)
                todo = sorted(job.after_break(lost, n_workers, lambda lo, hi: self._alone(parcel, job, lo, hi, n_workers))
                              + unsent)
        except Exception:
            # An error in func: drop the queued chunks, keep the pool for the next call.
            for fut in job.futures:
                fut.cancel()
            raise
        except BaseException:
            # Ctrl-C or exit: stop at once, leave nothing running.
            self.shutdown(kill=True)
            raise
        self.one_time_seconds_total += job.load_seconds
        return job.result(bounds)

    def _round(self, parcel: FunctionParcel, job: ProcessJob, chunks: list, n_workers: int) -> tuple[list, list]:
        """Send ``chunks`` to the pool and take their outcomes; ``(lost, unsent)``: the
        chunks the pool failed when a worker died, and those it broke before taking."""
        entry = self._acquire(n_workers, job.func)
        lost = []
        try:
            unsent = job.submit_all(entry.executor, chunks, *parcel.for_pool(entry))
            for fut in as_completed(job.futures):
                lo, hi = job.futures[fut]
                if not job.needed(lo):
                    continue  # after an item that failed: cancelled, or its outcome not needed
                try:
                    out = self.finish(fut)
                except BrokenProcessPool:
                    lost.append((lo, hi))
                    continue
                job.take(out, lo, hi)
        finally:
            self._release(entry)
        if lost or unsent:
            job.death = how_workers_died(entry.processes) or job.death
            self._discard(entry)
        return lost, unsent

    def run_again(self, parcel: FunctionParcel, chunk: list, first_index: int, n_workers: int) -> ChunkResult:
        """A chunk the pool failed when a worker died (a stream's), run again alone: its
        outcome, failed at the item that kills its worker, if one does."""
        job = ProcessJob(parcel.func, chunk, first_index, False, None)
        job.after_break([(0, len(chunk))], n_workers, lambda lo, hi: self._alone(parcel, job, lo, hi, n_workers))
        return job.outcome()

    def _alone(self, parcel: FunctionParcel, job: ProcessJob, lo: int, hi: int, n_workers: int) -> bool:
        """Run items ``lo..hi`` with nothing else on the pool: False when their worker died."""
        unsent = [(lo, hi)]
        while unsent:  # a pool broken before it took them: a fresh one
            lost, unsent = self._round(parcel, job, unsent, n_workers)
        return not lost

    def shutdown(self, kill: bool = False) -> None:
        """Stop every pool; with ``kill``, without waiting for their tasks (:func:`.pool_stop.stop_pool`)."""
        with self._lock:
            entries, self._pools = list(self._pools.values()), {}
            entries += self._draining if kill else []
            self._draining = [] if kill else self._draining
            for entry in entries:
                entry.retired = True
        for entry in entries:
            _stop(entry, kill=kill)


def _stop(entry: _Pool, kill: bool = False) -> None:
    stop_pool(entry.executor, entry.processes, kill=kill, in_use=entry.users > 0)


_ENGINE: ProcessEngine | None = None
_ENGINE_LOCK = threading.Lock()
_ENGINES: "weakref.WeakSet[ProcessEngine]" = weakref.WeakSet()


def _after_fork_in_child() -> None:
    """A forked child (a worker of ours, or the user's own fork) starts with no pools: the
    parent's belong to the parent, and a lock held while forking would never be released."""
    global _ENGINE_LOCK
    for engine in list(_ENGINES):
        engine.forget_pools()
    _ENGINE_LOCK = threading.Lock()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)


def shared_engine() -> ProcessEngine:
    """The process engine of this interpreter (one pool, reused by every call)."""
    global _ENGINE
    with _ENGINE_LOCK:
        if _ENGINE is None:
            _ENGINE = ProcessEngine()
            exit_hooks.stop_at_exit(_ENGINE)
        return _ENGINE

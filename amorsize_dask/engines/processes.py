"""Process engine: a reusable pool of worker processes.

- Start-up is paid once per process, not per call: the pool stays up between calls
  and is shut down at interpreter exit.
- Functions travel with cloudpickle (lambdas and closures work) and are deserialized
  once per worker.
- A worker that dies loses no items: the chunks it held run again on a fresh pool
  (a chunk that kills its worker :data:`MAX_CHUNK_RETRIES` times is reported).
- Ctrl-C stops the workers at once; nothing is left running.

>>> ProcessEngine().run(abs, [-1, -2, -3], n_workers=1, chunksize=2, first_index=0).results
[1, 2, 3]
"""

from __future__ import annotations

import atexit
import hashlib
import multiprocessing
import pickle
import threading
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from concurrent.futures.process import BrokenProcessPool

import cloudpickle

from .. import config
from ..errors import WorkerLostError, WorkerStartError
from ..target.workload import function_name
from . import _process_worker
from .base import Engine, RunResult, assemble, chunk_bounds, raise_failure
from .chunks import ChunkResult

# A chunk is run again after its worker died at most this many times: one crash may be
# a killed worker (OOM killer, a node going away), repeated crashes are the function's.
MAX_CHUNK_RETRIES = 2
# Seconds the workers of a new pool wait for each other to start (a loaded machine).
_START_TIMEOUT_SECONDS = 60.0


def default_start_method() -> str:
    """``amorsize.start-method``, else forkserver where available (safe with threads), else spawn."""
    configured = config.get("start-method")
    if configured:
        return configured
    methods = multiprocessing.get_all_start_methods()
    return "forkserver" if "forkserver" in methods else "spawn"


class _Pool:
    """One executor of ``size`` workers and how many runs are using it right now."""

    def __init__(self, executor: ProcessPoolExecutor, size: int):
        self.executor = executor
        self.size = size
        self.users = 0


class ProcessEngine(Engine):
    name = "processes"

    def __init__(self, start_method: str | None = None):
        self._requested_start_method = start_method
        self._pools: dict[int, _Pool] = {}
        self._lock = threading.RLock()
        self.last_start_seconds: float | None = None
        self.modules_sent: set[str] = set()  # modules of functions sent before (imported there)

    @property
    def start_method(self) -> str:
        return self._requested_start_method or default_start_method()

    def is_warm(self, n_workers: int) -> bool:
        """True when a pool of ``n_workers`` is already running."""
        return n_workers in self._pools

    def pool(self, n_workers: int) -> ProcessPoolExecutor:
        """The pool of ``n_workers`` processes, started (and warmed) if needed."""
        return self._entry(n_workers).executor

    def _entry(self, n_workers: int) -> _Pool:
        with self._lock:
            entry = self._pools.get(n_workers)
            if entry is None:
                # Pools of other sizes that nobody is using go: one set of workers at a time.
                for size, idle in list(self._pools.items()):
                    if idle.users == 0:
                        del self._pools[size]
                        _stop(idle.executor)
                entry = self._pools[n_workers] = _Pool(self._start(n_workers), n_workers)
            return entry

    def _start(self, n_workers: int) -> ProcessPoolExecutor:
        t0 = time.perf_counter()
        ctx = multiprocessing.get_context(self.start_method)
        if self.start_method == "forkserver":
            ctx.set_forkserver_preload([_process_worker.__name__])
        barrier = ctx.Barrier(n_workers)
        pool = ProcessPoolExecutor(
            n_workers, mp_context=ctx, initializer=_process_worker.initialize_worker, initargs=(barrier,)
        )
        # Start every worker now (workers are otherwise spawned on demand), so start-up
        # is paid here and measured once.
        try:
            list(pool.map(_process_worker.wait_for_peers, [_START_TIMEOUT_SECONDS] * n_workers))
        except (BrokenProcessPool, threading.BrokenBarrierError, OSError) as exc:
            pool.shutdown(wait=True, cancel_futures=True)
            raise WorkerStartError(exc) from exc
        self.last_start_seconds = time.perf_counter() - t0
        return pool

    def _acquire(self, n_workers: int) -> _Pool:
        with self._lock:
            entry = self._entry(n_workers)
            entry.users += 1
            return entry

    def _release(self, entry: _Pool) -> None:
        with self._lock:
            entry.users -= 1

    def _discard(self, entry: _Pool) -> None:
        """A broken pool goes (once, whoever notices first); the next acquire starts anew."""
        with self._lock:
            if self._pools.get(entry.size) is entry:
                del self._pools[entry.size]
            else:
                return
        _stop(entry.executor, kill=True)

    def submit(self, func, chunk, first_index: int, n_workers: int):
        """Start one chunk on the pool now; :meth:`finish` its future later."""
        func_bytes = _dump_function(func)
        func_key = hashlib.blake2b(func_bytes, digest_size=16).digest()
        return self.pool(n_workers).submit(_process_worker.run_pickled_chunk, func_key, func_bytes, chunk, first_index)

    @staticmethod
    def finish(future) -> ChunkResult:
        """The chunk's results (unpickled here), its compute time, or its failure."""
        out, payload = future.result()
        if payload is not None:
            out.results = pickle.loads(payload)
        return out

    def run(self, func, items, *, n_workers, chunksize, first_index=0, progress=None):
        func_bytes = _dump_function(func)
        func_key = hashlib.blake2b(func_bytes, digest_size=16).digest()
        bounds = chunk_bounds(len(items), chunksize)
        done_chunks: dict = {}
        crashes: dict[int, int] = {}
        todo = list(bounds)
        futures: dict = {}
        try:
            while todo:
                entry = self._acquire(n_workers)
                try:
                    futures = {
                        entry.executor.submit(
                            _process_worker.run_pickled_chunk, func_key, func_bytes, items[lo:hi], first_index + lo
                        ): (lo, hi)
                        for lo, hi in todo
                    }
                    todo = []
                    for fut in as_completed(futures):
                        lo, hi = futures[fut]
                        try:
                            out = self.finish(fut)
                        except BrokenProcessPool:
                            crashes[lo] = crashes.get(lo, 0) + 1
                            if crashes[lo] > MAX_CHUNK_RETRIES:
                                raise WorkerLostError(
                                    f"a worker process died {crashes[lo]} times while running items "
                                    f"{first_index + lo}..{first_index + hi - 1} of {function_name(func)}; the "
                                    "function may crash the interpreter (segfault, os._exit, memory); "
                                    "try engine='serial' to see the error"
                                ) from None
                            todo.append((lo, hi))
                            continue
                        except (pickle.PicklingError, TypeError, AttributeError) as exc:
                            raise _unpicklable_items(items[lo:hi], first_index + lo, exc) from exc
                        raise_failure(out.failure, func, remote=True)
                        done_chunks[lo] = out
                        if progress is not None:
                            progress.advance(len(out.results))
                finally:
                    self._release(entry)
                if todo:
                    self._discard(entry)
        except Exception:
            # An error in func: drop the queued chunks, keep the pool for the next call.
            for fut in futures:
                fut.cancel()
            raise
        except BaseException:
            # Ctrl-C or exit: stop at once, leave nothing running.
            self.shutdown(kill=True)
            raise
        results, compute = assemble(done_chunks, bounds)
        return RunResult(results, compute, len(bounds))

    def shutdown(self, kill: bool = False) -> None:
        """Stop every pool; with ``kill``, terminate workers without waiting for their tasks."""
        with self._lock:
            entries, self._pools = list(self._pools.values()), {}
        for entry in entries:
            _stop(entry.executor, kill=kill)


def _stop(executor: ProcessPoolExecutor, kill: bool = False) -> None:
    processes = list((getattr(executor, "_processes", None) or {}).values())
    if kill:
        for proc in processes:
            if proc.is_alive():
                proc.terminate()
    executor.shutdown(wait=True, cancel_futures=True)
    for proc in processes:
        proc.join(timeout=5)


def _dump_function(func) -> bytes:
    """``func`` as cloudpickle bytes, or a TypeError that names it and the way out."""
    try:
        payload = cloudpickle.dumps(func)
        shared_engine().modules_sent.add(getattr(func, "__module__", None) or "")
        return payload
    except Exception as exc:
        raise TypeError(
            f"{function_name(func)} cannot be sent to worker processes: {type(exc).__name__}: {exc}; "
            "use engine='threads' or engine='serial' (or make it picklable)"
        ) from exc


def _unpicklable_items(chunk, first_index: int, cause: BaseException) -> TypeError:
    """A TypeError naming the first item of ``chunk`` that cannot be pickled."""
    for offset, item in enumerate(chunk):
        try:
            pickle.dumps(item, protocol=pickle.HIGHEST_PROTOCOL)
        except Exception as exc:
            return TypeError(
                f"item {first_index + offset} ({type(item).__name__}) cannot be pickled to send it to a "
                f"worker process: {exc}; use engine='threads' or engine='serial'"
            )
    return TypeError(f"items {first_index}..{first_index + len(chunk) - 1} could not be sent to a worker: {cause}")


_ENGINE: ProcessEngine | None = None


def shared_engine() -> ProcessEngine:
    """The process engine of this interpreter (one pool, reused by every call)."""
    global _ENGINE
    if _ENGINE is None:
        _ENGINE = ProcessEngine()
        atexit.register(_ENGINE.shutdown)
    return _ENGINE

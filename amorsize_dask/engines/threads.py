"""Thread engine: for functions that release the GIL or wait on I/O.

Pools are kept per size for the life of the process: idle threads cost little,
starting them costs milliseconds.

>>> ThreadEngine().run(abs, [-1, -2, -3], n_workers=2, chunksize=2, first_index=0).results
[1, 2, 3]
"""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor, as_completed

from .base import Engine, RunResult, assemble, chunk_bounds, raise_failure
from .chunks import run_chunk


class ThreadEngine(Engine):
    name = "threads"

    def __init__(self):
        self._pools: dict[int, ThreadPoolExecutor] = {}
        self._lock = threading.Lock()

    def pool(self, n_workers: int) -> ThreadPoolExecutor:
        """The pool of ``n_workers`` threads (kept per size: starting threads is not free)."""
        with self._lock:
            pool = self._pools.get(n_workers)
            if pool is None:
                pool = self._pools[n_workers] = ThreadPoolExecutor(n_workers, thread_name_prefix="amorsize-thread")
            return pool

    def run(self, func, items, *, n_workers, chunksize, first_index=0, progress=None):
        bounds = chunk_bounds(len(items), chunksize)
        pool = self.pool(n_workers)
        # portable_only=False: the exception raised by func is raised here as it is.
        futures = {
            pool.submit(run_chunk, func, items[lo:hi], first_index + lo, False): lo for lo, hi in bounds
        }
        done_chunks = {}
        try:
            for fut in as_completed(futures):
                out = fut.result()
                raise_failure(out.failure, func)
                done_chunks[futures[fut]] = out
                if progress is not None:
                    progress.advance(len(out.results))
        except BaseException:
            for fut in futures:
                fut.cancel()
            raise
        results, compute = assemble(done_chunks, bounds)
        return RunResult(results, compute, len(bounds))

    def shutdown(self) -> None:
        with self._lock:
            pools, self._pools = list(self._pools.values()), {}
        for pool in pools:
            pool.shutdown(wait=False, cancel_futures=True)

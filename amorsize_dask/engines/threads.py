"""Thread engine: for functions that release the GIL or wait on I/O.

One pool per process, grown when a plan asks for more threads; threads are cheap
to keep.

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
        self._pool: ThreadPoolExecutor | None = None
        self._size = 0
        self._lock = threading.Lock()

    def pool(self, n_workers: int) -> ThreadPoolExecutor:
        with self._lock:
            if self._pool is None or self._size != n_workers:
                if self._pool is not None:
                    self._pool.shutdown(wait=False)
                self._pool = ThreadPoolExecutor(n_workers, thread_name_prefix="amorsize-thread")
                self._size = n_workers
            return self._pool

    def run(self, func, items, *, n_workers, chunksize, first_index=0, progress=None):
        bounds = chunk_bounds(len(items), chunksize)
        pool = self.pool(n_workers)
        futures = {
            pool.submit(run_chunk, func, items[lo:hi], first_index + lo): lo for lo, hi in bounds
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
            if self._pool is not None:
                self._pool.shutdown(wait=False, cancel_futures=True)
            self._pool = None
            self._size = 0

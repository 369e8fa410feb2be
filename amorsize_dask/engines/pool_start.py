"""Starting every worker of a new process pool at once, within a deadline.

``ProcessPoolExecutor`` starts its workers as tasks arrive; the process engine starts them
all when it makes a pool, so that the start is paid, and measured, once. Each worker runs
one :func:`.process_worker.wait_for_peers` and holds it until all have arrived: the
``n`` tasks then ran on ``n`` different workers.

The gate is two semaphores, not a ``multiprocessing.Barrier``: a Barrier keeps its count
in a shared-memory arena, a 4 KiB file that a file size limit (``ulimit -f 2``) refused
(EFBIG: WorkerStartError, where ``Pool().map`` ran) and that a nearly full /dev/shm turned
into a SIGBUS. The caller's wait has a deadline: a pool whose management thread could not
start (a low process limit) left ``pool.map`` waiting for ever.

>>> import multiprocessing, os
>>> from concurrent.futures import ProcessPoolExecutor
>>> from amorsize_dask.engines import process_worker
>>> ctx = multiprocessing.get_context("fork")
>>> gate = StartGate(ctx)
>>> with ProcessPoolExecutor(2, mp_context=ctx, initializer=process_worker.initialize_worker,
...                          initargs=(gate.for_workers(),)) as pool:
...     start_all(pool, gate, 2, timeout=60)
...     len({pool.submit(os.getpid).result() for _ in range(20)}) <= 2
True
"""

from __future__ import annotations

import time

from . import process_worker

__all__ = ["START_TIMEOUT_SECONDS", "StartGate", "start_all"]

# Seconds the workers of a new pool may take to start, all of them (a loaded machine).
START_TIMEOUT_SECONDS = 60.0
# How often the caller looks for a worker that failed while it waits for the others.
_POLL_SECONDS = 0.05


class StartGate:
    """Where a new pool's workers meet: each releases ``arrived`` once, then waits on ``go``."""

    def __init__(self, ctx):
        self.arrived, self.go = ctx.Semaphore(0), ctx.Semaphore(0)

    def for_workers(self) -> tuple:
        """What :func:`.process_worker.initialize_worker` takes as its ``start_gate``."""
        return self.arrived, self.go


def start_all(pool, gate: StartGate, n_workers: int, timeout: float = START_TIMEOUT_SECONDS) -> None:
    """Start all ``n_workers`` workers of ``pool`` (made with ``gate.for_workers()``); a
    worker's failure (a broken pool) is raised, and a TimeoutError after ``timeout`` s."""
    futures = [pool.submit(process_worker.wait_for_peers, timeout) for _ in range(n_workers)]
    deadline = time.monotonic() + timeout
    arrived = 0
    while arrived < n_workers:
        if gate.arrived.acquire(timeout=_POLL_SECONDS):
            arrived += 1
            continue
        for future in futures:
            if future.done() and future.exception() is not None:
                raise future.exception()
        if time.monotonic() > deadline:
            raise TimeoutError(f"{arrived} of {n_workers} worker processes started in {timeout:.0f} s")
    for _ in range(n_workers):
        gate.go.release()
    for future in futures:
        future.result(timeout=max(0.0, deadline - time.monotonic()) + _POLL_SECONDS)

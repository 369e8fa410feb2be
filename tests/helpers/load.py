"""Load for tests that must hold on a busy machine: processes that compute until stopped."""

import multiprocessing
from contextlib import contextmanager

from amorsize_dask.target import machine


def busy_until(stop, started):
    """Say so (``started``, a multiprocessing Semaphore), then compute until ``stop`` (an
    Event) is set: one busy core."""
    started.release()
    while not stop.is_set():
        pass


def cores() -> int:
    """Cores this process may use (affinity and cgroup quota honoured: a container's
    2 cores on a 64-CPU host are 2)."""
    return machine.cpu_count()


@contextmanager
def busy_processes(n: int):
    """``n`` processes computing for as long as the ``with`` block runs (all of them
    computing when it starts: a spawned process takes tens of ms to get there)."""
    ctx = multiprocessing.get_context("spawn")
    stop, started = ctx.Event(), ctx.Semaphore(0)
    procs = [ctx.Process(target=busy_until, args=(stop, started), daemon=True) for _ in range(n)]
    for p in procs:
        p.start()
    try:
        for _ in procs:
            if not started.acquire(timeout=60):
                raise RuntimeError("a busy process did not start within 60 s")
        yield
    finally:
        stop.set()
        for p in procs:
            p.join(10)
            if p.is_alive():
                p.kill()

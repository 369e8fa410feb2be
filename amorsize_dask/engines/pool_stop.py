"""Stopping a process pool: at once (``kill``: Ctrl-C, the interpreter's exit), or once its
workers are done with what they were sent.

Killed, an idle worker never runs its own exit: a pool it had started (a map nested in
the function) was left to the resource tracker, which warned at the script's end of 7
leaked semaphores per worker (hunt 13). So an idle pool is stopped as its workers exit by
themselves, each stopping its own pools first (:mod:`.exit_hooks`), and killed only if
that takes longer than :data:`IDLE_EXIT_SECONDS`; a pool with tasks in flight is killed.

>>> from concurrent.futures import ProcessPoolExecutor
>>> pool = ProcessPoolExecutor(1)  # no worker started yet: idle
>>> stop_pool(pool, [], kill=True)
>>> pool.submit(abs, -1)
Traceback (most recent call last):
...
RuntimeError: cannot schedule new futures after shutdown

(A pool forked here, in a process whose other threads may hold locks, is left out of this
example: tests/test_nested_local.py stops real pools, nested ones included.)
"""

from __future__ import annotations

import time
from concurrent.futures import ProcessPoolExecutor

__all__ = ["IDLE_EXIT_SECONDS", "stop_pool"]

# How long idle workers may take to exit before they are killed: a few ms here (a nested
# map's pool of two stopped with each), session 24's nested-processes test; a bound, not an
# estimate: a worker stuck at its exit must not hold up the interpreter's.
IDLE_EXIT_SECONDS = 2.0


def stop_pool(executor: ProcessPoolExecutor, processes: list, kill: bool = False, in_use: bool = False) -> None:
    """Stop ``executor`` and wait for its worker ``processes``: with ``kill``, without
    waiting for their tasks (idle ones, in no run now, may exit first)."""
    if kill and not in_use and not getattr(executor, "_pending_work_items", True):  # nothing sent is unfinished
        executor.shutdown(wait=False)
        deadline = time.monotonic() + IDLE_EXIT_SECONDS
        for proc in processes:
            proc.join(max(0.0, deadline - time.monotonic()))
    if kill:
        for proc in processes:
            if proc.is_alive():
                proc.terminate()
    executor.shutdown(wait=True, cancel_futures=True)
    for proc in processes:
        proc.join(timeout=5)

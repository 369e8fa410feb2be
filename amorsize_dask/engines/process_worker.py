"""What a worker process of the process engine runs. Imported in each worker; stays small.

Everything crosses as cloudpickle bytes in both directions — the function, the items,
the results and the exceptions — so that classes defined in the caller's ``__main__``
(which this process never imports) travel by value and come back as the caller's own.
"""

from __future__ import annotations

import multiprocessing
import os
import signal
import threading

import cloudpickle

from .chunks import dump_chunk_result, run_chunk

__all__ = ["initialize_worker", "wait_for_peers", "run_pickled_chunk"]

# Functions deserialized in this worker, newest last; a handful covers alternating maps.
_FUNCTIONS: dict[bytes, object] = {}
_MAX_FUNCTIONS = 8


_START_BARRIER = None


def initialize_worker(start_barrier=None, environ: dict | None = None) -> None:
    """Ctrl-C is the parent's to handle (it stops the workers itself); a worker whose
    parent is gone (SIGTERM, SIGKILL, a crash) exits at once instead of lingering.
    ``environ``: the caller's environment when the pool started (a forkserver's children
    would otherwise inherit the forkserver's, which may be older)."""
    global _START_BARRIER
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    _START_BARRIER = start_barrier
    if environ is not None and environ != os.environ:
        os.environ.clear()
        os.environ.update(environ)
    threading.Thread(target=_exit_with_parent, name="amorsize-parent-watch", daemon=True).start()


def _exit_with_parent() -> None:
    parent = multiprocessing.parent_process()
    if parent is None:
        return
    parent.join()  # returns when the parent's sentinel closes: it has exited
    os._exit(1)


def wait_for_peers(timeout: float) -> int:
    """Block until every worker of the pool runs one of these: forces all to start now."""
    if _START_BARRIER is not None:
        _START_BARRIER.wait(timeout)
    return 0


def run_pickled_chunk(func_key: bytes, func_bytes: bytes, chunk_bytes: bytes, first_index: int) -> bytes:
    """Run a chunk; its outcome goes back as bytes pickled here, so that a value that
    cannot be pickled is reported with its item index instead of breaking the pool."""
    func = _FUNCTIONS.get(func_key)
    if func is None:
        func = cloudpickle.loads(func_bytes)
        if len(_FUNCTIONS) >= _MAX_FUNCTIONS:
            _FUNCTIONS.pop(next(iter(_FUNCTIONS)))
        _FUNCTIONS[func_key] = func
    out = run_chunk(func, cloudpickle.loads(chunk_bytes), first_index, portable_only=False)
    return dump_chunk_result(out)

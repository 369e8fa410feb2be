"""What a worker process of the process engine runs. Imported in each worker; stays small."""

from __future__ import annotations

import multiprocessing
import os
import pickle
import signal
import threading

import cloudpickle

from .chunks import ChunkResult, Failure, run_chunk, unpicklable_result_failure

# Functions deserialized in this worker, newest last; a handful covers alternating maps.
_FUNCTIONS: dict[bytes, object] = {}
_MAX_FUNCTIONS = 8


_START_BARRIER = None


def initialize_worker(start_barrier=None) -> None:
    """Ctrl-C is the parent's to handle (it stops the workers itself); a worker whose
    parent is gone (SIGTERM, SIGKILL, a crash) exits at once instead of lingering."""
    global _START_BARRIER
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    _START_BARRIER = start_barrier
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


def run_pickled_chunk(func_key: bytes, func_bytes: bytes, chunk, first_index: int):
    """Run a chunk; results come back pickled here, so that a value that cannot be
    pickled is reported with its item index instead of breaking the pool."""
    func = _FUNCTIONS.get(func_key)
    if func is None:
        func = cloudpickle.loads(func_bytes)
        if len(_FUNCTIONS) >= _MAX_FUNCTIONS:
            _FUNCTIONS.pop(next(iter(_FUNCTIONS)))
        _FUNCTIONS[func_key] = func
    out = run_chunk(func, chunk, first_index)
    try:
        payload = pickle.dumps(out.results, protocol=pickle.HIGHEST_PROTOCOL)
    except Exception:
        failure = unpicklable_result_failure(out.results, first_index) or Failure(
            first_index, None, "PicklingError", "the results of this chunk cannot be pickled", ""
        )
        return ChunkResult(first_index, [], out.compute_seconds, failure=failure), None
    out.results = []
    return out, payload

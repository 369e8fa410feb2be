"""What a worker process of the process engine runs. Imported in each worker; stays small.

Everything crosses as cloudpickle bytes in both directions — the function, the items,
the results and the exceptions — so that classes defined in the caller's ``__main__``
(which this process never imports) travel by value and come back as the caller's own.
"""

from __future__ import annotations

import multiprocessing
import os
import signal
import sys
import threading
import time

import cloudpickle

from .chunks import ChunkResult, dump_chunk_result, make_failure, run_chunk
from .module_state import StatefulFunction
from .pickling import hold_in_main

__all__ = ["initialize_worker", "wait_for_peers", "FunctionFile", "run_pickled_chunk", "INHERITED", "FunctionNotLoaded"]

# Functions deserialized in this worker, newest last; a handful covers alternating maps.
_FUNCTIONS: dict[bytes, object] = {}
_MAX_FUNCTIONS = 8

# The functions of the caller's runs in progress, by token (:meth:`ProcessEngine.run`
# adds its own while it runs). A worker forked meanwhile holds them as the caller had
# them then, with every global they read: its chunks send the token, not the function.
INHERITED: dict[bytes, object] = {}


_START_GATE = None


def initialize_worker(start_gate=None, settings=None, heap_pad: int = 0) -> None:
    """Ctrl-C is the parent's to handle (it stops the workers itself), and SIGTERM, with
    which it stops them, ends a worker (a forked one inherited the script's own handler,
    which ran once per worker at every exit); a worker whose parent is gone (SIGTERM,
    SIGKILL, a crash) exits at once instead of lingering.
    ``start_gate``: the pool's :class:`.pool_start.StartGate` semaphores. ``settings``:
    the caller's :class:`.caller_settings.CallerSettings` when the pool started (its
    environment, umask, limits; a forkserver's children would otherwise inherit the
    forkserver's, which may be older). ``heap_pad``: see :func:`keep_heap_pad`. numpy's
    global random state, if numpy is loaded, is seeded afresh (:func:`_reseed_numpy`)."""
    global _START_GATE
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    _START_GATE = start_gate
    if settings is not None:
        settings.apply()
    threading.Thread(target=_exit_with_parent, name="amorsize-parent-watch", daemon=True).start()
    keep_heap_pad(heap_pad)
    _reseed_numpy()


def _reseed_numpy() -> None:
    """numpy's global random state seeded afresh, as Python reseeds ``random`` in a forked
    child: forked with the caller's, every worker drew the same numbers (after
    ``np.random.seed(42)``: 204 distinct of 400, hunt 21; ``Pool().map`` too)."""
    random = sys.modules.get("numpy.random")  # not loaded: a first import seeds it afresh
    if random is not None:
        random.seed()


# glibc's mallopt() parameters (<malloc.h>).
_M_TOP_PAD, _M_MMAP_THRESHOLD = -2, -3
# Setting any of them stops glibc raising its mmap threshold as large blocks are freed;
# this is the ceiling it would have raised it to on a 64-bit system (4 MiB x sizeof(long)).
_MMAP_THRESHOLD_CEILING = 32 * 1024 * 1024


def keep_heap_pad(nbytes: int) -> bool:
    """Ask glibc to keep ``nbytes`` free at the top of this process's heap
    (``amorsize.worker-heap-pad``); True when it took the setting. Only in a worker: the
    caller's allocator is the caller's. With glibc's defaults, a function that allocates
    and frees ~1 MB arrays gives the memory back after every item and faults it in again
    on the next (np.sort of 0.8 MB: 0.97 ms per item, 0.53 with a pad). Blocks below
    32 MiB then come from the heap, as glibc's own threshold would after the first such
    block was freed (setting the pad stops that threshold moving).

    >>> keep_heap_pad(0)
    False
    """
    if nbytes <= 0 or not _glibc():
        return False
    import ctypes  # here: a worker of a caller without numpy has not imported it

    try:
        libc = ctypes.CDLL(None)
        return bool(libc.mallopt(_M_MMAP_THRESHOLD, _MMAP_THRESHOLD_CEILING)
                    and libc.mallopt(_M_TOP_PAD, int(nbytes)))
    except (OSError, AttributeError):
        return False


def _glibc() -> bool:
    try:
        return (os.confstr("CS_GNU_LIBC_VERSION") or "").startswith("glibc")
    except (ValueError, OSError, AttributeError):  # no such name here: not glibc
        return False


def _exit_with_parent() -> None:
    parent = multiprocessing.parent_process()
    if parent is None:
        return
    parent.join()  # returns when the parent's sentinel closes: it has exited
    os._exit(1)


def wait_for_peers(timeout: float) -> int:
    """Block until every worker of the pool runs one of these: forces all to start now
    (:func:`.pool_start.start_all`)."""
    if _START_GATE is not None:
        arrived, go = _START_GATE
        arrived.release()
        if not go.acquire(timeout=timeout):
            raise TimeoutError("the pool's other workers did not start")
    return 0


class FunctionFile:
    """A large pickled function in a file, sent by its path: each worker reads it once (it
    keeps the function by its key), not with every chunk (48 MB with each of 20 chunks:
    a notebook's forkserver pool ran 3-20x its serial time)."""

    def __init__(self, path: str):
        self.path = path

    def read(self) -> bytes:
        with open(self.path, "rb") as fh:
            return fh.read()


def run_pickled_chunk(func_key: bytes, func_bytes, chunk_bytes: bytes, first_index: int) -> bytes:
    """Run a chunk; its outcome goes back as bytes pickled here, so that a value that
    cannot be pickled is reported with its item index instead of breaking the pool.
    ``func_bytes``: the function's pickle, or a :class:`FunctionFile` holding it; None:
    the function is :data:`INHERITED` under ``func_key``."""
    if func_bytes is None:
        func = INHERITED[func_key]
    else:
        func = _FUNCTIONS.get(func_key)
    loading = 0.0  # the seconds this chunk spent importing modules to load the function: once per worker
    if func is None:
        t0, modules = time.perf_counter(), len(sys.modules)
        try:
            func = cloudpickle.loads(func_bytes if isinstance(func_bytes, bytes) else func_bytes.read())
        except Exception as exc:  # the chunk's failure: the caller may run it itself
            failure = make_failure(FunctionNotLoaded(f"{type(exc).__name__}: {exc}"), first_index)
            return dump_chunk_result(ChunkResult(first_index, [], 0.0, failure=failure))
        hold_in_main(func)
        if len(_FUNCTIONS) >= _MAX_FUNCTIONS:
            _FUNCTIONS.pop(next(iter(_FUNCTIONS)))
        _FUNCTIONS[func_key] = func
        if len(sys.modules) > modules:  # else a load by value, paid again whenever its data change
            loading = time.perf_counter() - t0
    if isinstance(func, StatefulFunction):  # a module's function: its module's values as the caller's
        func = func.applied()
    out = run_chunk(func, cloudpickle.loads(chunk_bytes), first_index, portable_only=False)
    out.load_seconds = loading
    return dump_chunk_result(out, by_name=func_bytes is None)


class FunctionNotLoaded(RuntimeError):
    """The function could not be loaded in a worker process: its module cannot be imported
    there (a module served by an import hook the script installed, such as pyximport's:
    a forkserver's worker lacks the hook). ``engine="auto"`` runs such chunks in the caller."""

    def __init__(self, cause: str):
        super().__init__(f"the function could not be loaded in a worker process ({cause}): its module cannot be "
                         "imported there (an import hook the script installed, such as pyximport's, is this "
                         "process's only); use engine='threads' or engine='serial', or make the module importable")
        self.cause = cause

    def __reduce__(self):
        return type(self), (self.cause,)

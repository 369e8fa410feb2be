"""Stopping the process engine's workers when this interpreter exits, leaving nothing running.

At exit no map waits for anything still running (speculated items of a call that raised,
a stream a daemon thread still consumes): the workers are stopped, not waited for.
concurrent.futures joins its executors (waiting for their running tasks) in a
``threading`` exit hook that runs before ``atexit``; the stop is hooked there too
(registered later, it runs first). A run still going in another thread then finds its
pool gone: :func:`stopped_by_exit` tells it that this is the exit, not a worker that died.

>>> stopped_by_exit()
False
"""

from __future__ import annotations

import atexit
import threading

__all__ = ["stop_at_exit", "stopped_by_exit", "exiting_error"]

_EXITING = threading.Event()


def stop_at_exit(engine) -> None:
    """Stop ``engine``'s workers at this interpreter's exit, without waiting for them."""
    register = getattr(threading, "_register_atexit", None)
    if register is not None:
        try:
            register(_stop, engine)
        except RuntimeError:  # the interpreter is already shutting down
            pass
    atexit.register(_stop, engine)


def _stop(engine) -> None:
    _EXITING.set()
    engine.shutdown(kill=True)


def stopped_by_exit() -> bool:
    """Has this interpreter's exit stopped the workers?"""
    return _EXITING.is_set()


def exiting_error(label: str, func_name: str) -> RuntimeError:
    """The error of a run whose workers the exit stopped (a daemon thread's stream, say):
    not a worker that died (``WorkerLostError`` said the function may crash the interpreter)."""
    return RuntimeError(f"amorsize_dask: the interpreter is exiting: its worker processes were stopped "
                        f"while {label} of {func_name} ran")

"""What ``distributed`` context this code runs in, without importing ``distributed``
when nothing has (the local engines must stay free of it).

>>> active_client() is None or hasattr(active_client(), "submit")
True
>>> current_worker() is None  # not inside a task
True
"""

from __future__ import annotations

import contextlib
import sys

__all__ = ["active_client", "engine_dask_names", "current_worker"]


def active_client():
    """The distributed Client dask itself would use, or None."""
    return _lookup("default_client")


# dask's names for its own schedulers (``dask.base.named_schedulers``), as this package's engines.
_DASK_SCHEDULERS = {"sync": "serial", "synchronous": "serial", "single-threaded": "serial", "threads": "threads",
                    "threading": "threads", "processes": "processes", "multiprocessing": "processes"}


# dask's schedulers given as their get functions (``dask.config.set(scheduler=dask.get)``).
_DASK_GETTERS = {("dask.local", "get_sync"): "sync", ("dask.threaded", "get"): "threads",
                 ("dask.multiprocessing", "get"): "processes"}


def engine_dask_names(engine: str, client) -> str:
    """``engine``; for ``"auto"`` with no ``client`` given, the engine that dask's own
    ``scheduler`` setting names, which ``dask.compute`` obeys before a default Client
    (``dask.config.set(scheduler="synchronous")``: the way to debug or profile in this
    process; hunt 16 found it ignored).

    >>> import dask
    >>> with dask.config.set(scheduler=dask.get):
    ...     engine_dask_names("auto", None), engine_dask_names("threads", None)
    ('serial', 'threads')
    """
    if engine != "auto" or client is not None:
        return engine
    from .. import config

    dask_config = config.dask_config()  # None: nothing sets dask's scheduler (dask_sources)
    name = dask_config.get("scheduler", None) if dask_config is not None else None
    if callable(name):  # dask.get, dask.threaded.get, ...: its getter's name (hunt 17)
        name = _DASK_GETTERS.get((getattr(name, "__module__", None), getattr(name, "__name__", None)))
    return _DASK_SCHEDULERS.get(name, engine) if isinstance(name, str) else engine


def current_worker():
    """The distributed Worker running the current task, or None."""
    return _lookup("get_worker")


def can_start_processes() -> bool:
    """False in a daemonic process (a Dask worker's, a multiprocessing pool's), which may
    not have children: the process engine falls back to threads there.

    >>> can_start_processes()
    True
    """
    import multiprocessing

    return not multiprocessing.current_process().daemon


def _lookup(getter: str):
    if "distributed" not in sys.modules:
        return None
    import distributed

    try:
        return getattr(distributed, getter)()
    except ValueError:  # distributed's answer for "there is none"
        return None


@contextlib.contextmanager
def off_the_worker_pool():
    """Inside a task, leave the worker's thread pool while waiting for other tasks (as
    ``distributed.worker_client`` does), so that they can run there: no deadlock. Elsewhere,
    nothing.

    >>> with off_the_worker_pool():
    ...     pass
    """
    if current_worker() is None:
        yield
        return
    from distributed import rejoin, secede
    from distributed.worker import thread_state

    if getattr(thread_state, "start_time", None) is None:  # not in a task's thread
        yield
        return
    try:
        secede()
    except KeyError:  # seceded already
        yield
        return
    try:
        yield
    finally:
        rejoin()

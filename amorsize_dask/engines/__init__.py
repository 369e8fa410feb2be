"""Engines: serial, threads, processes (local) and dask (a cluster).

>>> get_engine("serial").name
'serial'
"""

from __future__ import annotations

import importlib
import threading

# Loaded on first use: a worker process imports this package's process_worker module and
# must not pay for the parent's side (the process engine reads dask.config).
_LAZY = {
    "Engine": ".base", "RunResult": ".base", "SerialEngine": ".base",
    "ProcessEngine": ".processes", "ThreadEngine": ".threads",
}
_ENGINES: dict = {}
_SHARED_LOCK = threading.Lock()


def __getattr__(name):
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name], __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def shared_engine():
    """The process engine of this interpreter, created once even when threads ask at once."""
    from . import processes

    with _SHARED_LOCK:
        return processes.shared_engine()


def get_engine(name: str, client=None) -> Engine:
    """The engine called ``name`` (``client`` is used by the dask engine)."""
    if name in ("serial", "threads"):
        if name not in _ENGINES:
            from .base import SerialEngine
            from .threads import ThreadEngine

            _ENGINES.setdefault("serial", SerialEngine())
            _ENGINES.setdefault("threads", ThreadEngine())
        return _ENGINES[name]
    if name == "processes":
        from ..target.context import can_start_processes

        if not can_start_processes():
            import warnings

            warnings.warn("amorsize_dask: engine='processes' cannot start worker processes in this daemonic "
                          "process (a Dask worker's task?): running on threads instead", RuntimeWarning,
                          stacklevel=3)
            return get_engine("threads")
        from .processes import shared_engine

        return shared_engine()
    if name == "dask":
        from .dask import DaskEngine

        return DaskEngine(client)
    raise ValueError(f"engine={name!r} is not known")


__all__ = ["Engine", "RunResult", "SerialEngine", "ThreadEngine", "ProcessEngine", "get_engine", "shared_engine"]

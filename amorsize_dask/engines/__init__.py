"""Engines: serial, threads, processes (local) and dask (a cluster).

>>> get_engine("serial").name
'serial'
"""

from __future__ import annotations

from .base import Engine, RunResult, SerialEngine
from .processes import ProcessEngine, shared_engine
from .threads import ThreadEngine

_SERIAL = SerialEngine()
_THREADS = ThreadEngine()


def get_engine(name: str, client=None) -> Engine:
    """The engine called ``name`` (``client`` is used by the dask engine)."""
    if name == "serial":
        return _SERIAL
    if name == "threads":
        return _THREADS
    if name == "processes":
        from ..target.context import can_start_processes

        if not can_start_processes():
            import warnings

            warnings.warn("amorsize_dask: engine='processes' cannot start worker processes in this daemonic "
                          "process (a Dask worker's task?): running on threads instead", RuntimeWarning,
                          stacklevel=3)
            return _THREADS
        return shared_engine()
    if name == "dask":
        from .dask import DaskEngine

        return DaskEngine(client)
    raise ValueError(f"engine={name!r} is not known")


__all__ = ["Engine", "RunResult", "SerialEngine", "ThreadEngine", "ProcessEngine", "get_engine", "shared_engine"]

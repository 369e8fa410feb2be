"""Engines: serial, threads, processes (local) and dask (a cluster).

>>> get_engine("serial").name
'serial'
"""

from __future__ import annotations

import threading

from . import processes
from .base import Engine, RunResult, SerialEngine
from .processes import ProcessEngine
from .threads import ThreadEngine

_SERIAL = SerialEngine()
_THREADS = ThreadEngine()
_SHARED_LOCK = threading.Lock()


def shared_engine() -> ProcessEngine:
    """The process engine of this interpreter, created once even when threads ask at once."""
    with _SHARED_LOCK:
        return processes.shared_engine()


def get_engine(name: str, client=None) -> Engine:
    """The engine called ``name`` (``client`` is used by the dask engine)."""
    if name == "serial":
        return _SERIAL
    if name == "threads":
        return _THREADS
    if name == "processes":
        return shared_engine()
    if name == "dask":
        from .dask import DaskEngine

        return DaskEngine(client)
    raise ValueError(f"engine={name!r} is not known")


__all__ = ["Engine", "RunResult", "SerialEngine", "ThreadEngine", "ProcessEngine", "get_engine", "shared_engine"]

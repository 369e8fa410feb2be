"""Which workloads showed they cannot run on threads (this process's memory of it).

The two-thread probe of :mod:`~amorsize_dask.planning.sampling` runs a function on threads
before any plan is made; an exception seen only there marks the workload here, and its
record carries ``thread_safe: 0`` so that later processes know it too
(:meth:`~amorsize_dask.target.target.Target.thread_safe`).

>>> mark_unsafe("0123456789abcdef"); is_marked_unsafe("0123456789abcdef")
True
>>> is_marked_unsafe("fedcba9876543210")
False
"""

from __future__ import annotations

import threading

from ..learning.index import THREAD_SAFE

__all__ = ["FEATURE", "mark_unsafe", "is_marked_unsafe"]

# The record feature that says a workload failed on threads (0); records hold numbers only.
# The learner keeps it for the workload whatever records follow.
FEATURE = THREAD_SAFE

_UNSAFE: set[str] = set()
_LOCK = threading.Lock()


def mark_unsafe(workload: str) -> None:
    """Remember that ``workload`` (a function key) raised only when run on threads."""
    with _LOCK:
        _UNSAFE.add(workload)


def is_marked_unsafe(workload: str) -> bool:
    """True when this process saw ``workload`` fail only on threads."""
    with _LOCK:
        return workload in _UNSAFE

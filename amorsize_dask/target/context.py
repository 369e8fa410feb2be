"""What ``distributed`` context this code runs in, without importing ``distributed``
when nothing has (the local engines must stay free of it).

>>> active_client() is None or hasattr(active_client(), "submit")
True
>>> current_worker() is None  # not inside a task
True
"""

from __future__ import annotations

import sys

__all__ = ["active_client", "current_worker"]


def active_client():
    """The distributed Client dask itself would use, or None."""
    return _lookup("default_client")


def current_worker():
    """The distributed Worker running the current task, or None."""
    return _lookup("get_worker")


def _lookup(getter: str):
    if "distributed" not in sys.modules:
        return None
    import distributed

    try:
        return getattr(distributed, getter)()
    except ValueError:  # distributed's answer for "there is none"
        return None

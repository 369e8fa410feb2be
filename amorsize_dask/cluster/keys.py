"""Task keys: the part of the protocol between a client's dask runs and the scheduler plugin.

Keys are ``amorsize-<function>-<run id>-<chunk index>``: the plugin tells amorsize's
tasks apart by the ``amorsize-`` prefix and a run's chunks by the run id; Dask's own
per-prefix statistics (``key_split``: work stealing, occupancy, adaptive scaling, the
dashboard) see one prefix per function, as with ``Client.map``.
"""

from __future__ import annotations

import re
import uuid

__all__ = ["KEY_PREFIX", "new_run_id", "key_name", "task_key", "sample_key", "parse_task_key"]

KEY_PREFIX = "amorsize-"
_WORDS = re.compile(r"[A-Za-z]+")


def new_run_id() -> str:
    """A random 16-hex id naming one run's tasks (never all letters: see :func:`task_key`)."""
    while True:
        run_id = uuid.uuid4().hex[:16]
        if not run_id.isalpha():
            return run_id


def key_name(func) -> str:
    """The function's part of its task keys: the letters of its name, as Dask's
    ``key_split`` keeps only alphabetic words after the first.

    >>> def my_func2(x): pass
    >>> key_name(my_func2), key_name(lambda x: x), key_name(None)
    ('my-func', 'lambda', 'func')
    >>> my_func2.__name__ = "deadbeef"; key_name(my_func2)
    'deadbeefx'
    """
    name = getattr(func, "__name__", None) or type(func).__name__
    words = [w.lower() for w in _WORDS.findall(str(name))[:4]]
    # key_split takes an 8-letter word starting with a-f for a hash ("deadbeef") and drops it.
    words = [w + "x" if len(w) == 8 and w[0] in "abcdef" else w for w in words]
    return "-".join(words) if words and func is not None else "func"


def task_key(run_id: str, index: int, func=None) -> str:
    """The key of chunk ``index`` of run ``run_id`` of ``func``.

    >>> task_key("0123456789abcdef", 3, abs)
    'amorsize-abs-0123456789abcdef-3'
    >>> from dask.utils import key_split
    >>> key_split(task_key("0123456789abcdef", 3, abs))
    'amorsize-abs'
    """
    return f"{KEY_PREFIX}{key_name(func)}-{run_id}-{index}"


def sample_key(func) -> str:
    """The key of the task that samples ``func`` on a worker (no run's chunk).

    >>> parse_task_key(sample_key(abs)) is None
    True
    """
    return f"{KEY_PREFIX}{key_name(func)}-{new_run_id()}-sample"


def parse_task_key(key) -> tuple[str, int] | None:
    """``(run id, chunk index)`` of an amorsize task key, None for any other key.

    >>> parse_task_key("amorsize-abs-0123456789abcdef-3"), parse_task_key(("x", 1))
    (('0123456789abcdef', 3), None)
    >>> parse_task_key("amorsize-0123456789abcdef-3")  # keys of amorsize before 11
    ('0123456789abcdef', 3)
    """
    if not isinstance(key, str) or not key.startswith(KEY_PREFIX):
        return None
    head, _, index = key.rpartition("-")
    run_id = head.rpartition("-")[2]
    if len(run_id) != 16 or not index.isdigit():
        return None
    return run_id, int(index)

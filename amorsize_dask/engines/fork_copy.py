"""What a forked worker copies of the caller's memory when it runs a function.

A forked worker shares the caller's pages until it writes to them, and reading a Python
object writes its reference count (a dict lookup writes the key it compares, too): every
page of the caller's objects that the function reads is copied, once in each worker. A
script's function that reads a 30 MB module-level table spent 20-30 ms per worker on it
before computing anything (bench --fresh big-global; its sample, timed in the caller,
cannot see it). Array data is not copied (reading an array's buffer writes nothing), nor
the inside of a long string; their headers are, and the Python objects an object array
or a pandas column of strings holds.

:func:`copied_bytes` estimates it, cheaply: it walks what the function refers to (the
globals its code names, its closure, a bound method's instance, a partial's arguments),
and the elements of each container, sampling :data:`SAMPLED_ELEMENTS` of a long one.

>>> TABLE = {i: str(i) * 3 for i in range(10_000)}
>>> def lookup(x):
...     return TABLE[x]
>>> 600_000 < copied_bytes(lookup) < 1_200_000, copied_bytes(len)
(True, 0)
"""

from __future__ import annotations

import functools
import itertools
import mmap
import sys
import types
from typing import Any

from ..target.workload import attribute_values, global_names
from .pickling import found_by_name

__all__ = ["copied_bytes", "copy_seconds", "FORK_COPY_SECONDS_PER_BYTE", "SAMPLED_ELEMENTS"]

# Seconds a forked worker spends per byte :func:`copied_bytes` estimates, reading them the
# first time, beyond the caller's own first read: bench --fresh's "fork copy" line (big-
# global's 300k-entry table, ~26 MB estimated, two workers): 0.89-1.31 ns/B on this
# 2-core machine over five runs (session 14, each the median of 3-5 fresh interpreters;
# ~24 ms per worker for the table). An estimate that never invents a speedup would take
# the top; 1.0 is what most runs read (a worker's copying overlaps its own computing).
FORK_COPY_SECONDS_PER_BYTE = 1.0e-9

# A long container's size is extrapolated from this many of its elements (the containers
# in a sampled one from NESTED_SAMPLED_ELEMENTS): ~0.2 ms for big-global's 300k-entry
# table instead of ~60 ms to walk it all, ~0.5 ms for a list of 10,000 lists of 100 floats.
SAMPLED_ELEMENTS = 32
NESTED_SAMPLED_ELEMENTS = 8
# Levels of nested containers and called functions walked; deeper ones count their own size.
MAX_DEPTH = 4
# Objects one estimate looks at, at most (~1-2 us each): 32-way containers nested four
# deep would be a million. Past it, objects count nothing (an estimate, never a cost).
# big-global's table takes ~35, a list of 10,000 lists of 100 floats ~290.
MAX_VISITS = 4096
# Columns of a DataFrame looked at for Python objects (strings): wide frames are common.
MAX_COLUMNS = 64
_PAGE = mmap.PAGESIZE
_SKIPPED = (types.ModuleType, type, types.BuiltinFunctionType, types.CodeType)
_SEQUENCES = (list, tuple)
_SETS = (set, frozenset)
_BUFFERS = (str, bytes, bytearray, memoryview)


def copied_bytes(func: Any, *, pickled_only: bool = False) -> int:
    """Estimated bytes of the caller's objects a forked worker copies as ``func`` reads them
    (all of them, at most: a function that reads a few entries of a table copies fewer).
    ``pickled_only``: only those a pickle of ``func`` carries (cloudpickle sends a function
    of an importable module by name, without what it reads)."""
    try:
        return int(_Walk(pickled_only).callable(func, 0))
    except Exception:  # an exotic callable or container must never fail the user's map
        return 0


def copy_seconds(func: Any) -> tuple[int, float]:
    """(:func:`copied_bytes`, the seconds each forked worker spends copying them)."""
    nbytes = copied_bytes(func)
    return nbytes, nbytes * FORK_COPY_SECONDS_PER_BYTE


class _Walk:
    """One estimate: objects seen once (by id, held alive while walking)."""

    def __init__(self, pickled_only: bool = False):
        self.seen: dict[int, Any] = {}
        self.visits = 0
        self.pickled_only = pickled_only

    def _first_time(self, obj: Any) -> bool:
        if id(obj) in self.seen:
            return False
        self.seen[id(obj)] = obj
        return True

    def callable(self, func: Any, depth: int) -> float:
        if depth > MAX_DEPTH or not self._first_time(func):
            return 0.0
        if isinstance(func, types.FunctionType):
            return 0.0 if self.pickled_only and _importable(func) else self._function(func, depth)
        if isinstance(func, types.MethodType):
            return self.callable(func.__func__, depth) + self.value(func.__self__, depth + 1)
        if isinstance(func, functools.partial):
            args = list(func.args) + list((func.keywords or {}).values())
            return self.callable(func.func, depth) + sum(self.value(a, depth + 1) for a in args)
        call = getattr(type(func), "__call__", None)
        if isinstance(call, types.FunctionType) and not isinstance(func, _SKIPPED):  # a callable instance
            return self.callable(call, depth) + self._attributes(func, depth + 1, SAMPLED_ELEMENTS)
        return 0.0

    def _function(self, func: types.FunctionType, depth: int) -> float:
        refs = []
        names = global_names(func.__code__)
        refs += [func.__globals__[name] for name in names if name in func.__globals__]
        for cell in func.__closure__ or ():
            try:
                refs.append(cell.cell_contents)
            except ValueError:  # an empty cell
                pass
        refs += list(func.__defaults__ or ()) + list((func.__kwdefaults__ or {}).values())
        return sum(self.callable(r, depth + 1) if callable(r) else self.value(r, depth + 1) for r in refs)

    def value(self, obj: Any, depth: int, k: int = SAMPLED_ELEMENTS) -> float:
        """Bytes of ``obj`` and what it holds that reading it copies; a container of more
        than ``k`` elements is sampled (and its containers then by fewer)."""
        if callable(obj):
            return self.callable(obj, depth)
        if isinstance(obj, _SKIPPED) or self.visits >= MAX_VISITS or not self._first_time(obj):
            return 0.0
        self.visits += 1
        package = (getattr(type(obj), "__module__", "") or "").split(".")[0]
        if package in ("numpy", "pandas"):
            return self._arrays(obj, depth, k)
        own = sys.getsizeof(obj)
        if isinstance(obj, _BUFFERS):
            return min(own, _PAGE)  # the header's page at most: the text is only read
        if depth >= MAX_DEPTH:
            return own
        if isinstance(obj, dict):
            n, elements = 2 * len(obj), [e for pair in _ends(obj.items(), len(obj), k // 2) for e in pair]
        elif isinstance(obj, _SEQUENCES):
            n, elements = len(obj), _spread(obj, k)
        elif isinstance(obj, _SETS):
            n, elements = len(obj), list(itertools.islice(obj, k))
        else:  # an instance: its attributes
            return own + self._attributes(obj, depth, k)
        # The container's own array is only read (its header's page is written): at most a page.
        return min(own, _PAGE) + self._elements(elements, n, depth, k)

    def _arrays(self, obj: Any, depth: int, k: int) -> float:
        """A numpy or pandas object: a header's page for each array (its data is only read),
        and the Python objects an array of them holds (object dtype, pandas' python-backed
        strings), which reading writes. A DataFrame or Series is never asked its size
        (``__sizeof__`` walks every string it holds); a DataFrame's first :data:`MAX_COLUMNS`
        columns are looked at."""
        columns = [obj]
        if hasattr(obj, "dtypes") and hasattr(obj, "columns"):  # a DataFrame
            columns = [obj.iloc[:, i] for i, dtype in enumerate(obj.dtypes[:MAX_COLUMNS]) if _holds_objects(dtype)]
        total = float(_PAGE)
        for column in columns:
            n = int(getattr(column, "size", 0) or 0)
            if not n or depth >= MAX_DEPTH or not _holds_objects(getattr(column, "dtype", None)):
                continue
            positions = [i * n // k for i in range(min(n, k))]
            flat = column.iloc if hasattr(column, "iloc") else column.flat
            total += self._elements([flat[i] for i in positions], n, depth, k)
        return total

    def _attributes(self, obj: Any, depth: int, k: int) -> float:
        """An instance's attributes (never its ``__dict__``: :func:`..target.workload.attribute_values`)."""
        values = attribute_values(obj)
        return self._elements(_spread(values, k), len(values), depth, k)

    def _elements(self, elements: list, n: int, depth: int, k: int) -> float:
        if not elements:
            return 0.0
        inner = k if len(elements) == n else NESTED_SAMPLED_ELEMENTS
        return sum(self.value(e, depth + 1, inner) for e in elements) * n / len(elements)


def _holds_objects(dtype: Any) -> bool:
    """Does an array of ``dtype`` hold Python objects (numpy's object dtype, pandas' strings
    stored as Python ``str``)?"""
    return bool(getattr(dtype, "hasobject", False)) or getattr(dtype, "storage", None) == "python"


def _importable(func: types.FunctionType) -> bool:
    """Is ``func`` its module's attribute of its qualified name, outside ``__main__`` (so
    cloudpickle sends it by name)?"""
    return getattr(func, "__module__", None) != "__main__" and found_by_name(func)


def _ends(items, n: int, half: int) -> list:
    """The first and the last ``half`` of a dict's ``n`` items (all when there are fewer):
    a table built in order holds its small keys and values first."""
    if n <= 2 * half:
        return list(items)
    return list(itertools.islice(items, half)) + list(itertools.islice(reversed(items), half))


def _spread(seq, k: int) -> list:
    """``k`` elements of ``seq`` evenly spread (all of them when there are fewer)."""
    n = len(seq)
    if n <= k:
        return list(seq)
    return [seq[i * n // k] for i in range(k)]

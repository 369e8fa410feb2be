"""What items and results cost to travel to a worker process and back: bytes and seconds.

The cost model moves ``bytes / bandwidth`` per item, with a bandwidth calibrated on
byte strings, which pickle as a copy. Objects pickle slower than their bytes suggest: a
pandas DataFrame of 2,000 rows (32 KiB) took 80-220 us to pickle and 120-400 us to
unpickle, against 0.13 ms for 32 KiB at the calibrated 254 MiB/s. So the round trip of
the sampled items and results is timed too, and the plan takes the larger of the two.

>>> t = measure([[1, 2], [3]], [3, 3], 2)
>>> t.picklable, t.bytes_in > 0, t.seconds >= 0
(True, True, True)
>>> measure([lambda: 0], [1], 1).picklable  # a lambda pickles only by value: cloudpickle
True
"""

from __future__ import annotations

import pickle
import time
from dataclasses import dataclass

import cloudpickle

__all__ = ["FEATURE", "Travel", "measure", "size", "dumps"]

# The record feature that says a sampled item or result of a workload did not pickle (0):
# a process plan would compute its results twice (in a worker, then here), so none is made
# (:meth:`~amorsize_dask.target.target.Target.auto_engines`).
FEATURE = "picklable"

# Bytes a pickled numpy array takes beyond its buffer (dtype, shape, class): ~150 measured
# with pickle protocol 5 for 1-D float64 arrays; an estimate within 1% for arrays > 16 KB.
_NUMPY_PICKLE_HEADER = 160


@dataclass(frozen=True)
class Travel:
    """Mean pickled bytes per item and per result; ``seconds``: pickling and unpickling
    one item and its result, their share of pickling them together (0 for numpy arrays,
    whose bytes are their cost). ``picklable`` False: some item or result does not pickle
    (then the other figures are 0)."""

    bytes_in: float
    bytes_out: float
    picklable: bool
    seconds: float = 0.0


def measure(items, results, n_items: int) -> Travel:
    """The travel costs of the first ``n_items`` items (and their results) at most."""
    k = min(n_items, len(results))
    if k == 0:
        return Travel(0.0, 0.0, True)
    try:
        bytes_in, seconds_in = _chunk_travel([items[i] for i in range(k)])
        bytes_out, seconds_out = _chunk_travel([results[i] for i in range(k)])
    except Exception:
        return Travel(0.0, 0.0, False)
    return Travel(bytes_in / k, bytes_out / k, True, (seconds_in + seconds_out) / k)


def _chunk_travel(objs: list) -> tuple[int, float]:
    """(pickled bytes, seconds to pickle and unpickle) of ``objs`` as a chunk travels: one
    pickle of them together, beyond an empty list's. Timed beyond the calls' own: a small
    int timed alone read ~2 us, ~100x its share of a chunk's pickle, and ruled out
    processes for bench family tiny. numpy arrays are counted, not pickled: their bytes
    are their cost. Each object is pickled once (pickling them one by one for their sizes
    as well cost pandas-groupby's first call ~0.4 ms more, session 10)."""
    arrays = [_array_bytes(o) for o in objs]
    others = [o for o, nbytes in zip(objs, arrays) if nbytes is None]
    counted = sum(nbytes for nbytes in arrays if nbytes is not None)
    if not others:
        return counted, 0.0
    t0 = time.perf_counter()
    empty = dumps([])
    pickle.loads(empty)
    t1 = time.perf_counter()
    data = dumps(others)
    pickle.loads(data)
    t2 = time.perf_counter()
    return counted + len(data) - len(empty), max(0.0, (t2 - t1) - (t1 - t0))


def size(obj) -> int:
    """Pickled bytes of ``obj`` (raises what pickling raises).

    >>> size(b"x" * 1000) > 1000
    True
    """
    array_bytes = _array_bytes(obj)
    return array_bytes if array_bytes is not None else len(dumps(obj))


def _array_bytes(obj) -> int | None:
    """A numpy array's pickled bytes, its buffer plus a header, counted without a copy."""
    nbytes = getattr(obj, "nbytes", None)
    if isinstance(nbytes, int) and type(obj).__module__ == "numpy" and getattr(obj, "dtype", None) is not None:
        if not obj.dtype.hasobject:
            return nbytes + _NUMPY_PICKLE_HEADER
    return None


def dumps(obj) -> bytes:
    """``obj`` pickled as the process engine sends it, with cloudpickle: a class or function
    of a module in ``sys.modules`` by reference, else by value. (``pickle`` imports a
    class's module by name to pickle it: a module run by ``runpy.run_module`` had its body
    run again by a call's sample, hunt 20; cloudpickle costs ~2.5 us more per pickle, the
    same for the empty list timed beside: not in the figures.)"""
    return cloudpickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL)

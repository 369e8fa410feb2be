"""Running one chunk of items: the code every engine's task executes, wherever it runs.

Kept free of dask and of the rest of the package so worker processes import it fast.
A task measures its own compute time where it runs; failures come back as values
(with the item's index and the traceback text), never as lost work.

>>> out = run_chunk(abs, [-1, 2, -3], 10)
>>> out.results, out.failure
([1, 2, 3], None)
"""

from __future__ import annotations

import pickle
import time
import traceback
from dataclasses import dataclass
from typing import Any


@dataclass
class Failure:
    """An exception raised by the function on item ``index``."""

    index: int
    exception: Any  # the exception itself when it pickles, else None
    type_name: str
    message: str
    traceback_text: str


@dataclass
class ChunkResult:
    """Results of one chunk, the compute seconds measured inside it, or a failure."""

    first_index: int
    results: list
    compute_seconds: float
    failure: Failure | None = None


def run_chunk(func, chunk, first_index: int) -> ChunkResult:
    """Apply ``func`` to each item of ``chunk``; stop at the first exception."""
    results = []
    t0 = time.perf_counter()
    for offset, item in enumerate(chunk):
        try:
            results.append(func(item))
        except Exception as exc:
            return ChunkResult(
                first_index,
                results,
                time.perf_counter() - t0,
                failure=make_failure(exc, first_index + offset),
            )
    return ChunkResult(first_index, results, time.perf_counter() - t0)


def make_failure(exc: BaseException, index: int) -> Failure:
    """Capture ``exc`` so that it can cross a process boundary."""
    text = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
    try:
        pickle.loads(pickle.dumps(exc))
        portable = exc
    except Exception:
        portable = None
    return Failure(index, portable, type(exc).__qualname__, str(exc), text)


def unpicklable_result_failure(results: list, first_index: int) -> Failure | None:
    """A Failure naming the first result that cannot be pickled, or None if all can."""
    for offset, value in enumerate(results):
        try:
            pickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL)
        except Exception as exc:
            err = TypeError(
                f"the result of item {first_index + offset} ({type(value).__name__}) cannot be "
                f"pickled to return it from a worker process: {exc}; return plain data, or use "
                "engine='threads' or engine='serial'"
            )
            return Failure(first_index + offset, err, "TypeError", str(err), "")
    return None


def identity(x):
    """Returns ``x``: the no-op used to measure engine overheads."""
    return x

"""Running one chunk of items: the code every engine's task executes, wherever it runs.

Kept free of dask and of the rest of the package so worker processes import it fast.
A task measures its own compute time where it runs; failures come back as values
(with the item's index and the traceback text), never as lost work. A chunk that
crosses a process goes as cloudpickle bytes (:func:`dump_chunk_result`), so that
classes and exceptions defined in the caller's ``__main__`` come back as its own.

>>> out = run_chunk(abs, [-1, 2, -3], 10)
>>> out.results, out.failure
([1, 2, 3], None)
"""

from __future__ import annotations

import pickle
import time
import traceback
from dataclasses import dataclass, field, replace
from typing import Any

import cloudpickle

from .pickling import dumps

__all__ = ["Failure", "ChunkResult", "run_chunk", "run_packed_chunk", "make_failure", "dump_chunk_result", "identity"]


@dataclass
class Failure:
    """An exception raised by the function on item ``index``."""

    index: int
    exception: Any  # the exception itself (None when it could not travel back)
    type_name: str
    message: str
    traceback_text: str


@dataclass
class ChunkResult:
    """Results of one chunk, the compute seconds measured inside it, or a failure.

    ``untravelled``: ``(index, reason)`` of results that could not be pickled in the
    worker (their places in ``results`` hold None): the caller computes them itself or
    reports them.
    """

    first_index: int
    results: list
    compute_seconds: float
    failure: Failure | None = None
    untravelled: list = field(default_factory=list)


def run_chunk(func, chunk, first_index: int, portable_only: bool = True) -> ChunkResult:
    """Apply ``func`` to each item of ``chunk``; stop at the first exception.

    ``portable_only``: see :func:`make_failure` (False: the exception is kept as raised).
    """
    results: list = []
    t0 = time.perf_counter()
    try:
        # The loop runs in C, as a list comprehension's would (a Python loop with a try per
        # item costs ~5% more on ~1 us items); extend appends as map yields, so an exception
        # leaves exactly the results before the failing item.
        results.extend(map(func, chunk))
    except Exception as exc:
        failure = make_failure(exc, first_index + len(results), portable_only=portable_only)
        return ChunkResult(first_index, results, time.perf_counter() - t0, failure=failure)
    return ChunkResult(first_index, results, time.perf_counter() - t0)


def run_packed_chunk(func, packed, first_index: int) -> ChunkResult:
    """:func:`run_chunk` of a Dask task's items: one cloudpickle bytes object, or a list
    (:func:`~amorsize_dask.engines.transport.items_for_task` chose). The exception of a
    failed item is kept if cloudpickle carries it (distributed falls back to cloudpickle
    for a class of the caller's script, which then comes back as that very class).

    >>> run_packed_chunk(abs, cloudpickle.dumps([-1, -2]), 0).results, run_packed_chunk(abs, [-3], 2).results
    ([1, 2], [3])
    """
    items = cloudpickle.loads(packed) if isinstance(packed, bytes) else packed
    return _portable(run_chunk(func, items, first_index, portable_only=False))


def make_failure(exc: BaseException, index: int, *, portable_only: bool = False) -> Failure:
    """Capture ``exc`` with its traceback text.

    ``portable_only``: keep the exception only if it survives a pickle round trip (for
    transports that use plain pickle); otherwise the caller gets an ``ItemError``.
    """
    text = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
    kept: BaseException | None = exc
    if portable_only:
        try:
            pickle.loads(pickle.dumps(exc))
        except Exception:
            kept = None
    return Failure(index, kept, type(exc).__qualname__, str(exc), text)


def dump_chunk_result(out: ChunkResult, *, by_name: bool = False) -> bytes:
    """``out`` as cloudpickle bytes; what cannot be pickled is left out and said so.
    ``by_name``: the caller's ``__main__`` objects by name (:mod:`.pickling`).

    >>> import threading
    >>> back = cloudpickle.loads(dump_chunk_result(ChunkResult(4, [1, threading.Lock()], 0.0)))
    >>> back.results, [index for index, _ in back.untravelled]
    ([1, None], [5])
    """
    out = _portable(out, by_name)
    try:
        return dumps(out, by_name=by_name)
    except Exception:
        pass
    results, untravelled = list(out.results), []
    for offset, value in enumerate(results):
        try:
            dumps(value, by_name=by_name)
        except Exception as exc:
            results[offset] = None
            untravelled.append((out.first_index + offset, f"{type(value).__name__}: {type(exc).__name__}: {exc}"))
    return dumps(replace(out, results=results, untravelled=untravelled), by_name=by_name)


def _portable(out: ChunkResult, by_name: bool = False) -> ChunkResult:
    """``out`` without its failure's exception if cloudpickle cannot carry it back (the
    caller then gets an ``ItemError`` naming it)."""
    failure = out.failure
    if failure is not None and failure.exception is not None and not _round_trips(failure.exception, by_name):
        return replace(out, failure=replace(failure, exception=None))
    return out


def _round_trips(exc: BaseException, by_name: bool = False) -> bool:
    """True when ``exc`` can be pickled and unpickled (an exception class whose
    ``__init__`` takes other arguments than its ``args`` cannot)."""
    try:
        cloudpickle.loads(dumps(exc, by_name=by_name))
    except Exception:
        return False
    return True


def identity(x):
    """Returns ``x``: the no-op used to measure engine overheads."""
    return x

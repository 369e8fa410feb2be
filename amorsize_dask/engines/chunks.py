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

import copyreg
import pickle
import time
import traceback
from dataclasses import dataclass, field, replace
from typing import Any

import cloudpickle

from .pickling import dumps

__all__ = ["Failure", "ChunkResult", "run_chunk", "run_packed_chunk", "make_failure", "portable_failure",
           "pickle_by_state", "dump_chunk_result", "dump_task_result", "without_unpicklable", "identity"]


@dataclass
class Failure:
    """An exception raised by the function on item ``index``."""

    index: int  # a Bag of unknown partition sizes names it "3 of partition 7" (:mod:`..bag`)
    exception: Any  # the exception itself (None when it could not travel back)
    type_name: str
    message: str
    traceback_text: str


@dataclass
class ChunkResult:
    """Results of one chunk, the compute seconds measured inside it, or a failure.

    ``untravelled``: ``(index, reason)`` of results that could not be pickled in the
    worker (their places in ``results`` hold None): the caller computes them itself or
    reports them. ``load_seconds``: what the worker spent loading the function for it when
    that imported modules (once per worker), apart from ``compute_seconds``.
    """

    first_index: int
    results: list
    compute_seconds: float
    failure: Failure | None = None
    untravelled: list = field(default_factory=list)
    load_seconds: float = 0.0

    def as_task_result(self) -> tuple:
        """As a Dask task returns it: a plain tuple, which distributed sizes, spills and
        sends part by part. Returned whole, a chunk of one 48 MB array was sized at 56
        bytes and, sized right, still went through pickle whole: workers limited to 300 MB
        were killed again and again, where ``Client.map`` of the same arrays, or of them
        in a tuple, ran (/tmp m2.py, session 20)."""
        return (self.first_index, self.results, self.compute_seconds, self.failure, self.untravelled)

    @classmethod
    def from_task_result(cls, value) -> "ChunkResult":
        """The ChunkResult of what a Dask task returned (:meth:`as_task_result`).

        >>> ChunkResult.from_task_result(ChunkResult(3, [1], 0.0).as_task_result()).results
        [1]
        """
        return value if isinstance(value, cls) else cls(*value)


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
    except KeyboardInterrupt:  # Ctrl-C in the caller's thread: at once, not after earlier chunks
        raise
    except BaseException as exc:  # SystemExit, CancelledError...: an earlier item's failure still wins
        failure = make_failure(exc, first_index + len(results), portable_only=portable_only)
        return ChunkResult(first_index, results, time.perf_counter() - t0, failure=failure)
    if len(results) < len(chunk):
        # func raised StopIteration, which ends map's iteration without a word: the items
        # after it would be lost (or a later chunk's results shifted). It is an error here,
        # as on a pool (the exception object itself is gone: a new one names the item).
        exc = StopIteration(f"{_name(func)} raised StopIteration on item {first_index + len(results)}; "
                            "inside map() that ends the iteration silently, here it is an error")
        failure = make_failure(exc, first_index + len(results))
        return ChunkResult(first_index, results, time.perf_counter() - t0, failure=failure)
    return ChunkResult(first_index, results, time.perf_counter() - t0)


def _name(func) -> str:
    return getattr(func, "__qualname__", None) or type(func).__name__


def run_packed_chunk(func, packed, first_index: int) -> tuple:
    """:func:`run_chunk` of a Dask task's items: one cloudpickle bytes object, or a list
    (:func:`~amorsize_dask.engines.transport.items_for_task` chose), as the task returns it
    (:meth:`ChunkResult.as_task_result`). The exception of a failed item is kept if
    cloudpickle carries it (distributed falls back to cloudpickle for a class of the
    caller's script, which then comes back as that very class).

    >>> ChunkResult.from_task_result(run_packed_chunk(abs, cloudpickle.dumps([-1, -2]), 0)).results
    [1, 2]
    """
    items = cloudpickle.loads(packed) if isinstance(packed, bytes) else packed
    return _portable(run_chunk(func, items, first_index, portable_only=False)).as_task_result()


def dump_task_result(value) -> bytes:
    """:func:`dump_chunk_result` of what a Dask task returned (:func:`run_packed_chunk`)."""
    return dump_chunk_result(ChunkResult.from_task_result(value))


def make_failure(exc: BaseException, index: int, *, portable_only: bool = False) -> Failure:
    """Capture ``exc`` with its traceback text (none for an error made, not raised: the
    caller's own about a worker, which has no frames to show).

    ``portable_only``: keep the exception only if it survives a pickle round trip (for
    transports that use plain pickle); otherwise the caller gets an ``ItemError``.
    """
    text = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__)) if exc.__traceback__ else ""
    kept: BaseException | None = exc
    if portable_only:
        kept = _portable_exception(exc, lambda e: pickle.loads(pickle.dumps(e)))
    return Failure(index, kept, type(exc).__qualname__, _message(exc), text)


def _message(exc: BaseException) -> str:
    """``str(exc)``, or what ``traceback`` says of an exception whose ``__str__`` fails."""
    try:
        return str(exc)
    except Exception:
        return "<exception str() failed>"


class ByState:
    """An exception that pickles as its class, ``args`` and attributes, rebuilt without
    calling its ``__init__`` (which ``pickle`` calls with ``args`` alone: a class whose
    ``__init__`` takes ``(status, url)`` then fails to unpickle). Unpickled, it is the
    exception itself.

    >>> class HTTPError(Exception):
    ...     def __init__(self, status, url):
    ...         super().__init__(f"{status} {url}"); self.status = status
    >>> back = cloudpickle.loads(cloudpickle.dumps(ByState(HTTPError(404, "/a"))))
    >>> type(back).__name__, back.args, back.status
    ('HTTPError', ('404 /a',), 404)
    """

    def __init__(self, exc: BaseException):
        self.exc = exc

    def __reduce__(self):
        return _rebuilt, (type(self.exc), self.exc.args, dict(getattr(self.exc, "__dict__", {})))


def pickle_by_state(cls: type) -> None:
    """Pickle exceptions of ``cls`` by state in this process from now on (``copyreg``, which
    pickle and cloudpickle follow): for an exception raised where another library pickles
    it, as Dask does a task's (:class:`ByState` says why)."""
    copyreg.pickle(cls, lambda exc: ByState(exc).__reduce__())


def _rebuilt(cls, args: tuple, state: dict) -> BaseException:
    exc = cls.__new__(cls, *args)
    exc.args = args
    exc.__dict__.update(state)
    return exc


def _portable_exception(exc: BaseException, round_trip) -> BaseException | ByState | None:
    """``exc`` if ``round_trip(exc)`` works, else the exception by state if that does,
    else None (the caller then gets an ``ItemError`` naming it)."""
    for candidate in (exc, ByState(exc)):
        try:
            round_trip(candidate)
        except Exception:
            continue
        return candidate
    return None


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
    return dumps(without_unpicklable(out, by_name=by_name), by_name=by_name)


def without_unpicklable(out: ChunkResult, *, by_name: bool = False) -> ChunkResult:
    """``out`` with each result that cannot be pickled left out (None in its place) and
    named in ``untravelled``: ``(index, why)``.

    >>> import threading
    >>> without_unpicklable(ChunkResult(4, [1, threading.Lock()], 0.0)).untravelled[0][0]
    5
    """
    results, untravelled = list(out.results), []
    for offset, value in enumerate(results):
        try:
            dumps(value, by_name=by_name)
        except Exception as exc:
            results[offset] = None
            untravelled.append((out.first_index + offset, f"{type(value).__name__}: {type(exc).__name__}: {exc}"))
    return replace(out, results=results, untravelled=untravelled)


def _portable(out: ChunkResult, by_name: bool = False) -> ChunkResult:
    """``out`` with its failure made portable (:func:`portable_failure`)."""
    if out.failure is None:
        return out
    failure = portable_failure(out.failure, by_name=by_name)
    return out if failure is out.failure else replace(out, failure=failure)


def portable_failure(failure: Failure, *, by_name: bool = False) -> Failure:
    """``failure`` with its exception as cloudpickle can carry it back: as it is, else by
    state (:class:`ByState`), else not at all (the caller then gets an ``ItemError``
    naming it)."""
    if failure.exception is None:
        return failure
    kept = _portable_exception(failure.exception, lambda e: cloudpickle.loads(dumps(e, by_name=by_name)))
    return failure if kept is failure.exception else replace(failure, exception=kept)


def identity(x):
    """Returns ``x``: the no-op used to measure engine overheads."""
    return x

"""The engine interface: run chunks of items, return results in order and compute time.

>>> from amorsize_dask.engines.base import SerialEngine
>>> SerialEngine().run(abs, [-1, -2], n_workers=1, chunksize=1, first_index=0).results
[1, 2]
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Sequence

from ..errors import ItemError, reraise_with_item
from ..target.workload import function_name
from .chunks import ByState, ChunkResult, Failure, run_chunk

__all__ = ["RunResult", "Engine", "SerialEngine", "chunk_bounds", "raise_failure", "raise_failure_in_generator",
           "assemble", "FirstFailure", "Gathered"]


@dataclass
class RunResult:
    """Results in item order and the sum of compute seconds measured inside the tasks.

    ``notes``: what the engine did differently from its plan (e.g. items that could not
    be pickled, run in the caller instead), for the plan's reasons.
    """

    results: list
    compute_seconds: float
    n_tasks: int
    notes: tuple = ()


class Engine:
    """Runs ``func`` over ``items`` in tasks of ``chunksize`` items on ``n_workers`` workers."""

    name = "engine"

    def run(
        self,
        func: Callable,
        items: Sequence,
        *,
        n_workers: int,
        chunksize: int,
        first_index: int,
        progress=None,
    ) -> RunResult:
        raise NotImplementedError

    def shutdown(self) -> None:
        """Release workers; the engine may be used again afterwards."""


class SerialEngine(Engine):
    """In-process, in order: for work too small to pay any overhead."""

    name = "serial"

    def run(self, func, items, *, n_workers=1, chunksize=1, first_index=0, progress=None):
        if progress is None:
            out = run_chunk(func, items, first_index, portable_only=False)
            raise_failure(out.failure, func)
            return RunResult(out.results, out.compute_seconds, 1)
        results, compute, n_tasks = [], 0.0, 0
        for lo in range(0, len(items), chunksize):
            out = run_chunk(func, items[lo : lo + chunksize], first_index + lo, portable_only=False)
            raise_failure(out.failure, func)
            results.extend(out.results)
            compute += out.compute_seconds
            n_tasks += 1
            progress.advance(len(out.results))
        return RunResult(results, compute, n_tasks)


def chunk_bounds(n_items: int, chunksize: int) -> list[tuple[int, int]]:
    """``[(lo, hi), ...]`` covering ``range(n_items)`` in chunks of ``chunksize``.

    >>> chunk_bounds(5, 2)
    [(0, 2), (2, 4), (4, 5)]
    """
    return [(lo, min(lo + chunksize, n_items)) for lo in range(0, n_items, chunksize)]


def raise_failure(failure: Failure | None, func, *, remote: bool = False) -> None:
    """Re-raise a task's failure in the caller, naming the item (no-op for None).

    ``remote``: the task ran in another process, so its traceback text is attached.
    """
    if failure is None:
        return
    exc = failure.exception
    if isinstance(exc, ByState):  # never pickled on its way here
        exc = exc.exc
    if exc is None:
        exc = ItemError(f"{failure.type_name}: {failure.message}")
    text = failure.traceback_text if remote else None
    reraise_with_item(exc, failure.index, func, text or None)


def raise_failure_in_generator(failure: Failure | None, func, *, remote: bool = False) -> None:
    """:func:`raise_failure` where a StopIteration cannot pass (in a generator, PEP 479,
    or a Dask task): that one as a RuntimeError naming the item, the exception its cause."""
    try:
        raise_failure(failure, func, remote=remote)
    except StopIteration as exc:
        raise RuntimeError(f"{function_name(func)} raised StopIteration on item {failure.index}; it ends a "
                           "generator, so here it is an error") from exc


def assemble(chunks: dict[int, ChunkResult]) -> tuple[list, float]:
    """The results of ``chunks`` (by their offset: whole chunks, or the pieces of one that
    was halved) in item order, up to the first gap (after a failure), and their compute
    seconds.

    >>> assemble({0: ChunkResult(0, [1, 2], 0.5), 2: ChunkResult(2, [3], 0.25), 5: ChunkResult(5, [6], 0.0)})
    ([1, 2, 3], 0.75)
    """
    results: list = []
    compute = 0.0
    for lo in sorted(chunks):
        if lo != len(results):
            break
        results.extend(chunks[lo].results)
        compute += chunks[lo].compute_seconds
    return results, compute


class FirstFailure:
    """The failure a run raises: the lowest item index's, as ``builtins.map`` stops at the
    first item that fails, not the first chunk to come back from a worker (two items
    failing on a pool raised the later one in 3-6 runs of 6). Once item ``i`` failed, only
    chunks starting before ``i`` can hold an earlier failure: the others need not run.

    >>> first = FirstFailure()
    >>> first.keep(Failure(160, None, "LateError", "160", ""), remote=True)
    >>> first.keep(Failure(150, None, "EarlyError", "150", ""), remote=True)
    >>> first.failure.type_name, first.needed(155), first.needed(140)
    ('EarlyError', False, True)
    """

    def __init__(self):
        self.failure: Failure | None = None
        self.remote = False

    def keep(self, failure: Failure | None, *, remote: bool) -> None:
        """A chunk's failure (None: it had none); kept when it is the earliest so far."""
        if failure is not None and (self.failure is None or failure.index < self.failure.index):
            self.failure, self.remote = failure, remote

    def needed(self, first_item: int) -> bool:
        """May a chunk starting at item ``first_item`` still matter?"""
        return self.failure is None or first_item < self.failure.index

    def raise_if_any(self, func) -> None:
        raise_failure(self.failure, func, remote=self.remote)


class Gathered:
    """One run's finished chunks (by their offset in the run's items), its earliest
    failure and its progress bar: what every engine keeps as chunks come back.

    >>> g = Gathered(first_index=100, progress=None)
    >>> g.take(0, ChunkResult(100, [1, 2], 0.5), remote=False)
    True
    >>> g.take(4, ChunkResult(104, [], 0.1, failure=Failure(104, None, "KeyError", "4", "")), remote=True)
    False
    >>> g.needed(2), g.needed(6), g.unneeded([("a", 2), ("b", 6)])
    (True, False, ['b'])
    """

    def __init__(self, first_index: int, progress):
        self.chunks: dict[int, ChunkResult] = {}
        self.first = FirstFailure()  # raised by :meth:`results`, once every chunk before it is in
        self.first_index, self.progress = first_index, progress

    def needed(self, lo: int) -> bool:
        """May the chunk at offset ``lo`` still matter (no item before it failed)?"""
        return self.first.needed(self.first_index + lo)

    def unneeded(self, futures) -> list:
        """Of ``(future, lo)`` pairs, the futures of chunks after the earliest failure."""
        return [fut for fut, lo in futures if not self.needed(lo)]

    def take(self, lo: int, out: ChunkResult, *, remote: bool) -> bool:
        """Keep a finished chunk; False when it failed (the chunks after it are not needed)."""
        if out.failure is not None:
            self.first.keep(out.failure, remote=remote)
            return False
        self.chunks[lo] = out
        if self.progress is not None:
            self.progress.advance(len(out.results))
        return True

    def results(self, func, bounds) -> tuple[list, float]:
        """The results in item order and their compute seconds; or the earliest failure, raised."""
        self.first.raise_if_any(func)
        results, compute = assemble(self.chunks)
        expected = bounds[-1][1] if bounds else 0
        if len(results) != expected:  # never a shorter list: a bug of ours, said as such
            raise RuntimeError(f"amorsize_dask: {len(results)} results gathered of {expected} items; please report this")
        return results, compute

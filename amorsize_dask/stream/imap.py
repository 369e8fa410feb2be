"""``imap``: ``map`` as a lazy iterator with bounded memory.

The input is read as results are wanted; at most a few chunks per worker are in flight,
so memory is ``O(workers × chunksize)`` whatever the input's length. The first items run
here, one at a time, and their results are yielded at once while they are timed (on a
cluster: a first small task on a worker); from that the stream chooses its engine and
chunk size, and re-sizes chunks as the measured cost per item moves. The run is recorded
when the input ends (its length is known then).

>>> import amorsize_dask as ad
>>> it = ad.imap(abs, iter([-1, -2, -3]))
>>> next(it), list(it)
(1, [2, 3])
>>> list(ad.imap(pow, [2, 3, 4], [1, 2]))
[2, 9]
"""

from __future__ import annotations

import itertools
import time
from typing import Callable, Iterable, Iterator

from .. import config, validation
from ..engines import exit_hooks
from ..engines.base import raise_failure_in_generator
from ..inputs import StarCall
from ..mapping import engine_at_exit
from ..target.context import engine_dask_names
from ..progress import make_progress
from .planner import StreamPlanner, take
from .submitters import submitter_for

__all__ = ["imap"]


@config.looked_up_once  # its checks and planner's setup; the stream reads settings as it runs
def imap(
    func: Callable,
    *iterables: Iterable,
    client=None,
    engine: str = "auto",
    n_workers: int | None = None,
    chunksize: int | None = None,
    training_dir=None,
    learn: bool = True,
    progress=False,
    ordered: bool = True,
) -> Iterator:
    """``map(func, *iterables)`` as an iterator, run the fastest way this machine or cluster knows.

    Results come in input order (``ordered=True``) or as chunks finish (``ordered=False``).
    An exception raised by ``func`` is raised at its item's position, after every result
    before it. Closing the iterator (``break``, ``.close()``, garbage collection) cancels the
    work in flight.

    >>> list(imap(str.upper, "ab", engine="threads"))
    ['A', 'B']
    """
    n_workers, chunksize = validation.check_call(func, iterables, client=client, engine=engine, n_workers=n_workers,
                                                 chunksize=chunksize, training_dir=training_dir)
    validation.check_progress(progress)
    validation.check_bool("learn", learn)
    validation.check_bool("ordered", ordered)
    engine = engine_at_exit(engine_dask_names(engine, client), client)
    # A zip asked again after it ended reads the longer iterables once more (builtins.map
    # does not): chain() ends for good.
    source = iter(iterables[0]) if len(iterables) == 1 else itertools.chain(zip(*iterables))
    call = func if len(iterables) == 1 else StarCall(func)
    planner = StreamPlanner(func, call, client=client, engine=engine, n_workers=n_workers,
                            chunksize=chunksize, training_dir=training_dir)
    return _stream(call, source, planner, learn=learn, progress=progress, ordered=ordered)


def _stream(call, source, planner: "StreamPlanner", *, learn, progress, ordered):
    """The generator behind :func:`imap` (its ``finally`` is what closing cancels)."""
    bar = make_progress(progress, None)
    active = _ActiveClock()
    pending = None
    completed = False
    try:
        with active:
            head = planner.sample(source)
        for value in head.results:
            if bar is not None:
                bar.advance(1)
            yield value
        with active:
            if head.failure is not None:
                raise_failure_in_generator(head.failure, planner.func, remote=head.remote)
            if head.input_error is not None:
                raise head.input_error  # as builtins.map: after the results of the items before it
            pending = _Pending(planner, submitter_for(planner), ordered)
        with exit_hooks.mapping_here():  # a non-daemon thread's stream outlives the main thread's return
            for value in _run(source, pending, planner, active, bar):
                yield value
        completed = True
    finally:
        if pending is not None:
            pending.cancel()
        if bar is not None:
            bar.close(stopped=not completed)
        if completed and learn:
            planner.record(wall_seconds=active.seconds)


def _run(source, pending: "_Pending", planner, active: "_ActiveClock", bar):
    """Keep ``pending`` full from ``source``; yield results as the plan's order allows."""
    first = planner.n_done
    exhausted, input_error = False, None
    while True:
        with active:
            while not exhausted and pending.has_room():
                t_read = time.perf_counter()
                chunk, input_error = take(source, planner.chunksize)
                planner.observe_read(time.perf_counter() - t_read, len(chunk))
                exhausted = input_error is not None or not chunk
                if chunk:
                    pending.submit(chunk, first)
                    first += len(chunk)
            if not pending:
                if input_error is not None:
                    raise input_error  # every result before it delivered, as builtins.map
                return
            out = pending.next_done()
            planner.observe(out)
            pending.follow_plan()
        for value in out.results:
            if bar is not None:
                bar.advance(1)
            yield value
        if out.failure is not None:
            with active:
                pending.cancel()
                raise_failure_in_generator(out.failure, planner.func, remote=pending.remote)


class _Pending:
    """Chunks in flight on one submitter, at most ``planner.max_in_flight`` at once."""

    def __init__(self, planner, submitter, ordered: bool):
        self.planner = planner
        self.submitter = submitter
        self.ordered = ordered
        self.remote = submitter.remote
        self.engine = planner.engine
        self._tasks: list = []  # (chunk, first index, handle), in submission order

    def __len__(self) -> int:
        return len(self._tasks)

    def follow_plan(self) -> None:
        """Move to the planner's engine when it changed (once nothing is in flight here)."""
        if self.planner.engine != self.engine and not self._tasks:
            self.submitter.close()
            self.submitter = submitter_for(self.planner)
            self.engine, self.remote = self.planner.engine, self.submitter.remote

    def has_room(self) -> bool:
        return len(self._tasks) < self.planner.max_in_flight

    def submit(self, chunk: list, first: int) -> None:
        self._tasks.append((chunk, first, self.submitter.submit(chunk, first)))

    def next_done(self):
        """The first chunk in order (or the first to finish, unordered), its results collected."""
        if self.ordered:
            position = 0
        else:
            position = self.submitter.first_done([handle for _, _, handle in self._tasks])
        chunk, first, handle = self._tasks.pop(position)
        return self.submitter.result(handle, chunk, first)

    def cancel(self) -> None:
        """Drop what is in flight; the stream is done with its submitter."""
        tasks, self._tasks = self._tasks, []
        try:
            self.submitter.cancel([handle for _, _, handle in tasks])
        finally:
            self.submitter.close()


class _ActiveClock:
    """Seconds spent inside the stream (not in the consumer between results)."""

    def __init__(self):
        self.seconds = 0.0
        self._t0 = 0.0

    def __enter__(self):
        self._t0 = time.perf_counter()
        return self

    def __exit__(self, *exc):
        self.seconds += time.perf_counter() - self._t0
        return False


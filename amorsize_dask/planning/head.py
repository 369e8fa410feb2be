"""A call's head: its first items, run here before the planner is loaded.

A script's first ``ad.map`` loaded dask (the settings' home), numpy (the training store)
and the planner before it ran an item: 0.16-0.24 s on this project's machine (session 23,
``bench --fresh``'s ours-imports), for 10 items that ``builtins.map`` runs in
microseconds; 200 items of 0.25 ms ran 4x slower than a list comprehension. So while
this process has not loaded the planner and nothing could configure the call
(:func:`allowed`: then the settings are the shipped defaults, and no client can be
active), a call of ``engine="auto"`` runs its items here first, timed as the sampler
times them (:func:`run_head`). It goes on to the end unless the items left are worth the hand-over
to the planner (:func:`handover_after`); then the sampler continues the head's timing
(:func:`taken_for`): its items are never run again.

>>> h = run_head(abs, ([-1, -2, -3],))
>>> h.results, h.done
([1, 2, 3], True)
>>> h.clock.close()
"""

from __future__ import annotations

import contextvars
import sys
import time
from contextlib import contextmanager

from .. import dask_sources, inputs
from ..target.machine import cpu_count
from .cpu_clock import COMPUTING_CPU_RATIO, ThreadClock
from ..errors import reraise_with_item

__all__ = ["HANDOVER_SECONDS", "MIN_HANDOVER_SECONDS", "Head", "handover_after", "allowed", "continued", "run_head",
           "taken_for", "timed_serially"]

# What handing a call over to the planner costs a script's first call, at least: loading
# dask, numpy and the planner took 0.16-0.24 s of a first ad.map of 10 trivial items here
# (session 23, its tiny script; bench --fresh ours-imports says the same); without dask
# (dask_sources.py) importing amorsize_dask.mapping takes ~0.12 s, less for a script that
# loaded numpy itself. Rounded down: the head hands over no later than it should.
HANDOVER_SECONDS = 0.12


def handover_after(cores: int, cpu_ratio: float) -> float:
    """Seconds of items left that are worth handing over: ``R`` such that the hand-over
    (:data:`HANDOVER_SECONDS`) and the rest on ``c`` workers, ``R / c``, take less than
    running them here, ``R``: ``R > HANDOVER_SECONDS * c / (c - 1)``. ``c`` is the cores
    for a function that computes (two at least: a tail the head misjudged is handed over
    on one core too), many threads for one that waits (then about the hand-over itself);
    at least :data:`MIN_HANDOVER_SECONDS`.

    >>> round(handover_after(2, 1.0), 2), handover_after(8, 1.0), handover_after(2, 0.1)
    (0.24, 0.2, 0.2)
    """
    c = max(2, cores) if cpu_ratio >= COMPUTING_CPU_RATIO else _WAITING_WORKERS
    return max(MIN_HANDOVER_SECONDS, HANDOVER_SECONDS * c / (c - 1))


# Less work left than this the planner keeps serial on a machine whose overheads are not
# measured yet (planner.CALIBRATE_ABOVE_SECONDS, held equal by a test): handed over, 20
# sleeps of 10 ms paid the planner's loading and then ran serially, run after run (hunt 18).
MIN_HANDOVER_SECONDS = 0.2


# The threads a function that waits could run on (amorsize.planner.max-threads' default).
_WAITING_WORKERS = 64


class Head:
    """The items of a call (:func:`..inputs.prepare`) and what running the first of them
    here measured: their results, seconds per item of each batch and the batches' sizes,
    the clock that timed them (the sampler goes on with it), and when the head began and
    ended (then the call loaded the planner: a one-time cost, not the items').
    (A plain class: ``dataclasses`` would load ``inspect``, ~5 ms of a short call.)"""

    def __init__(self, call, items, input_error: BaseException | None):
        self.call, self.items, self.input_error = call, items, input_error
        self.results: list = []
        self.per_item: list[float] = []
        self.batch_sizes: list[int] = []
        self.clock: ThreadClock | None = None
        self.started = self.ended = time.perf_counter()

    @property
    def seconds(self) -> float:
        """How long the head ran its items."""
        return self.ended - self.started

    @property
    def done(self) -> bool:
        """Did the head map every item (and was every item read)?"""
        return self.input_error is None and len(self.results) == len(self.items)

    def close(self) -> None:
        if self.clock is not None:
            self.clock.close()


def allowed(engine: str, client, n_workers, chunksize, progress) -> bool:
    """May this call run its head: ``engine="auto"`` with nothing fixed and no bar, in a
    process that has not loaded the planner (a call planned before: what the head saves is
    paid, and a warm pool may take the last items, as speculation does) and where nothing
    but the shipped defaults could configure it (:func:`..dask_sources.configured`: then no
    client can be active either)?"""
    if engine != "auto" or client is not None or n_workers is not None or chunksize is not None or progress:
        return False
    return "amorsize_dask.mapping" not in sys.modules and not dask_sources.configured()


def run_head(func, iterables: tuple, cores: int | None = None) -> Head:
    """Read the items and run the first of them here, in batches, until all are done, or
    the rest at the latest batch's pace, or the head's own time, passes
    :func:`handover_after` (of ``cores``: this process's by default). An item that raises
    is raised with its index, as the sampler raises it."""
    call, items, input_error = inputs.prepare(func, iterables)
    head = Head(call, items, input_error)
    if input_error is not None or not len(items):
        return head
    # Native threads spinning now (a BLAS's, after the caller's matrix product) are not
    # waited for, as the sampler's clock waits up to 15 ms: a short call would pay it
    # (hunt 18: 16 ms per 10-item call after a matrix product); then none are counted.
    head.clock = ThreadClock(native=True, native_wait=0.0)  # no dask loaded: not in a Dask worker
    try:
        _run_batches(head, cores or cpu_count())
    except BaseException:
        head.close()
        raise
    finally:
        head.ended = time.perf_counter()
    return head


def _run_batches(head: Head, cores: int) -> None:
    """Batches doubling while shorter than :data:`_PACE_READ_SECONDS`, until :func:`_past`;
    a batch stops early past the head's own time (:func:`_timed_until`)."""
    items, batch = head.items, 1
    handover = handover_after(cores, head.clock.cpu_ratio())
    while len(head.results) < len(items):
        size = min(batch, len(items) - len(head.results))
        with head.clock.span():
            per_item, size = _timed_until(head, size, head.started + handover)
        head.per_item.append(per_item)
        head.batch_sizes.append(size)
        handover = handover_after(cores, head.clock.cpu_ratio())  # with this batch's reading
        paced = len(head.per_item) > 1 and per_item * size >= _PACE_READ_SECONDS
        if _past(time.perf_counter() - head.started, (len(items) - len(head.results)) * per_item, paced, handover):
            return
        if per_item * size < _PACE_READ_SECONDS:
            batch *= 2


# Items run between two looks at the clock in a head's batch: a dear tail after cheap items
# (3,000 of 1 us, then 150 of 20 ms: hunt 18) fell inside one batch of 1,153 items and ran
# wholly in the caller, 3.0 s against 1.9 s planned; it now stops within this many dear
# items. A look costs ~50 ns: under 1% of a 1 us item's time at this stride.
_ITEMS_PER_LOOK = 8


def _timed_until(head: Head, n: int, deadline: float) -> tuple[float, int]:
    """Run the next ``n`` items here (fewer once ``deadline`` passes), appending their
    results: (seconds per item, items run)."""
    call, items, results = head.call, head.items, head.results
    first = len(results)
    t0 = time.perf_counter()
    for lo in range(first, first + n, _ITEMS_PER_LOOK):
        timed_serially(call, items, lo, min(_ITEMS_PER_LOOK, first + n - lo), results)
        if time.perf_counter() > deadline:
            break
    done = len(results) - first
    return (time.perf_counter() - t0) / done, done


# A batch shorter than this, or the first, does not tell the pace of the rest: a fresh
# process's first item of bench --fresh tiny read 6.6 us (then 1.5, 1.4, 0.73, 0.6 us in
# batches of 2, 4, 8, 16), pandas-groupby's 3.4 ms (then ~0.4 ms; session 10's sample).
# Until one does, the head goes on while it has run a tenth of the hand-over's worth.
_PACE_READ_SECONDS = 1e-3


def _past(elapsed: float, rest: float, paced: bool, handover: float) -> bool:
    """Does the head stop after ``elapsed`` seconds, with ``rest`` seconds of items left at
    the latest batch's pace (``paced``: a batch that tells it, see :data:`_PACE_READ_SECONDS`)?
    Once it has run ``handover`` seconds itself (a dear tail its pace missed), or when the
    rest is worth handing over."""
    if elapsed > handover:
        return True
    return (paced or elapsed > handover / 10) and rest > handover


def timed_serially(func, items, first: int, n: int, results: list) -> float:
    """Run items[first:first+n] here, appending to ``results``; seconds per item."""
    t0 = time.perf_counter()
    for i in range(first, first + n):
        try:
            results.append(func(items[i]))
        except Exception as exc:
            reraise_with_item(exc, i, func)
    return (time.perf_counter() - t0) / n


_CONTINUED: contextvars.ContextVar[Head | None] = contextvars.ContextVar("amorsize_head", default=None)


@contextmanager
def continued(head: Head | None):
    """Within the block, the sampler of ``head.items`` continues ``head`` (:func:`taken_for`)."""
    token = _CONTINUED.set(head)
    try:
        yield
    finally:
        _CONTINUED.reset(token)


def taken_for(items) -> Head | None:
    """The head the sampler of ``items`` continues, once (a map nested in the function
    finds none): the head :func:`continued` set, if its items are these."""
    head = _CONTINUED.get()
    if head is None or head.items is not items or not head.results:
        return None
    _CONTINUED.set(None)
    return head

"""A call's head: its first items, run here before the planner is loaded.

A script's first ``ad.map`` loaded dask (the settings' home), numpy (the training store)
and the planner before it ran an item: 0.16-0.24 s on this project's machine (session 23,
``bench --fresh``'s ours-imports), for 10 items that ``builtins.map`` runs in
microseconds, and 200 items of 0.25 ms ran 4x slower than a list comprehension. No plan
can win that back on a short job: it pays the imports, then runs at best half as long on
two cores. So while nothing in this process has loaded dask, and nothing configures it
(no ``DASK_*`` variable but the training directory's, none of its configuration folders:
the settings are the shipped defaults), a call of ``engine="auto"`` runs its items here first, timed as the sampler
times them (:func:`run_head`). A job done within :data:`HEAD_SECONDS` returns there; a
longer one stops the head as soon as its items project past it, and the sampler
continues the head's timing (:func:`taken_for`): its items are never run again.

>>> h = run_head(abs, ([-1, -2, -3],))
>>> h.results, h.done
([1, 2, 3], True)
>>> h.clock.close()
"""

from __future__ import annotations

import contextvars
import os
import site
import sys
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Callable

from .. import inputs
from .cpu_clock import ThreadClock
from ..errors import reraise_with_item

__all__ = ["HEAD_SECONDS", "Head", "allowed", "continued", "run_head", "taken_for", "timed_serially"]

# A job projected to finish within this runs wholly in the head. Half the first call's
# lazy imports measured here (0.16-0.24 s: bench --fresh ours-imports, session 23): a job
# this short gains at most half of it on two cores (less a pool's 9-17 ms start), which
# never repays the imports a plan needs. A longer job stops the head once its items
# project past it: what it ran serially, the sampler would have timed serially too.
HEAD_SECONDS = 0.1


@dataclass
class Head:
    """The items of a call (:func:`..inputs.prepare`) and what running the first of them
    here measured: their results, seconds per item of each batch and the batches' sizes,
    the clock that timed them (the sampler goes on with it), and when the head began."""

    call: Callable
    items: object
    input_error: BaseException | None
    results: list = field(default_factory=list)
    per_item: list = field(default_factory=list)
    batch_sizes: list = field(default_factory=list)
    clock: ThreadClock | None = None
    started: float = field(default_factory=time.perf_counter)

    @property
    def done(self) -> bool:
        """Did the head map every item (and was every item read)?"""
        return self.input_error is None and len(self.results) == len(self.items)

    def close(self) -> None:
        if self.clock is not None:
            self.clock.close()


# Settings a call done in its head does not read: where runs are recorded (it records
# none: see :func:`run_head`). Any other ``DASK_*`` variable may configure the call.
_HEAD_IGNORES = frozenset({"DASK_AMORSIZE__TRAINING_DIR"})


def allowed(engine: str, client, n_workers, chunksize, progress) -> bool:
    """May this call run its head: ``engine="auto"`` with nothing fixed and no bar, in a
    process where dask is not loaded and nothing would configure it (then no client can
    be active, and the ``amorsize`` settings are the shipped defaults)?"""
    if engine != "auto" or client is not None or n_workers is not None or chunksize is not None or progress:
        return False
    if "dask" in sys.modules or any(name.startswith("DASK_") and name not in _HEAD_IGNORES for name in os.environ):
        return False
    return not any(os.path.exists(path) for path in dask_config_paths())


def dask_config_paths() -> list[str]:
    """The folders ``dask.config`` reads YAML files from (``dask.config.paths``; the
    ``DASK_*`` variables that add to them rule the head out before)."""
    return ["/etc/dask", os.path.join(sys.prefix, "etc", "dask"),
            *[os.path.join(prefix, "etc", "dask") for prefix in site.PREFIXES],
            os.path.join(os.path.expanduser("~"), ".config", "dask")]


def run_head(func, iterables: tuple, seconds: float = HEAD_SECONDS) -> Head:
    """Read the items and run the first of them here, in batches of doubling size, until
    all are done or the time so far plus the rest at the latest batch's pace passes
    ``seconds``. An item that raises is raised with its index, as the sampler raises it."""
    call, items, input_error = inputs.prepare(func, iterables)
    head = Head(call, items, input_error)
    if input_error is not None or not len(items):
        return head
    head.clock = ThreadClock(native=True)  # no dask loaded: not in a Dask worker
    try:
        _run_batches(head, seconds)
    except BaseException:
        head.close()
        raise
    return head


def _run_batches(head: Head, seconds: float) -> None:
    """Batches doubling while shorter than :data:`_PACE_READ_SECONDS` (a dear item later
    costs a batch of that length, not of all the head's time), until :func:`_past`."""
    items, batch = head.items, 1
    while len(head.results) < len(items):
        size = min(batch, len(items) - len(head.results))
        with head.clock.span():
            per_item = timed_serially(head.call, items, len(head.results), size, head.results)
        head.per_item.append(per_item)
        head.batch_sizes.append(size)
        if _past(time.perf_counter() - head.started, len(items) - len(head.results), per_item * size,
                 per_item, len(head.per_item), seconds):
            return
        if per_item * size < _PACE_READ_SECONDS:
            batch *= 2


# A batch shorter than this, or the first, does not tell the pace of the rest: a fresh
# process's first item of bench --fresh tiny read 6.6 us (then 1.5, 1.4, 0.73, 0.6 us in
# batches of 2, 4, 8, 16), pandas-groupby's 3.4 ms (then ~0.4 ms; session 10's sample).
# Until one does, the head goes on while it has run a tenth of its time or less.
_PACE_READ_SECONDS = 1e-3


def _past(elapsed: float, left: int, batch_seconds: float, per_item: float, n_batches: int,
          seconds: float) -> bool:
    """Does the head stop: ``elapsed`` already past ``seconds``, or the items ``left`` at the
    latest batch's pace past it, once a batch tells the pace (see :data:`_PACE_READ_SECONDS`)?"""
    if elapsed > seconds:
        return True
    paced = n_batches > 1 and batch_seconds >= _PACE_READ_SECONDS
    return (paced or elapsed > seconds / 10) and elapsed + left * per_item > seconds


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

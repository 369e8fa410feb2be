"""A serial plan that runs long: the rest is planned again from the items it ran.

The sample times the first items. When later items cost more (a skewed tail: bench
--fresh skew-tail, every 40th item 300x dearer than the others, none of them among the 34
sampled), the plan is serial for a job that two processes would halve: 2.0x the oracle
on its first call. So a serial plan runs in pieces and looks at the clock between them.
Once it has run ``OVERRUN_FACTOR`` times longer than predicted, the items done so far are a
far larger sample than the first one: the items left are planned again from their rate
(less the slowest piece: one stall is not the items' cost; or the rate since the last
look, when higher), and run on that plan. Results stay in order; each item runs once.

>>> from amorsize_dask.planning.cost_model import Candidate
>>> never = lambda item_seconds, item_cv, n_left: (Candidate("serial", 1, n_left, 0.0), [])
>>> done = run_watched(abs, [-1, -2, -3], first_index=0, expected_seconds=1.0, replan=never)
>>> done.results, done.replanned
([1, 2, 3], None)
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Callable, Sequence

from ..engines import exit_hooks, get_engine
from ..engines.base import raise_failure
from ..engines.chunks import run_chunk
from ..errors import WorkerStartError, warn_running_serially
from . import sample_stats
from .cost_model import Candidate
from .plan import format_seconds

__all__ = ["OVERRUN_FACTOR", "OVERRUN_MIN_SECONDS", "Watched", "run_watched"]

# Serial has overrun its prediction at this multiple of it. The sample's mean is noisy by
# ~10-30% on a quiet machine (bench --fresh, run to run); twice is beyond noise.
OVERRUN_FACTOR = 2.0
# Never earlier than this: before it, a cold pool's start (fork: 15 ms, forkserver ~0.1 s;
# bench --fresh's start figures) would take most of what a parallel plan could save.
OVERRUN_MIN_SECONDS = 0.05
# Work between two looks at the clock, at most, at the rate measured so far (each look
# costs ~2 us; bench family tiny has 1 us items: a piece grows to 2,000 of them). A piece
# runs to its end: one that crosses from cheap items into dear ones runs them all.
_PIECE_SECONDS = 2e-3
# And at most this share of the items left (1/16): a short list of cheap items with dear
# ones among them is looked at often enough to notice them early.
_MIN_PIECES = 16


@dataclass
class Watched:
    """What the watched run did: results in order, compute seconds measured inside the
    pieces and tasks, and the re-planned configuration with the reasons (None: all serial)."""

    results: list
    compute_seconds: float
    replanned: Candidate | None = None
    reasons: list = field(default_factory=list)
    notes: tuple = ()
    thread_failure: str | None = None


def run_watched(func, items: Sequence, *, first_index: int, expected_seconds: float,
                replan: Callable[[float, float, int], tuple[Candidate, list]], progress=None,
                engine_kwargs: Callable[[Candidate], dict] = lambda c: {}) -> Watched:
    """Run ``items`` serially; past the deadline, ask ``replan(item_seconds, item_cv,
    n_left)`` for the rest, and run it on the answer unless it is serial again (then the
    watch goes on with the new prediction)."""
    done = Watched([], 0.0)
    per_piece, sizes = [], []
    n = len(items)
    t0 = time.perf_counter()
    deadline = t0 + max(OVERRUN_FACTOR * expected_seconds, OVERRUN_MIN_SECONDS)
    lo = looked = 0  # items done; pieces before the last look
    step = 1
    while lo < n:
        out = run_chunk(func, items[lo:lo + step], first_index + lo, portable_only=False)
        raise_failure(out.failure, func)
        done.results.extend(out.results)
        done.compute_seconds += out.compute_seconds
        per_piece.append(out.compute_seconds / len(out.results))
        sizes.append(len(out.results))
        lo += len(out.results)
        if progress is not None:
            progress.advance(len(out.results))
        # Pieces double up to _PIECE_SECONDS at the measured rate (the prediction may be far off).
        step = max(1, min(2 * step, int(_PIECE_SECONDS / max(per_piece[-1], 1e-9)), (n - lo) // _MIN_PIECES))
        now = time.perf_counter()
        if lo >= n or now < deadline:
            continue
        # Items that grow dearer along the list: the pieces since the last look tell more.
        mean = max(_rate(per_piece, sizes, 0), _rate(per_piece, sizes, looked))
        looked = len(per_piece)
        cand, why = replan(mean, sample_stats.coefficient_of_variation(per_piece, sizes, mean), n - lo)
        done.reasons = [f"serial overran its prediction ({format_seconds(expected_seconds)} for {n} items): "
                        f"{lo} took {format_seconds(now - t0)}, {format_seconds(mean)}/item; the {n - lo} left "
                        f"planned again"] + why
        if cand.engine != "serial":
            return _rest_on(done, cand, func, items, lo, first_index, progress, engine_kwargs(cand))
        deadline = now + max(OVERRUN_FACTOR * mean * (n - lo), OVERRUN_MIN_SECONDS)
    return done


def _rate(per_piece: list, sizes: list, first: int) -> float:
    """Seconds per item of the pieces from ``first`` on, less the slowest of three or more:
    one stall (a descheduled thread, a collection) is not the items' cost. Without this, a
    400-item job of 0.3 us items that stalled 50 ms was planned again onto processes.

    >>> _rate([1.0, 1.0, 9.0], [2, 2, 2], 0), _rate([1.0, 3.0], [1, 1], 0)
    (1.0, 2.0)
    """
    pieces = list(zip(per_piece[first:], sizes[first:]))
    if len(pieces) >= 3:
        pieces.remove(max(pieces, key=lambda p: p[0] * p[1]))
    return sample_stats.weighted_mean([t for t, _ in pieces], [s for _, s in pieces])


def _rest_on(done: Watched, cand: Candidate, func, items, lo: int, first_index: int, progress, kwargs) -> Watched:
    """The items from ``lo`` on, run on the re-planned engine (serially if it cannot start,
    or takes no work because the interpreter is exiting)."""
    try:
        run = get_engine(cand.engine).run(func, items[lo:], n_workers=cand.n_workers, chunksize=cand.chunksize,
                                          first_index=first_index + lo, progress=progress, **kwargs)
    except RuntimeError as exc:
        # Its workers did not start, or the main thread returned while this non-daemon
        # thread ran serially, and the pools take no new work: serially, as it began.
        if isinstance(exc, WorkerStartError):
            warn_running_serially(exc)
        elif not exit_hooks.refused_at_exit(exc):
            raise
        done.reasons.append(f"{exc}: the rest ran serially")
        run = get_engine("serial").run(func, items[lo:], first_index=first_index + lo, progress=progress)
        cand = None
    done.results.extend(run.results)
    done.compute_seconds += run.compute_seconds
    done.replanned, done.notes = cand, tuple(run.notes)
    done.thread_failure = getattr(run, "thread_failure", None)
    return done

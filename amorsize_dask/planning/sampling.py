"""Timing the first items in-process: the cold planner's only source of facts.

Items are computed once: the results of sampled items are kept and returned by ``map``.

>>> items = [-1, -2, 3, -4]
>>> s = sample_items(abs, items, n_total=4)
>>> s.results == [abs(x) for x in items[: s.profile.n_sampled]]
True
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Callable, Protocol, Sequence

from ..settings import Settings, current
from ..target.context import current_worker
from . import pickled, sample_stats, thread_safety
from .cpu_clock import COMPUTING_CPU_RATIO, ThreadClock
from .head import taken_for, timed_serially
from .thread_probe import ThreadProbe, probe_threads

__all__ = ["ONE_CORE_UP_TO", "own_threads", "PoolStart", "Profile", "Sample", "sample_items", "ThreadProbe", "probe_threads"]

# Batches of items timed together when items are too fast for one perf_counter reading
# to mean much (timer resolution ~0.1 us; bench family "tiny" has 1 us items); the sample
# goes on until one batch took this long (a script's first call of a 1 us method read 3-11 us).
_MIN_BATCH_SECONDS = 50e-6
# Cores busy up to this are one core (kept out of the features): pure Python read 1.0000-1.0004
# beside idle native threads (a spinning BLAS's are not counted: .cpu_clock); a 800x800
# float matrix product 1.52; a 3.5 ms OpenMP loop on 2 cores 1.15-1.73 (its second thread
# wakes late), one of 30 ms ~2 (tests/test_native_threads.py, session 21).
ONE_CORE_UP_TO = 1.05


def own_threads(cores_busy: float) -> int:
    """The threads an item runs, from the cores it kept busy: whole ones, rounded up beyond
    the noise (an OpenMP loop on both cores read 1.15-1.73 for 3.5 ms items).

    >>> own_threads(1.0), own_threads(1.04), own_threads(1.2), own_threads(2.03)
    (1, 1, 2, 2)
    """
    return 1 if cores_busy <= ONE_CORE_UP_TO else math.ceil(cores_busy - (ONE_CORE_UP_TO - 1))
# Below this CPU/wall ratio a function waits and is not probed (it cost bench family io-wait
# 5%): a 2 ms sleep reads 0.01-0.12 on a 2-core VM (30-150 us CPU per wake-up; CI: 0.119).
_PURE_WAIT_CPU_RATIO = 0.2
# Work per probe thread: shorter probes measure thread wake-up, not the function
# (a 2 x 61 us probe of bench family "payload" read 0.3x; ~0.5 ms per thread reads true).
_MIN_PROBE_SECONDS = 0.5e-3
# The probe may take this share of the serial time (its items' results are kept). At 10%
# bench family "heavy" (24 x 60 ms) spent two items' time probing with one core idle:
# 1.19x the oracle instead of ~1.05x; "payload" (400 x 40 us) would need 6% to be probed.
_PROBE_FRACTION = 0.05
# Computing items shorter than this gain nothing on two threads even when they release the
# GIL: sha256 of 2-8 KB (2.2-7.2 us) ran 0.68-0.95x, np.sort of 1,000 floats (7.2 us)
# 0.47x; 16 KB (14 us) 1.27x and np.sort of 4,000 (39 us) 1.31x (2 threads, chunks of
# 1,000, medians of 5, this 2-core machine, session 7). The probe's hand-off then costs
# bench --fresh family tiny (1 us items) 1-5 ms of a ~95 ms first call.
_NO_THREAD_GAIN_BELOW_SECONDS = 10e-6
# A free probe (serial is the only other plan) is this many times longer, after a serial
# reference as long. Against such a reference, bench family "payload" (two threads truly
# 1.26x) read 1.04-1.85x with 2 x 24 items and 1.15-1.36x with 2 x 48; pure-Python items
# read 0.98-1.13x (9 probes each through _probe_threads, session 2 of this project).
_FREE_PROBE_SCALE = 2
# Items still warming up may take up to this many times the budget: pandas-groupby's
# first call sampled 2 items (3.4 ms, 1.1 ms) of a ~0.4 ms steady time, and chose processes.
_WARM_UP_BUDGET_SCALE = 2
# ... and so may a computing function's sample that saw a warm-up and has fewer batches
# than this after it: a noisy one among two looks like the end of it. bench --fresh
# pandas-groupby (steady ~0.25 ms) sampled 1.46, 0.40, 0.56 ms once in 5-10 runs, read
# 0.48 ms/item and ran on processes: 80-97 ms against ~60 serially (session 10). Without
# a warm-up seen, one dear first item stays evidence enough (big-inputs: 12.7 ms, then
# ~3.5; a second item changed which probe it ran, and one run in three went serial). A
# wait is not sampled on: its threads overlap whatever it costs.
_MIN_STEADY_BATCHES = 5


@dataclass(frozen=True, kw_only=True)
class Profile:
    """What the sample measured; every field is a measurement, none a guess.

    ``cpu_ratio`` is this thread's CPU time over wall time in the sampled calls (≈1
    computing, ≈0 waiting; less the time it waited for a core: :mod:`.cpu_clock`);
    ``thread_speedup`` is the speedup of two threads over one on the next items
    (≈2 when the function releases the GIL), None when not measured; ``thread_failure``
    is the exception those items raised on threads only (then they ran again serially);
    ``cores_busy`` the cores an item keeps busy, its native threads' included (>1: OpenMP,
    a BLAS, torch; :meth:`.cpu_clock.ThreadClock.cores_busy`).
    """

    n_sampled: int
    item_seconds: float
    item_cv: float
    cpu_ratio: float
    bytes_in: float
    bytes_out: float
    picklable: bool
    thread_speedup: float | None
    sample_seconds: float
    thread_failure: str | None = None
    pickle_seconds: float = 0.0  # pickling and unpickling an item and its result (:mod:`.pickled`)
    cores_busy: float = 1.0

    def features(self, n_items: int) -> dict:
        """The workload features stored with a record."""
        out = {
            "n_items": int(n_items),
            "item_seconds": self.item_seconds,
            "item_cv": self.item_cv,
            "cpu_ratio": self.cpu_ratio,
            "bytes_in": self.bytes_in,
            "bytes_out": self.bytes_out,
            "pickle_seconds": self.pickle_seconds,
        }
        if self.thread_speedup is not None:
            out["thread_speedup"] = self.thread_speedup
        if self.cores_busy > ONE_CORE_UP_TO:
            out["cores_busy"] = round(self.cores_busy, 2)
        if self.thread_failure is not None:
            out[thread_safety.FEATURE] = 0
        if not self.picklable:
            out[pickled.FEATURE] = 0
        return out


class PoolStart(Protocol):
    """A process pool that may start while the sample runs (:class:`.prestart.PoolPrestart`):
    told the estimate after every batch, and waited for before the two-thread probe (a
    start beside the probe takes a core from it)."""

    def on_estimate(self, item_seconds: float, cpu_ratio: float) -> None: ...

    def wait(self) -> None: ...


@dataclass(frozen=True)
class Sample:
    """The profile and the results of the sampled items (in order)."""

    profile: Profile
    results: list


def sample_items(
    func: Callable,
    items: Sequence,
    n_total: int,
    *,
    probe: bool = True,
    settings: Settings | None = None,
    parallelism: tuple[int, int] = (1, 1),
    probe_is_free: Callable[[float, float], bool] | None = None,
    pool_start: PoolStart | None = None,
) -> Sample:
    """Time ``func`` on the first items of ``items`` until the budget is spent.

    The budget is the smaller of ``settings.max_seconds`` and ``settings.budget_fraction``
    of the best time parallelism could reach: the predicted serial time (``n_total`` ×
    seconds per item, re-estimated as items are timed) over ``parallelism[0]`` (cores)
    for a function that computes, or over ``parallelism[1]`` (threads) for one that
    waits. The first item always runs. Then, when the budget allows and ``probe`` is
    True, the next items run on two threads to measure whether threads speed the
    function up (:func:`probe_threads`).

    ``probe_is_free(item_seconds, pickled_bytes_per_item)``: True when no process plan
    could beat serial, so that the probe, whose results are kept, costs only the hand-off
    to two threads (then a longer one runs, after a serial reference as long, whenever
    half the items left cover both: see :func:`_probe_size`).

    ``pool_start.on_estimate(item_seconds, cpu_ratio)`` is told the mean seconds per item
    and the CPU/wall ratio so far after every batch (the planner may start the process
    pool meanwhile: :mod:`.prestart`); ``pool_start.wait()`` is called before the probe runs.

    The cores an item keeps busy with native threads of its own are measured, except in a
    Dask worker, whose other tasks run native code beside it (their threads are not its).
    """
    settings = current(settings)
    timing = _Timing(func, items, n_total, settings, parallelism, pool_start)
    timing.run_serially()
    travel = pickled.measure(items, timing.results, settings.pickle_items)
    bytes_in, bytes_out, picklable = travel.bytes_in, travel.bytes_out, travel.picklable
    thread_speedup = thread_failure = None
    if probe and len(timing.results) < timing.n_avail:
        free = lambda: probe_is_free is not None and (  # noqa: E731
            not picklable or probe_is_free(timing.settled, bytes_in + bytes_out))
        thread_speedup, thread_failure = timing.probe(free)
    profile = Profile(
        n_sampled=len(timing.results),
        item_seconds=timing.settled,
        item_cv=timing.cv,
        cpu_ratio=timing.ratio,
        bytes_in=bytes_in,
        bytes_out=bytes_out,
        picklable=picklable,
        thread_speedup=thread_speedup,
        sample_seconds=time.perf_counter() - timing.wall_start,
        thread_failure=thread_failure,
        pickle_seconds=travel.seconds,
        cores_busy=timing.cores_busy if timing.cores_busy > ONE_CORE_UP_TO else 1.0,  # noise: one core
    )
    return Sample(profile=profile, results=timing.results)


class _Timing:
    """The items timed so far: their results, and seconds per item of each batch."""

    def __init__(self, func, items, n_total: int, settings: Settings, parallelism: tuple[int, int],
                 pool_start: PoolStart | None = None):
        self.func, self.items, self.n_total = func, items, n_total
        self.settings, self.parallelism, self.pool_start = settings, parallelism, pool_start
        self.n_avail = min(len(items), n_total)
        self.results: list = []
        self.per_item: list[float] = []  # seconds per item of each timed batch
        self.batch_sizes: list[int] = []
        self.wall, self.ratio = 0.0, 1.0  # of the serial part (the probe's not counted)
        self.cores_busy = 1.0
        self.warm_bound: float | None = None  # seconds per item the probe's threads read, when less
        self.wall_start, self.clock = time.perf_counter(), None
        head = taken_for(items)
        if head is not None:  # the items the call ran before the planner loaded: the first batches
            self.results, self.per_item, self.batch_sizes = head.results, head.per_item, head.batch_sizes
            # Its items' time, not the planner's loading after it (hunt 18: 10 ms items
            # recorded 27 ms, and the sample's budget was spent on the imports).
            self.wall_start, self.clock = time.perf_counter() - head.seconds, head.clock
        self.clock = self.clock or ThreadClock(native=current_worker() is None)

    def _steady(self) -> tuple[list[float], list[int]]:
        """The batches after the warm-up: their seconds per item and sizes (:mod:`.sample_stats`)."""
        kept = sample_stats.steady(self.per_item)
        return kept, self.batch_sizes[len(self.batch_sizes) - len(kept):]

    @property
    def mean(self) -> float:
        mean = sample_stats.weighted_mean(*self._steady())
        return mean if self.warm_bound is None else min(mean, self.warm_bound)

    @property
    def settled(self) -> float:
        """Seconds per item for the plan: the mean, or the last batch's when the sample
        ended while the items were still getting cheaper (:func:`.sample_stats.decaying`):
        the latest batch is the nearest to what the rest will cost. A pandas groupby's
        first call sampled 4 items at 1.24 ms mean (steady ~0.4 ms) and ran on processes
        at 1.7x its serial time. An estimate too low is caught by the serial watch
        (:mod:`.overrun`); one too high, by nothing."""
        mean = self.mean
        if sample_stats.decaying(self.per_item, self.batch_sizes):
            return min(mean, self.per_item[-1])
        return mean

    @property
    def cv(self) -> float:
        return sample_stats.coefficient_of_variation(*self._steady(), self.mean)

    def budget(self, cpu_ratio: float) -> float:
        s = self.settings
        return _budget(self.mean, self.n_total, cpu_ratio, s.budget_fraction, s.max_seconds, self.parallelism)

    def timed(self, n: int) -> float:
        """Run the next ``n`` items here as one batch; their seconds per item."""
        with self.clock.span():
            per_item = timed_serially(self.func, self.items, len(self.results), n, self.results)
        self.per_item.append(per_item)
        self.batch_sizes.append(n)
        return per_item

    def run_serially(self) -> None:
        """Time batches (doubling while too fast to read) until the budget is spent."""
        batch = 1
        with self.clock:
            while len(self.results) < self.n_avail:
                size = min(batch, len(self.items) - len(self.results))
                elapsed = self.timed(size) * size
                spent, ratio = time.perf_counter() - self.wall_start, self.clock.cpu_ratio()
                if self.pool_start is not None and not self._uses_the_cores_itself():
                    self.pool_start.on_estimate(self.settled, ratio)
                if self._spent_enough(spent, ratio):
                    break
                if elapsed < _MIN_BATCH_SECONDS:
                    batch *= 2
            self.wall, self.ratio = time.perf_counter() - self.wall_start, self.clock.cpu_ratio()
            self.cores_busy = self.clock.cores_busy()

    def _uses_the_cores_itself(self) -> bool:
        """Do the function's own threads keep every core busy (workers beside each other
        could only share them)? A torch script's sample started a pool for nothing."""
        threads = own_threads(self.clock.cores_busy())
        return threads > 1 and threads >= self.parallelism[0]

    def _spent_enough(self, spent: float, ratio: float) -> bool:
        """The budget is spent (a dear first item is evidence enough), unless the items are
        still warming up or a computing function has few batches past its warm-up: then up
        to twice the budget (:mod:`.sample_stats`). Warm-up time does not count: any plan
        pays it. Nor is it spent before one batch was long enough to read: a cheap job's
        budget is smaller than one first call (its results are kept: sampling on is free)."""
        if spent >= self.settings.max_seconds:
            return True
        if all(t * s < _MIN_BATCH_SECONDS for t, s in zip(self.per_item, self.batch_sizes)):
            return False
        n_steady = len(self._steady()[0])
        n_warm = len(self.per_item) - n_steady
        spent -= sum(t * s for t, s in zip(self.per_item[:n_warm], self.batch_sizes))
        budget = self.budget(ratio)
        if spent >= _WARM_UP_BUDGET_SCALE * budget:
            return True
        few = n_warm > 0 and n_steady < _MIN_STEADY_BATCHES and ratio >= COMPUTING_CPU_RATIO
        return spent >= budget and not (few or sample_stats.warming(self.per_item, self.batch_sizes))

    def probe(self, free) -> tuple[float | None, str | None]:
        """Run the next items on two threads, if worth it: (speedup, failure)."""
        mean = self.mean
        probe_n, is_free = _probe_size(mean, self.ratio, self.n_total, self.n_avail - len(self.results),
                                       self.budget(self.ratio) - self.wall, free=free)
        if not probe_n:
            return None, None
        if self.pool_start is not None:
            self.pool_start.wait()
        reference = mean
        if is_free:
            # A free probe alone decides threads vs serial, and two threads run a GIL-bound
            # function ~1.2x slower than one: its serial reference is as many items timed
            # just before it, not the sample's mean (inflated by its first, dearer items).
            reference = self.timed(probe_n)
        computing = self.ratio >= COMPUTING_CPU_RATIO
        found = probe_threads(self.func, self.items, len(self.results), probe_n, reference, computing=computing)
        self.results.extend(found.results)
        if found.item_bound is not None and found.item_bound * sample_stats.WARM_UP_RATIO < reference:
            # Even contended, items on the threads ran faster: the serial timings were warm-up.
            self.warm_bound = found.item_bound
            found = found.measured(found.item_bound, computing)
        return found.speedup, found.failure


def _probe_size(mean: float, cpu_ratio: float, n_total: int, n_left: int, remaining_budget: float,
                free) -> tuple[int, bool]:
    """(items to run on two threads to measure their speedup, 0 for none; is it free).

    A function that barely computes (it waits) needs no probe: waits overlap. One that
    partly waits is probed always (two threads overlap, so it costs ~1 item). One that
    computes may spend the remaining budget or a share of the serial time on it; or,
    when ``free()`` says serial is its only other plan, it gets a longer probe after a
    serial reference as long (results kept: it costs only the hand-off), if half the
    items left cover both.
    """
    if cpu_ratio < _PURE_WAIT_CPU_RATIO:
        return 0, False
    if cpu_ratio >= COMPUTING_CPU_RATIO and mean < _NO_THREAD_GAIN_BELOW_SECONDS:
        return 0, False  # even released, the GIL's hand-offs eat what a second thread adds
    # Two items per thread at least: one item each is too easily out of step, for a
    # waiting function (its probe costs ~1 item's wall per item per thread) and for a
    # thread's first item in a fresh process (its heap grows: bench --fresh big-inputs,
    # np.median of 2 MB, read two threads at 1.02x once, 1.82-1.83x in other runs).
    per_thread = max(2, math.ceil(_MIN_PROBE_SECONDS / max(mean, 1e-9)))
    longer = _FREE_PROBE_SCALE * per_thread
    if 4 * longer <= n_left and free():
        return 2 * longer, True
    affordable = max(remaining_budget, _PROBE_FRACTION * mean * n_total)
    if 2 * per_thread <= n_left and (cpu_ratio < 0.5 or 2 * per_thread * mean <= affordable):
        return 2 * per_thread, False
    return 0, False


def _budget(mean, n_total, cpu_ratio, fraction, max_seconds, parallelism) -> float:
    cores, threads = parallelism
    waits = cpu_ratio < 0.5
    best_case = mean * n_total / max(1, threads if waits else cores)
    return min(max_seconds, fraction * best_case)

"""Predicted wall time of each engine × workers × chunksize, from measured figures only.

The inputs are a sampled :class:`~amorsize_dask.planning.sampling.Profile` of the function and the
machine's measured :class:`~amorsize_dask.planning.overheads.Overheads`. The model, per engine:

- serial: ``n·t``.
- processes on ``w`` workers, tasks of ``c`` items (``k = ceil(n/c)`` tasks):
  the workers' makespan ``max(n·t/w', ceil(k/w')·n·t/k)`` (``w' = min(w, cores)``) plus a
  skew tail ``t·cv·√c``; the parent's serial work ``k·task + n·item + n·bytes/bandwidth``;
  and all CPU work shared by the cores, where each task's hand-offs cost
  ``BUSY_TASK_FACTOR·task`` beside computing workers. Wall time is the largest of the
  three, plus the pipeline fill (one chunk's trip), plus pool start-up when the pool is
  not running yet.
- threads on ``w`` threads: the GIL-bound part of each item runs one at a time; the part
  that waits scales with ``w``, the part that computes without the GIL with ``min(w, cores)``
  (split by the measured CPU/wall ratio and two-thread speedup); plus ``k·thread_task``.
- dask on a cluster of ``w`` threads: the client's work (``k·task + n·item + n·bytes/
  bandwidth``, the cluster's measured overheads) *then* the workers' makespan, one after
  the other: ``Client.map`` sends every task in one message, and the scheduler hands them
  out one by one (bench --cluster, family tiny: 25,000 items of 1 us took 0.055 s as one
  task and 0.075 s as ten on two workers; the process model's overlap predicted ten faster).

>>> from amorsize_dask.planning.sampling import Profile
>>> from amorsize_dask.planning.overheads import Overheads
>>> prof = Profile(n_sampled=100, item_seconds=1e-3, item_cv=0.1, cpu_ratio=1.0, bytes_in=30,
...                bytes_out=30, picklable=True, thread_speedup=1.0, sample_seconds=0.01)
>>> oh = Overheads(start_seconds=0.1, task_seconds=1e-4, item_seconds=1e-6, bytes_per_second=5e8,
...                thread_task_seconds=2e-5, start_method="forkserver", measured_at=0.0)
>>> best = rank(prof, 2000, oh, cores=2, pool_warm=True)[0]
>>> best.engine, best.n_workers
('processes', 2)
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

from ..settings import Settings, current

from .cpu_clock import COMPUTING_CPU_RATIO
from .overheads import Overheads
from .sampling import Profile, own_threads

__all__ = ["Candidate", "chunk_grid", "balanced_chunks", "waves_seconds", "serial_seconds",
           "process_seconds", "BUSY_TASK_FACTOR", "dask_seconds", "thread_seconds", "predict_one",
           "profile_from_features", "NO_SPEEDUP_BELOW", "CONTENDED_BELOW", "thread_slowdown",
           "parallel_fractions", "Space", "Limits", "fits", "rank"]


@dataclass(frozen=True)
class Candidate:
    engine: str
    n_workers: int
    chunksize: int
    seconds: float


def chunk_grid(n_items: int, n_workers: int) -> list[int]:
    """Chunk sizes worth predicting: powers of two and even splits into 1..16 tasks per worker.

    >>> chunk_grid(10, 2)
    [1, 2, 3, 4, 5, 8]
    """
    if n_items <= 0:
        return [1]
    sizes = {1}
    c = 1
    while c < n_items:
        sizes.add(c)
        c *= 2
    for per_worker in range(1, 17):
        sizes.add(max(1, math.ceil(n_items / (n_workers * per_worker))))
    return sorted(s for s in sizes if s <= n_items)


def balanced_chunks(n_items: int, n_workers: int, sizes: list[int], min_tasks_per_worker: int) -> list[int]:
    """Chunk sizes that give every worker at least ``min_tasks_per_worker`` tasks (when the
    items allow it), so that a dear item the sample did not see cannot stall a whole share.

    >>> balanced_chunks(100, 2, [1, 10, 25, 50], 4)
    [1, 10]
    """
    limit = max(1, n_items // (n_workers * min_tasks_per_worker))
    return [c for c in sizes if c <= limit] or [1]


def waves_seconds(n_items: int, chunksize: int, n_workers: int, item_seconds: float) -> float:
    """Makespan of equal chunks (the last one partial) taken in order by ``n_workers``.

    >>> waves_seconds(21, 2, 2, 1.0), waves_seconds(21, 1, 2, 1.0), waves_seconds(24, 10, 2, 1.0)
    (11.0, 11.0, 14.0)
    """
    n_tasks = math.ceil(n_items / chunksize)
    waves = math.ceil(n_tasks / n_workers)
    rest = n_items - (n_tasks - 1) * chunksize  # items in the last (partial) chunk
    in_last_wave = n_tasks - (waves - 1) * n_workers
    last = chunksize if in_last_wave > 1 or rest == chunksize else rest
    return ((waves - 1) * chunksize + last) * item_seconds


def serial_seconds(profile: Profile, n_items: int) -> float:
    return n_items * profile.item_seconds


def _pool_parts(profile: Profile, n_items: int, overheads: Overheads, n_workers: int, chunksize: int,
                cores: int) -> tuple[float, float, float]:
    """(the workers' makespan, the caller's serial work, its transfer seconds per item) of
    ``n_items`` in tasks of ``chunksize`` on ``n_workers`` (at most ``cores``) workers."""
    t = profile.item_seconds * busy_slowdown(profile, n_workers, cores)
    n_tasks = math.ceil(n_items / chunksize)
    w = max(1, min(n_workers, cores))
    makespan = max(n_items * t / w, waves_seconds(n_items, chunksize, w, t))
    if n_tasks > 1:
        makespan += t * profile.item_cv * math.sqrt(chunksize)
    # Objects pickle slower than their bytes travel (a pandas DataFrame: ~2x): the larger of the two.
    bandwidth_seconds = (profile.bytes_in + profile.bytes_out) / overheads.bytes_per_second
    per_item_transfer = overheads.item_seconds + max(bandwidth_seconds, profile.pickle_seconds)
    return makespan, n_tasks * overheads.task_seconds + n_items * per_item_transfer, per_item_transfer


# With every core computing items, a task costs the makespan this many times the
# calibrated ``task_seconds`` over the cores. Calibration times no-op tasks, whose
# hand-offs (the caller's submit, the pool's feeder thread, the worker's unpickling and
# pickling) overlap on idle cores; beside computing workers they take CPU from the items.
# Measured: pure-Python items of 0.13 ms (600) and 1.3 ms (200) on a warm 2-worker fork
# pool, chunk sizes 1-32: each task added 165-200 us to the run (task_seconds 114 us; the
# shared-CPU term without this factor: 57 us). bench --fresh skew-tail's re-planned rest
# (300 items, 1 in 40 300x dearer) ran 2x2 in ~240 ms and 2x10 in ~206 ms.
BUSY_TASK_FACTOR = 3.0


def process_seconds(
    profile: Profile, n_items: int, overheads: Overheads, *, n_workers: int, chunksize: int, cores: int, pool_warm: bool
) -> float:
    makespan, parent, per_item_transfer = _pool_parts(profile, n_items, overheads, n_workers, chunksize, cores)
    n_tasks = math.ceil(n_items / chunksize)
    hand_offs = (BUSY_TASK_FACTOR - 1) * n_tasks * overheads.task_seconds  # beyond the parent's own share
    shared_cpu = (n_items * profile.item_seconds * profile.cores_busy + parent + hand_offs) / cores
    start = 0.0 if pool_warm else overheads.start_seconds
    # Pipeline fill: the first chunk travels before any worker computes, the last one after.
    fill = overheads.task_seconds + min(chunksize, n_items) * per_item_transfer
    return start + max(makespan, parent, shared_cpu) + fill


def dask_seconds(profile: Profile, n_items: int, overheads: Overheads, *, n_workers: int, chunksize: int,
                 cores: int) -> float:
    """A running cluster of ``cores`` threads: the client's work, then the workers' makespan."""
    makespan, client, _ = _pool_parts(profile, n_items, overheads, n_workers, chunksize, cores)
    return client + makespan


def busy_slowdown(profile: Profile, n_workers: int, cores: int) -> float:
    """How many times longer an item takes beside the other workers' when it runs threads
    of its own: the threads all workers run over the cores there are. A function whose
    OpenMP or BLAS threads use both cores of this machine ran on 2 processes at 1.05-18x
    its serial time (hunt 12: torch inference, numpy matrix products). Its threads are
    whole: the cores it was measured to keep busy, rounded up (an OpenMP loop on both
    cores read 1.5 beside other processes; tests/test_native_threads.py).

    >>> p = Profile(n_sampled=4, item_seconds=1e-3, item_cv=0.0, cpu_ratio=1.0, bytes_in=0, bytes_out=0,
    ...             picklable=True, thread_speedup=None, sample_seconds=0.0, cores_busy=1.5)
    >>> busy_slowdown(p, 2, 2), busy_slowdown(p, 1, 2), busy_slowdown(p, 4, 8)
    (2.0, 1.0, 1.0)
    """
    w = max(1, min(n_workers, cores))
    return max(1.0, w * own_threads(profile.cores_busy) / cores) if w > 1 else 1.0


def thread_seconds(
    profile: Profile, n_items: int, overheads: Overheads, *, n_workers: int, chunksize: int, cores: int
) -> float:
    t = profile.item_seconds
    n_tasks = math.ceil(n_items / chunksize)
    parallel, waiting = parallel_fractions(profile)
    computing = max(0.0, parallel - waiting)
    compute = n_items * t
    serialized = compute * (1 - parallel)
    overlapped = compute * (waiting / n_workers
                            + computing * busy_slowdown(profile, n_workers, cores) / max(1, min(n_workers, cores)))
    waves = math.ceil(n_tasks / n_workers) * compute / n_tasks * parallel
    return (serialized + max(overlapped, waves)) * thread_slowdown(profile) + n_tasks * overheads.thread_task_seconds


def predict_one(profile: Profile, n_items: int, overheads: Overheads, config: tuple, *, cores: int,
                pool_warm: bool = True) -> float:
    """Predicted seconds of one ``(engine, n_workers, chunksize)`` configuration."""
    engine, w, c = config
    if engine == "serial":
        return serial_seconds(profile, n_items)
    if engine == "threads":
        return thread_seconds(profile, n_items, overheads, n_workers=w, chunksize=c, cores=cores)
    if engine == "dask":
        return dask_seconds(profile, n_items, overheads, n_workers=w, chunksize=c, cores=cores)
    return process_seconds(profile, n_items, overheads, n_workers=w, chunksize=c, cores=cores, pool_warm=pool_warm)


def profile_from_features(features: dict) -> Profile | None:
    """A profile rebuilt from a record's measured features (None if they are missing)."""
    if "item_seconds" not in features or "bytes_in" not in features:
        return None
    return Profile(
        n_sampled=0,
        item_seconds=float(features["item_seconds"]),
        item_cv=float(features.get("item_cv", 0.0)),
        cpu_ratio=float(features.get("cpu_ratio", 1.0)),
        bytes_in=float(features["bytes_in"]),
        bytes_out=float(features.get("bytes_out", 0.0)),
        picklable=True,
        thread_speedup=features.get("thread_speedup"),
        sample_seconds=0.0,
        pickle_seconds=float(features.get("pickle_seconds", 0.0)),
        cores_busy=float(features.get("cores_busy", 1.0)),
    )


# Noise bands of the two measurements behind the thread model (COMPUTING_CPU_RATIO lives
# with the sampling that measures it). Quiet, the suite's pure-Python families read
# CPU/wall 0.98-1.02 and two-thread speedups 0.9-1.0; with other tests loading the 2-core
# machine, family "heavy" was planned on 16 threads once (its sample read as partly
# waiting). Inside the bands a reading counts as noise.
NO_SPEEDUP_BELOW = 1.25


# Below this measured two-thread speedup, threads run the items slower than one thread
# alone: they contend (a pandas groupby, whose C parts let go of the GIL and then wait to
# get it back). bench --fresh pandas-groupby's probe read 0.32-0.38x in a fresh process,
# pure-Python families 0.91-1.00x (short-cpu 0.94, big-results 0.91, skew-tail 0.92,
# cpu-1ms 1.00: the sampled plans of one run, session 12). Rated as fast as one thread,
# pandas-groupby's second run explored two threads: 2.44x the oracle, serial 1.19x.
CONTENDED_BELOW = 0.8


def thread_slowdown(profile: Profile) -> float:
    """How many times longer threads take over the items than their work alone: one over
    the measured speedup when the probe saw contention (below :data:`CONTENDED_BELOW`), else 1.

    >>> p = Profile(n_sampled=4, item_seconds=1e-3, item_cv=0.0, cpu_ratio=1.0, bytes_in=0, bytes_out=0,
    ...             picklable=True, thread_speedup=0.4, sample_seconds=0.0)
    >>> thread_slowdown(p), thread_slowdown(dataclasses.replace(p, thread_speedup=0.9))
    (2.5, 1.0)
    """
    s = profile.thread_speedup
    return 1.0 / max(s, 1e-3) if s is not None and s < CONTENDED_BELOW else 1.0


def parallel_fractions(profile: Profile) -> tuple[float, float]:
    """(share of item time that threads overlap, share of it spent waiting).

    Measured two-thread speedup ``s`` gives the overlapped share ``2(1 - 1/s)``; without it,
    only waiting (1 - CPU/wall ratio) is assumed to overlap.
    """
    # On a loaded machine a computing function loses wall time to other processes, which
    # reads as waiting: ratios above the band count as computing, speedups below it as none.
    waiting = 0.0 if profile.cpu_ratio >= COMPUTING_CPU_RATIO else min(1.0, max(0.0, 1.0 - profile.cpu_ratio))
    if profile.thread_speedup is not None:
        s = profile.thread_speedup if profile.thread_speedup >= NO_SPEEDUP_BELOW else 1.0
        parallel = min(1.0, max(0.0, 2.0 * (1.0 - 1.0 / max(s, 1e-9))))
        # Noise: a waiting function measured at s = 1.9 is still fully overlapped.
        parallel = max(parallel, waiting) if profile.thread_speedup > 1.5 else parallel
    else:
        parallel = waiting if waiting > 0.5 else 0.0
    return parallel, min(waiting, parallel)


@dataclass(frozen=True)
class Space:
    """The configurations to rank: the engines allowed, and the workers and chunk size
    when the caller fixed them (None: every count worth predicting)."""

    engines: tuple[str, ...] = ("serial", "threads", "processes")
    n_workers: int | None = None
    chunksize: int | None = None


@dataclass(frozen=True)
class Limits:
    """Bounds on the candidates: threads at most, tasks per worker at least (processes,
    dask), and the bytes all workers' chunks (inputs and results) may hold at once."""

    max_threads: int
    min_tasks_per_worker: int
    memory_bytes: float = math.inf

    @classmethod
    def from_settings(cls, settings: Settings | None = None, *, available_memory: float | None = None) -> "Limits":
        """``amorsize.planner.*`` (read now when ``settings`` is None); memory unbounded
        unless ``available_memory`` is given (then ``memory-fraction`` of it).

        >>> Limits.from_settings(available_memory=1e9).memory_bytes
        500000000.0
        """
        s = current(settings)
        memory = math.inf if available_memory is None else available_memory * s.memory_fraction
        return cls(s.max_threads, s.min_tasks_per_worker, memory)


# Keywords rank() still takes one by one (the planner passes them so): each sets a field
# of its Space or its Limits.
_SPACE_KEYWORDS = {"engines": "engines", "n_workers": "n_workers", "chunksize": "chunksize"}
_LIMIT_KEYWORDS = {"max_threads": "max_threads", "min_tasks_per_worker": "min_tasks_per_worker",
                   "memory_limit": "memory_bytes"}


def rank(
    profile: Profile,
    n_items: int,
    overheads: Overheads,
    *,
    cores: int,
    pool_warm: bool,
    space: Space = Space(),
    limits: Limits | None = None,
    **fields,
) -> list[Candidate]:
    """Every candidate configuration with its predicted seconds, fastest first.

    ``limits`` defaults to :meth:`Limits.from_settings` (read now). A field of ``space``
    or ``limits`` may be given as a keyword instead (``engines=``, ``n_workers=``,
    ``chunksize=``, ``max_threads=``, ``min_tasks_per_worker=``, ``memory_limit=``).
    """
    space, limits = _with_keywords(space, limits, fields)
    out: list[Candidate] = []
    if "serial" in space.engines:
        out.append(Candidate("serial", 1, max(1, n_items), serial_seconds(profile, n_items)))
    if profile.picklable and n_items > 0:
        if "processes" in space.engines:
            out += _pool_candidates(profile, n_items, overheads, space, limits, cores=cores, pool_warm=pool_warm)
        if "dask" in space.engines:
            out += _pool_candidates(profile, n_items, overheads, space, limits, cores=cores, pool_warm=None)
            one_task_fits = fits(profile, n_items, limits, in_flight=2)
            if one_task_fits and not (space.n_workers or space.chunksize):  # one task on one worker: the cluster's "serial"
                out.append(Candidate("dask", 1, n_items, predict_one(profile, n_items, overheads, ("dask", 1, n_items),
                                                                     cores=cores)))
    # Threads cannot beat serial unless some of the item time overlaps: skip their grid
    # then, unless threads were asked for.
    overlaps = parallel_fractions(profile)[0] > 0 or "serial" not in space.engines
    if "threads" in space.engines and n_items > 0 and overlaps:
        counts = [space.n_workers] if space.n_workers else _thread_counts(limits.max_threads, n_items, cores)
        for w in counts:
            for c in [space.chunksize] if space.chunksize else chunk_grid(n_items, w):
                secs = thread_seconds(profile, n_items, overheads, n_workers=w, chunksize=c, cores=cores)
                out.append(Candidate("threads", w, c, secs))
    out.sort(key=lambda cand: (cand.seconds, cand.engine != "serial", cand.n_workers))
    return out


def _with_keywords(space: Space, limits: Limits | None, fields: dict) -> tuple[Space, Limits]:
    unknown = sorted(set(fields) - set(_SPACE_KEYWORDS) - set(_LIMIT_KEYWORDS))
    if unknown:
        raise TypeError(f"rank() got unexpected keyword argument(s) {unknown}")
    space = dataclasses.replace(space, **{_SPACE_KEYWORDS[k]: v for k, v in fields.items() if k in _SPACE_KEYWORDS})
    limits = Limits.from_settings() if limits is None else limits
    limits = dataclasses.replace(limits, **{_LIMIT_KEYWORDS[k]: v for k, v in fields.items() if k in _LIMIT_KEYWORDS})
    return space, limits


def _pool_candidates(profile: Profile, n_items: int, overheads: Overheads, space: Space, limits: Limits, *,
                     cores: int, pool_warm: bool | None) -> list[Candidate]:
    """Process pool candidates (``pool_warm`` True or False), or a dask cluster's (None:
    one worker count, the cluster's, always running)."""
    if pool_warm is None:  # a limit per worker thread (Target.chunk_memory): its chunk and the next
        engine, counts, in_flight = "dask", [space.n_workers or cores], lambda w: 2
    else:
        engine, in_flight = "processes", lambda w: 2 * w
        counts = [space.n_workers] if space.n_workers else range(2, max(2, cores) + 1)
    out = []
    for w in counts:
        sizes = [space.chunksize] if space.chunksize else balanced_chunks(
            n_items, w, chunk_grid(n_items, w), limits.min_tasks_per_worker)
        for c in sizes:
            if not fits(profile, c, limits, in_flight(w)):
                continue
            secs = predict_one(profile, n_items, overheads, (engine, w, c), cores=cores, pool_warm=bool(pool_warm))
            out.append(Candidate(engine, w, c, secs))
    return out


def fits(profile: Profile, chunksize: int, limits: Limits, in_flight: int) -> bool:
    """Do ``in_flight`` chunks of ``chunksize`` items (inputs and results) fit ``limits``?"""
    return in_flight * chunksize * (profile.bytes_in + profile.bytes_out) <= limits.memory_bytes


def _thread_counts(max_threads: int, n_items: int, cores: int) -> list[int]:
    counts = {min(max(2, cores), max_threads)}
    w = 2
    while w <= max_threads:
        counts.add(w)
        w *= 2
    return sorted(c for c in counts if c <= max(2, n_items))

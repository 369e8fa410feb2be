"""Planning a stream of unknown length: from its first items, then from every chunk.

The first items run one at a time where the stream's work runs (here, or in a first
task on a worker of the cluster) until :data:`SAMPLE_SECONDS` of them are timed; their
results are kept. Locally the stream then goes on serially and, as its measured work
grows, asks the cost model whether a parallel engine would have beaten serial on as many
items again as it has already done: the ski-rental rule, so a stream that turns out
short never pays a pool's start, and a long one pays at most about twice what the pool
start costs. Reading the input is the caller's serial work on every engine, so its
measured cost per item is charged to every candidate. Chunks aim at
:data:`TARGET_CHUNK_SECONDS` of work each and are re-sized when the measured seconds per
item move by more than :data:`REPLAN_FACTOR`.

>>> p = StreamPlanner(abs, abs, client=None, engine="serial", n_workers=None, chunksize=None,
...                   training_dir=None)
>>> head = p.sample(iter([-1, -2]))
>>> head.results, p.engine
([1, 2], 'serial')
"""

from __future__ import annotations

import dataclasses
import itertools
import math
import time
from dataclasses import dataclass

from ..engines import get_engine, shared_engine
from ..engines.function_parcel import travels
from ..cluster.keys import sample_key
from ..engines.chunks import ChunkResult, Failure, run_chunk, run_packed_chunk
from ..planning import cost_model, pickled
from ..planning.cpu_clock import ThreadClock
from ..planning.plan import Plan
from ..planning.planner import Planned
from ..planning.sampling import Profile
from ..settings import Settings
from ..mapping import target_for

__all__ = ["SAMPLE_SECONDS", "RECHECK_GROWTH", "TARGET_CHUNK_SECONDS", "MAX_CHUNK_BYTES",
           "MAX_CHUNK_ITEMS", "IN_FLIGHT_PER_WORKER", "REPLAN_FACTOR", "THREADS_BELOW_CPU_RATIO",
           "MIN_PARALLEL_ITEM_SECONDS", "Head", "StreamPlanner", "take"]

# A sample batch shorter than this doubles the next one (a few batches reach the budget).
SAMPLE_BATCH_SECONDS = 5e-3
# Seconds of items timed serially before a stream is planned (its results are kept).
# The same order as amorsize.sampling.max-seconds (0.25 s); a stream plans sooner
# because its chunks keep measuring (bench --stream: 20,000 x 1 ms items).
SAMPLE_SECONDS = 0.05
# A serial stream asks the cost model again once its measured work has grown by this
# factor since it last asked (a few asks per doubling: the switch comes soon after it pays).
RECHECK_GROWTH = 1.25
# Work per chunk: long enough that a chunk's trip (~0.1-1 ms here, bench calibrate)
# is noise, short enough that results flow and memory stays small.
TARGET_CHUNK_SECONDS = 0.05
# Input bytes of one chunk at most: bounds the stream's memory to a few of them per
# worker (bench --stream: 3,000,000 text lines).
MAX_CHUNK_BYTES = 4 << 20
# Items of one chunk at most, whatever their cost (a cheap item's chunk is read ahead).
MAX_CHUNK_ITEMS = 16384
# Chunks in flight per worker: one running, one queued behind it.
IN_FLIGHT_PER_WORKER = 2
# Measured seconds per item this many times away from the plan's: re-plan.
REPLAN_FACTOR = 2.0
# Threads are a candidate for a stream only when the sample mostly waited: a stream has
# no two-thread probe, and on this loaded 2-core machine a busy-looping 1 ms function read
# a CPU/wall ratio of 0.32 (a 16-thread plan then ran 1.4x serial; bench --stream ms-items).
THREADS_BELOW_CPU_RATIO = 0.2
# Items cheaper than this never pay a process or thread hand-off (pickling an item and
# its result alone costs about a microsecond here: bench calibrate's item_seconds), so
# such a stream does not calibrate the overheads to find that out.
MIN_PARALLEL_ITEM_SECONDS = 2e-6


@dataclass
class Head:
    """The first items' results, or the failure that stopped them; ``input_error``: what
    reading the input raised after them (raised once they are delivered)."""

    results: list
    failure: Failure | None = None
    remote: bool = False
    input_error: Exception | None = None


def take(source, n: int) -> tuple[list, Exception | None]:
    """The next ``n`` items of ``source`` (fewer at its end), and what reading it raised,
    if it did: the items read before are kept (``builtins.map`` and ``Pool.imap`` deliver
    their results first)."""
    chunk: list = []
    try:
        chunk.extend(itertools.islice(source, n))  # what extend appended before an error stays
    except Exception as exc:
        return chunk, exc
    return chunk, None


class StreamPlanner:
    """The plan of one stream: its engine, workers and chunk size, kept up to date."""

    def __init__(self, func, call, *, client, engine, n_workers, chunksize, training_dir):
        self.func = func  # the user's function (names in errors, the workload key)
        self.call = call  # what runs on each item (func, or func(*args) for several iterables)
        self.requested = (engine, n_workers, chunksize)
        self.target = target_for(func, client, engine, training_dir)
        self.client = self.target.client
        self.engine = "serial" if engine == "auto" and self.client is None else ("dask" if engine == "auto" else engine)
        if self.engine == "processes" and get_engine("processes").name == "threads":
            self.engine = "threads"  # a daemonic process starts none (warned), as map runs there
        self.n_workers = n_workers or (1 if self.engine == "serial" else self.target.cores)
        self.chunksize = chunksize or 1
        self.n_done = 0
        self.n_sampled = 0
        self.compute_seconds = 0.0
        self.profile: Profile | None = None
        self.item_seconds = 0.0  # per item, as last planned from
        self._recent = 0.0  # per item, measured by the latest chunks (moving average)
        self.read_seconds = 0.0  # spent taking items from the input (the caller's serial work)
        self.n_read = 0
        self._next_check = 0.0  # measured work (s) at which a serial stream asks again
        self.reasons: list[str] = []

    @property
    def max_in_flight(self) -> int:
        return 1 if self.engine == "serial" else IN_FLIGHT_PER_WORKER * self.n_workers

    # -- the first items ------------------------------------------------------------
    def sample(self, source) -> Head:
        """Run the first items where the stream runs, time them, plan; results kept."""
        if self.client is not None:
            out, items, input_error = self._sample_on_worker(source)
        else:
            out, items, input_error = self._sample_here(source)
        self.n_sampled = len(out.results)
        self._count(out)
        if out.failure is None and input_error is None and items:
            self._plan(items, out)
        return Head(out.results, out.failure, remote=self.client is not None, input_error=input_error)

    def _sample_here(self, source):
        """The first items, here, in batches of 1, 2, 4, ... until :data:`SAMPLE_SECONDS`
        of them are timed (one item at a time cost a 1 us item twice its own time), or
        reading and running them took as long (a slow input: 1 us items arriving every
        10 ms yielded nothing for 15 s, 1,484 items read)."""
        results, items, compute, batch, input_error = [], [], 0.0, 1, None
        t0 = time.perf_counter()
        with ThreadClock() as clock:  # CPU over the chunks' wall time, less waits for a core
            while compute < SAMPLE_SECONDS and time.perf_counter() - t0 < SAMPLE_SECONDS:
                t_read = time.perf_counter()
                chunk, input_error = take(source, batch)
                self.read_seconds += time.perf_counter() - t_read
                items += chunk
                with clock.span():
                    out = run_chunk(self.call, chunk, len(results), portable_only=False)
                compute += out.compute_seconds
                results += out.results
                if out.failure is not None:
                    return ChunkResult(0, results, compute, out.failure), items, None
                if input_error is not None or len(chunk) < batch:
                    break  # the input ended (or raised)
                if out.compute_seconds < SAMPLE_BATCH_SECONDS:
                    batch = min(2 * batch, MAX_CHUNK_ITEMS)
            self._cpu_ratio = clock.cpu_ratio()
        return ChunkResult(0, results, compute), items, input_error

    def _sample_on_worker(self, source):
        """The first item as one task on a worker: ``func`` never runs in the client."""
        items, input_error = take(source, 1)
        self._cpu_ratio = 1.0
        if not items:
            return ChunkResult(0, [], 0.0), items, input_error
        from ..engines.dask import items_in_the_graph, result_or_travelled

        with items_in_the_graph():
            fut = self.client.submit(run_packed_chunk, self.call, items, 0, pure=False, key=sample_key(self.func))
        try:
            return ChunkResult.from_task_result(result_or_travelled(self.client, fut)), items, input_error
        finally:
            fut.release()

    def _plan(self, items: list, sampled: ChunkResult) -> None:
        per_item = max(sampled.compute_seconds / max(len(items), 1), 1e-9)
        travel = _travel(self.call, items[:3], sampled.results[:3], None if self.client else self.n_workers)
        bytes_in, bytes_out = travel.bytes_in, travel.bytes_out
        self.profile = Profile(n_sampled=len(items), item_seconds=per_item, item_cv=0.0, cpu_ratio=self._cpu_ratio,
                               bytes_in=bytes_in, bytes_out=bytes_out, picklable=travel.picklable, thread_speedup=None,
                               sample_seconds=sampled.compute_seconds, pickle_seconds=travel.seconds)
        self.item_seconds = self._recent = per_item
        self.n_read = len(items)
        self._next_check = sampled.compute_seconds
        self.chunksize = self.requested[2] or self._chunk_for(per_item, bytes_in + bytes_out)
        self._maybe_go_parallel()

    def _maybe_go_parallel(self) -> None:
        """Switch a serial ``auto`` stream to the cost model's best engine once it pays."""
        engine, n_workers, _ = self.requested
        if engine != "auto" or self.client is not None or self.engine != "serial" or self.profile is None:
            return
        if self.compute_seconds < self._next_check:
            return
        self._next_check = self.compute_seconds * RECHECK_GROWTH
        prof = self.profile
        if prof.item_seconds < MIN_PARALLEL_ITEM_SECONDS or not prof.picklable and prof.cpu_ratio > 0.5:
            return
        best = self._best_parallel(max(self.n_done, 1), n_workers)
        if best is not None:
            self.engine, self.n_workers = best.engine, best.n_workers
            self.chunksize = self.requested[2] or self._chunk_for(self.item_seconds, prof.bytes_in + prof.bytes_out)
            self.reasons.append(f"after {self.n_done} items: {best.engine} on {best.n_workers} "
                                "(predicted to beat serial on as many items again)")

    def _best_parallel(self, horizon: int, n_workers):
        """The fastest parallel candidate for ``horizon`` more items if it beats serial, else None."""
        prof = self.profile
        overheads = self.target.overheads(measure_now=True)
        if overheads is None:
            return None
        read = self.read_seconds / max(self.n_read, 1) * horizon  # the caller's, on any engine
        settings = Settings.from_config()
        engines = tuple(e for e in self.target.auto_engines()
                        if e != "threads" or prof.cpu_ratio < THREADS_BELOW_CPU_RATIO)
        ranked = cost_model.rank(
            prof, horizon, overheads, cores=self.target.cores, pool_warm=self.target.pool_warm(self.target.cores),
            space=cost_model.Space(engines, n_workers),
            limits=cost_model.Limits.from_settings(settings, available_memory=self.target.chunk_memory()),
        )
        serial = horizon * prof.item_seconds + read
        best = min((c for c in ranked if c.engine != "serial"), key=lambda c: c.seconds, default=None)
        if best is None or (best.seconds + read) * settings.min_speedup > serial:
            return None
        return best

    def _chunk_for(self, item_seconds: float, item_bytes: float) -> int:
        """Items per chunk: :data:`TARGET_CHUNK_SECONDS` of reading them and running them
        (a slow input's chunk of cheap items would otherwise be read for minutes before
        its first result)."""
        read = self.read_seconds / max(self.n_read, 1)
        by_time = TARGET_CHUNK_SECONDS / max(item_seconds + read, 1e-9)
        by_bytes = MAX_CHUNK_BYTES / max(item_bytes, 1.0)
        return int(max(1, min(by_time, by_bytes, MAX_CHUNK_ITEMS)))

    # -- every chunk ----------------------------------------------------------------
    def observe_read(self, seconds: float, n: int) -> None:
        """Count the time taken to read ``n`` items of the input."""
        self.read_seconds += seconds
        self.n_read += n

    def observe(self, out: ChunkResult) -> None:
        """Count a finished chunk; re-size chunks when its cost per item moved; a serial
        stream may switch to a parallel engine (:meth:`_maybe_go_parallel`)."""
        self._count(out)
        self._maybe_go_parallel()
        n = len(out.results)
        if n == 0 or self.requested[2] is not None or self.profile is None:
            return
        measured = out.compute_seconds / n
        self._recent = 0.5 * self._recent + 0.5 * measured
        ratio = self._recent / max(self.item_seconds, 1e-12)
        if ratio > REPLAN_FACTOR or ratio < 1 / REPLAN_FACTOR:
            self.item_seconds = self._recent
            self.profile = dataclasses.replace(self.profile, item_seconds=self._recent)
            self.chunksize = self._chunk_for(self._recent, self.profile.bytes_in + self.profile.bytes_out)
            self.reasons.append(f"re-planned after {self.n_done} items: chunksize {self.chunksize}")

    def _count(self, out: ChunkResult) -> None:
        self.n_done += len(out.results)
        self.compute_seconds += out.compute_seconds

    # -- the record -----------------------------------------------------------------
    def record(self, wall_seconds: float) -> None:
        """Record the whole stream as one run (its length is known now)."""
        if self.n_done == 0 or self.profile is None:
            return
        plan = Plan(
            engine=self.engine, n_workers=self.n_workers, chunksize=self.chunksize,
            n_tasks=math.ceil(max(self.n_done - self.n_sampled, 0) / self.chunksize), source="sample",
            confidence=0.0, predicted_seconds=None, n_items=self.n_done, n_sampled=self.n_sampled,
            fingerprint=self.target.fingerprint.id, workload=self.target.workload, reasons=tuple(self.reasons),
        )
        self.target.record(self.func, Planned(plan, profile=self.profile), wall_seconds=wall_seconds,
                           compute_seconds=self.compute_seconds)


def _travel(call, items, results, local_workers: int | None) -> pickled.Travel:
    """What a few items and results cost to travel; not picklable if they or ``call`` won't
    travel (to a pool of ``local_workers`` here, which may inherit it; else to a cluster)."""
    reaches = shared_engine().reaches(call, local_workers) if local_workers is not None else travels(call)
    if not reaches:
        return pickled.Travel(0.0, 0.0, False)
    return pickled.measure(items, results, len(items))

"""The local benchmark: ours (cold, planning included) vs the oracle and the defaults.

For each workload family: the **oracle** is the fastest of a grid of serial, stdlib
process-pool (workers × chunksizes, pools started before timing) and thread-pool
configurations, timed in the same run; the **defaults** are ``Pool().map`` (pool start
included, as users write it) and ``joblib.Parallel(n_jobs=-1)`` (warm, if installed).
Ours is ``amorsize_dask.map`` with no training data: sampling, planning and running,
3 runs (10 for a job under 0.1 s, as the oracle's three finalists are timed), each
followed by a timing of the oracle's configuration: ours/oracle is the median of those
paired ratios; "strict" is our best time over the oracle's best.

Run: ``amorsize-dask bench`` or ``python -m amorsize_dask.bench``.
"""

from __future__ import annotations

import math
import multiprocessing
import statistics
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from ..target import machine
from ..engines import get_engine, shared_engine
from ..mapping import run_map
from .timing import best_of, format_table, geometric_mean, repeats_for
from .workloads import Workload, suite


# The oracle skips configurations of more tasks than this: at ~64 us per task (Pool.map,
# 2 cores) they cost > 0.13 s in overhead alone, far from any optimum of the suite.
MAX_ORACLE_TASKS = 2000


@dataclass
class Config:
    engine: str
    n_workers: int
    chunksize: int

    def __str__(self) -> str:
        return "serial" if self.engine == "serial" else f"{self.engine} {self.n_workers}x{self.chunksize}"


@dataclass
class FamilyResult:
    name: str
    n_items: int
    serial: float
    oracle: float
    oracle_config: Config
    ours: float
    ours_plan: str
    pool_default: float
    joblib_default: float | None
    extra: dict = field(default_factory=dict)
    paired_ratios: list = field(default_factory=list)  # each of our runs over the oracle's right after

    @property
    def ratio(self) -> float:
        """Median of our runs each over the oracle's configuration timed right after it."""
        return statistics.median(self.paired_ratios) if self.paired_ratios else self.strict_ratio

    @property
    def strict_ratio(self) -> float:
        """Our best time over the oracle's best time (the least of all its timings)."""
        return self.ours / self.oracle


def chunk_candidates(n: int, w: int) -> list[int]:
    """Chunk sizes the oracle tries: powers of 4 and even splits into 1, 2, 4, 8 tasks per worker.

    >>> chunk_candidates(100, 2)
    [1, 4, 7, 13, 16, 25, 50]
    """
    sizes = {1}
    c = 4
    while c <= math.ceil(n / w):
        sizes.add(c)
        c *= 4
    for per_worker in (1, 2, 4, 8):
        sizes.add(max(1, math.ceil(n / (w * per_worker))))
    smallest = math.ceil(n / MAX_ORACLE_TASKS)
    return sorted(s for s in sizes if s >= smallest) or [smallest]


def _run_chunk_list(func, chunk):
    return [func(x) for x in chunk]


class Oracle:
    """Pre-started stdlib pools and a grid search over them, with early cut-offs."""

    def __init__(self, cores: int, thread_counts=(2, 8, 64)):
        ctx = multiprocessing.get_context("fork")  # the fastest stdlib pool on Linux
        self.process_counts = sorted({cores, 2 * cores})
        self.thread_counts = thread_counts
        self._ctx = ctx
        self.process_pools = {w: ctx.Pool(w) for w in self.process_counts}
        self.thread_pools = {w: ThreadPoolExecutor(w) for w in thread_counts}

    def close(self):
        for pool in self.process_pools.values():
            pool.terminate()
            pool.join()
        for pool in self.thread_pools.values():
            pool.shutdown(wait=True, cancel_futures=True)

    def time_config(self, cfg: Config, func, items, limit: float) -> float:
        """Wall seconds of one run, or inf when it exceeds ``limit`` (then it is cut)."""
        t0 = time.perf_counter()
        if cfg.engine == "serial":
            [func(x) for x in items]
        elif cfg.engine == "processes":
            # Runs to the end: Pool.terminate() can deadlock mid-map (CPython's Pool), so
            # the grid leaves out configurations with more than MAX_ORACLE_TASKS tasks.
            self.process_pools[cfg.n_workers].map(func, items, chunksize=cfg.chunksize)
            if time.perf_counter() - t0 > limit:
                return math.inf
        else:
            pool = self.thread_pools[cfg.n_workers]
            chunks = [items[i : i + cfg.chunksize] for i in range(0, len(items), cfg.chunksize)]
            futures = [pool.submit(_run_chunk_list, func, chunk) for chunk in chunks]
            deadline = t0 + limit
            for fut in futures:
                remaining = deadline - time.perf_counter()
                try:
                    fut.result(timeout=max(remaining, 0) if math.isfinite(remaining) else None)
                except TimeoutError:
                    for f in futures:
                        f.cancel()
                    for f in futures:
                        if not f.cancelled():
                            try:
                                f.result()
                            except Exception:
                                pass
                    return math.inf
        return time.perf_counter() - t0

    def search(self, func, items, repeat: int, short_jobs_more: bool = False) -> tuple[float, Config, float]:
        """(oracle seconds, its config, serial seconds).

        The three fastest configurations of the grid are timed ``repeat`` times in all
        (with ``short_jobs_more``, more for a short job: :func:`.timing.repeats_for`).
        """
        n = len(items)
        serial = self.time_config(Config("serial", 1, n), func, items, math.inf)
        timings = [(serial, Config("serial", 1, n))]
        grid = [Config("processes", w, c) for w in self.process_counts for c in chunk_candidates(n, w)]
        grid += [Config("threads", w, c) for w in self.thread_counts if w <= n for c in chunk_candidates(n, w)]
        # Likely winners first (Pool's own chunking, an even split), so the cut-off tightens early.
        cores = self.process_counts[0]
        grid.sort(key=lambda cfg: (cfg.engine != "processes", cfg.n_workers != cores,
                                   abs(math.log(cfg.chunksize / max(1, math.ceil(n / (4 * cores)))))))
        for cfg in grid:
            best = min(t for t, _ in timings)
            timings.append((self.time_config(cfg, func, items, 1.25 * best + 0.005), cfg))
        timings.sort(key=lambda tc: tc[0])
        if short_jobs_more:
            repeat = repeats_for(timings[0][0], repeat)
        refined = []
        for t, cfg in timings[:3]:
            for _ in range(repeat - 1):
                t = min(t, self.time_config(cfg, func, items, 2 * t + 0.02))
            refined.append((t, cfg))
        refined.sort(key=lambda tc: tc[0])
        serial = min([serial] + [t for t, c in refined if c.engine == "serial"])
        return refined[0][0], refined[0][1], serial


def pool_default(func, items) -> float:
    t0 = time.perf_counter()
    with multiprocessing.get_context().Pool() as pool:
        pool.map(func, items)
    return time.perf_counter() - t0


def joblib_default(func, items) -> float | None:
    try:
        from joblib import Parallel, delayed
    except ImportError:
        return None
    Parallel(n_jobs=-1)(delayed(func)(x) for x in items[:4])  # start the workers once
    t0 = time.perf_counter()
    Parallel(n_jobs=-1)(delayed(func)(x) for x in items)
    return time.perf_counter() - t0


def calibrate() -> float:
    """Measure (or load) this machine's overheads and start our pool; returns seconds spent."""
    from ..target.target import Target

    from ..planning import overheads

    t0 = time.perf_counter()
    Target.local(calibrate).overheads(measure_now=True)  # estimated now, measured in the background:
    overheads.run_later()                                # measure it here, before anything is timed
    overheads.join_background()
    shared_engine().pool(machine.cpu_count())
    return time.perf_counter() - t0


def run_family(w: Workload, oracle: Oracle, repeat: int, training_dir: str) -> FamilyResult:
    items = w.items()
    expected = [w.func(x) for x in items[:50]]
    oracle_t, oracle_cfg, serial_t = oracle.search(w.func, items, repeat, short_jobs_more=True)

    # Our pool's workers import the workload's module once, as the oracle's forked ones have.
    shared_engine().run(w.func, items[:4], n_workers=machine.cpu_count(), chunksize=1, first_index=0)

    # Each cold run of ours, then the oracle's configuration right after it (paired: the
    # machine's drift weighs on both alike); as many as the oracle's finalists had.
    ours_times, paired = [], []
    for _ in range(repeats_for(oracle_t, repeat)):
        ours_t, outcome = best_of(1, lambda: run_map(w.func, items, training_dir=training_dir, learn=False))
        if outcome.results[:50] != expected or len(outcome.results) != len(items):
            raise AssertionError(f"{w.name}: amorsize_dask.map returned wrong results")
        ours_times.append(ours_t)
        paired.append(oracle.time_config(oracle_cfg, w.func, items, math.inf))
    p = outcome.plan
    plan_text = "serial" if p.engine == "serial" else f"{p.engine} {p.n_workers}x{p.chunksize}"
    return FamilyResult(
        name=w.name,
        n_items=len(items),
        serial=serial_t,
        oracle=min([oracle_t] + paired),
        oracle_config=oracle_cfg,
        ours=min(ours_times),
        ours_plan=plan_text,
        pool_default=pool_default(w.func, items),
        joblib_default=joblib_default(w.func, items),
        paired_ratios=[a / b for a, b in zip(ours_times, paired)],
    )


def run(quick: bool = False, families: list[str] | None = None, out=print) -> list[FamilyResult]:
    """Run the suite; print a table of times and ratios; return the rows."""
    repeat = 1 if quick else 3
    workloads = [w for w in suite(scale=0.25 if quick else 1.0) if not families or w.name in families]
    cores = machine.cpu_count()
    oracle = Oracle(cores)  # fork its pools before anything starts threads
    try:
        out(f"calibration (once per machine, cached): {calibrate():.2f} s; cores={cores}")
        results = []
        with tempfile.TemporaryDirectory(prefix="amorsize-bench-") as training_dir:
            for w in workloads:
                r = run_family(w, oracle, repeat, training_dir)
                results.append(r)
                out(f"  {w.name}: ours {r.ours:.3f}s ({r.ours_plan}) oracle {r.oracle:.3f}s ({r.oracle_config})")
    finally:
        oracle.close()
    out(render(results))
    return results


def render(results: list[FamilyResult]) -> str:
    headers = ["family", "items", "serial s", "oracle s", "oracle config", "ours s", "our plan",
               "ours/oracle", "strict", "Pool.map s", "joblib s"]
    rows = [
        [r.name, str(r.n_items), f"{r.serial:.3f}", f"{r.oracle:.3f}", str(r.oracle_config), f"{r.ours:.3f}",
         r.ours_plan, f"{r.ratio:.2f}", f"{r.strict_ratio:.2f}", f"{r.pool_default:.3f}",
         "-" if r.joblib_default is None else f"{r.joblib_default:.3f}"]
        for r in results
    ]
    lines = [format_table(headers, rows), "",
             "ours/oracle: the median of our runs, each over the oracle's configuration timed right after it; "
             "strict: our best over the oracle's best (the least of all its timings)."]
    for label, ratio in (("ours/oracle", lambda r: r.ratio), ("strict", lambda r: r.strict_ratio)):
        worst = max(results, key=ratio)
        lines.append(f"{label}: geometric mean {geometric_mean([ratio(r) for r in results]):.3f}, "
                     f"worst {ratio(worst):.2f} ({worst.name})")
    return "\n".join(lines)

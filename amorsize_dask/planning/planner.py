"""The planner: from measured figures to a :class:`~amorsize_dask.planning.plan.Plan`.

Order of evidence: the caller's fixed choices, then the k-NN model over measured runs
(when confident), then a sample of the first items timed now with the cost model.
Sampled results are handed back so that no item is computed twice.

>>> from amorsize_dask.target.target import Target
>>> planned = plan_items(abs, [-1, -2, -3], Target.local(abs), engine="auto")
>>> planned.plan.engine, planned.plan.source, planned.sample.results[0]
('serial', 'sample', 1)
"""

from __future__ import annotations

import dataclasses
import math
import time
from dataclasses import dataclass
from typing import Callable, Sequence

from .. import config
from ..engines import shared_engine
from . import cost_model
from . import thread_safety
from .overheads import Overheads
from .fork_cost import forked_start
from .plan import Plan, format_bytes, format_seconds
from .sampling import ONE_CORE_UP_TO, Profile, Sample, sample_items
from .prestart import PRESTART_ABOVE_SECONDS, PoolPrestart
from .speculation import Speculation

# Measuring overheads takes ~0.3 s once per machine or cluster shape (bench: calibrate);
# it is worth it only when the serial remainder is this long, otherwise serial is kept.
CALIBRATE_ABOVE_SECONDS = 0.2


@dataclass
class Planned:
    """A plan and, when it sampled, the results of the sampled items (and the speculated)."""

    plan: Plan
    sample: Sample | None = None
    profile: Profile | None = None
    speculation: Speculation | None = None
    ran_locally: bool = False  # some items could not travel to the planned workers and ran here


def plan_items(
    func: Callable,
    items: Sequence,
    target,
    *,
    engine: str,
    n_workers: int | None = None,
    chunksize: int | None = None,
    learned: Plan | None = None,
    speculate: bool = False,
) -> Planned:
    """Plan a run of ``func`` over ``items`` (a sized sequence) on ``target``.

    ``speculate``: start the last items on the warm process pool while sampling (the
    caller then collects them from ``Planned.speculation``).
    """
    t_start = time.perf_counter()
    planned = _without_sampling(items, target, engine, n_workers, chunksize, learned)
    if planned is None:
        early = _EarlyStart.begin(func, items, target, engine, speculate)
        try:
            sample = _sample(func, items, target, engine, early)
        except BaseException:
            early.abandon()
            raise
        planned = _from_sample(func, sample, len(items), target, engine, n_workers, chunksize, early)
    planned.plan = planned.plan.replace(planning_seconds=time.perf_counter() - t_start)
    return planned


def _without_sampling(items, target, engine, n_workers, chunksize, learned) -> Planned | None:
    """The plan when nothing needs measuring: no items, choices fixed by the caller, the
    model's, or, for ``engine="processes"`` on this machine, ``Pool.map``'s chunking: no
    item of it runs in the caller (one that kills its process would kill the caller), so
    none is timed here; its run, measured, teaches the model the next call's plan."""
    n = len(items)
    if n == 0:
        return Planned(_fixed_plan("serial", 1, 1, 0, ["no items: nothing to run"]))
    if engine == "serial" or (engine != "auto" and n_workers and chunksize):
        w = 1 if engine == "serial" else n_workers
        c = chunksize or n
        return Planned(_fixed_plan(engine, w, c, n, [f"engine={engine}, workers={w}, chunksize={c} fixed by the caller"]))
    if learned is not None:
        return Planned(learned)
    if engine == "processes":  # always this machine (mapping.target_for)
        w = n_workers or target.cores
        c = chunksize or max(1, math.ceil(n / (POOL_MAP_TASKS_PER_WORKER * w)))
        return Planned(_fixed_plan("processes", w, c, n, [
            f"engine=processes: no item runs in this process, so none is timed here: {w} workers x {c} items "
            f"({POOL_MAP_TASKS_PER_WORKER} tasks per worker, as Pool.map) until runs are measured"]))
    return None


# Tasks per worker of multiprocessing.Pool.map's default chunksize (n / (4 x workers)): the
# balance it strikes between each task's overhead and a skewed item's tail.
POOL_MAP_TASKS_PER_WORKER = 4


class _EarlyStart:
    """What starts before the plan is made: the last items on a warm pool (speculation), or
    a cold pool itself (prestart) once the sample suggests it may pay."""

    def __init__(self, spec: Speculation | None, prestart: PoolPrestart | None, n_items: int):
        self.spec, self.prestart = spec, prestart
        self.n_front = spec.first_index if spec is not None else n_items  # items the plan covers

    @classmethod
    def begin(cls, func, items, target, engine: str, speculate: bool) -> "_EarlyStart":
        spec = None
        if speculate and "processes" in target.auto_engines() and engine in ("auto", "processes"):
            spec = Speculation.start(func, items, target.cores, local_fallback=engine == "auto")
        prestart = PoolPrestart.for_call(target, engine, len(items)) if spec is None else None
        return cls(spec, prestart, len(items))

    def costed(self, overheads: Overheads, n_workers: int) -> Overheads:
        """``overheads`` with the start a prestarted pool of ``n_workers`` has left (none once
        it is up)."""
        if self.prestart is None or not self.prestart.started or n_workers != self.prestart.n_workers:
            return overheads
        return dataclasses.replace(overheads, start_seconds=self.prestart.start_left(overheads.start_seconds))

    def abandon(self) -> None:
        if self.spec is not None:
            self.spec.cancel()
        if self.prestart is not None:
            self.prestart.settle("serial", 1)

    def settle(self, plan: Plan) -> Plan:
        """Keep or stop a prestarted pool; the plan says what started early."""
        reasons = list(plan.reasons)
        if self.spec is not None:
            reasons.append(f"the last {self.spec.n_items} item(s) started on the warm process pool while sampling")
        if self.prestart is not None:
            self.prestart.settle(plan.engine, plan.n_workers)
            if self.prestart.started:
                reasons.append(f"the process pool started while sampling ({format_seconds(PRESTART_ABOVE_SECONDS)} "
                               "of predicted work or more)")
        return plan.replace(reasons=tuple(reasons))


def _sample(func, items, target, engine: str, early: _EarlyStart) -> Sample:
    """Time the first items where ``func`` may run: here (with the two-thread probe when
    threads are a choice), or in a first task on a worker when it runs only there."""
    n = len(items)
    parallelism = (target.cores, config.get("planner.max-threads") if target.client is None else target.cores)
    front = items if early.n_front == n else items[:early.n_front]  # the call's own: its head continues
    if target.on_workers_only:
        return target.sample_on_worker(func, front, n, parallelism)
    probe = target.client is None and engine in ("auto", "threads") and not _known_unsafe(target, engine)
    return sample_items(func, front, n, parallelism=parallelism, probe=probe,
                        probe_is_free=_no_process_plan_wins(target, early.n_front, engine) if probe else None,
                        pool_start=early.prestart)


def _known_unsafe(target, engine: str) -> bool:
    return engine == "auto" and target.client is None and not target.thread_safe()


def _from_sample(func, sample: Sample, n: int, target, engine, n_workers, chunksize, early) -> Planned:
    """The plan from the sample's profile and the cost model (see :func:`_rank`)."""
    prof = sample.profile
    n_rest = early.n_front - prof.n_sampled
    reasons = [describe_profile(prof)] + list(target.placement_reasons()) + _thread_reasons(prof, target, engine)
    if n_rest == 0:
        reasons.append("every item was computed while sampling")
        plan = Plan(engine="dask" if target.on_workers_only else "serial", n_workers=1, chunksize=1, n_tasks=0,
                    source="sample", confidence=confidence(prof), predicted_seconds=0.0, n_items=n, n_sampled=prof.n_sampled, n_speculated=n - early.n_front,
                    predicted_serial_seconds=0.0, reasons=tuple(reasons))
        return Planned(early.settle(plan), sample, prof, early.spec)
    serial_rest = n_rest * prof.item_seconds
    ranked, why = _rank(func, prof, n_rest, target, engine, n_workers, chunksize, early)
    reasons += why
    best = choose(ranked, serial_rest, engine)
    reasons.append(describe_choice(ranked, best, serial_rest))
    plan = Plan(
        engine=best.engine, n_workers=best.n_workers, chunksize=best.chunksize,
        n_tasks=math.ceil(n_rest / best.chunksize), source="sample", confidence=confidence(prof),
        predicted_seconds=prof.sample_seconds + best.seconds, n_items=n, n_sampled=prof.n_sampled,
        n_speculated=n - early.n_front, predicted_serial_seconds=n * prof.item_seconds, reasons=tuple(reasons),
    )
    return Planned(early.settle(plan), sample, prof, early.spec)


def _thread_reasons(prof: Profile, target, engine: str) -> list[str]:
    """Why threads are out (a failure seen on threads, now or before), marking the workload."""
    reasons = []
    if _known_unsafe(target, engine):
        changed = target.changed_shared_state()
        reasons.append(f"threads ruled out: the function changes {changed}, which every thread shares" if changed
                       else "threads ruled out: this function failed on threads in an earlier run here")
    if prof.thread_failure is not None:
        thread_safety.mark_unsafe(target.workload)
        verdict = "threads ruled out" if engine == "auto" else "threads kept: asked for"
        reasons.append(f"{verdict}: the function raised {prof.thread_failure} on two threads only "
                       "(those items ran again serially; their serial results are kept)")
    return reasons


def _rank(func, prof: Profile, n_rest: int, target, engine, n_workers, chunksize, early) -> tuple[list, list]:
    """Every configuration the cost model predicts for the rest, fastest first (serial only
    when the work left is too little to be worth measuring this target's overheads), and
    what the plan should say about it."""
    serial_rest = n_rest * prof.item_seconds
    reasons: list[str] = []
    overheads = target.overheads(measure_now=engine != "auto" or serial_rest >= CALIBRATE_ABOVE_SECONDS)
    if overheads is None:
        reasons.append(
            f"serial: {format_seconds(serial_rest)} of work left is too little to measure the "
            f"parallel overheads here (done once above {format_seconds(CALIBRATE_ABOVE_SECONDS)})"
        )
        if not target.on_workers_only:
            return [cost_model.Candidate("serial", 1, n_rest, serial_rest)], reasons
        return [_one_task_within_memory(prof, n_rest, serial_rest, target, reasons)], reasons
    reasons.append(describe_overheads(overheads, target.cores))
    engines = target.auto_engines() if engine == "auto" else (engine,)
    workers = n_workers or target.cores
    checked = engine == "auto" and "processes" in engines and prof.picklable
    if checked and not _reaches_workers(func, workers, early):
        prof = dataclasses.replace(prof, picklable=False)
        reasons.append("the function cannot be pickled: processes ruled out")
    costed, pool_warm = early.costed(overheads, workers), target.pool_warm(workers)
    local = "processes" in engines and target.client is None
    # Checked, a function for a running pool was pickled already (by the check or by
    # speculation), and a large one is known: it is not pickled again to find out.
    forked = forked_start(func, costed, workers, find_out=not checked) if local else None
    if forked is not None:  # the sample, timed here, did not pay what the pool's workers copy
        costed, pool_warm = forked[0], False
        reasons += [forked[1]] if forked[1] else []
    ranked = cost_model.rank(
        prof, n_rest, costed, cores=target.cores, pool_warm=pool_warm,
        engines=engines, n_workers=n_workers, chunksize=chunksize,
        max_threads=config.get("planner.max-threads"),
        memory_limit=target.chunk_memory() * config.get("planner.memory-fraction"),
        min_tasks_per_worker=config.get("planner.min-tasks-per-worker"),
    )
    if not ranked:
        raise TypeError(  # as the engine raises what it cannot send or return
            f"engine={engine!r} cannot run these items: the sampled items or their results cannot "
            "be pickled to travel to a worker process; use engine='threads' or engine='serial'"
        )
    return ranked, reasons


def _one_task_within_memory(prof: Profile, n_rest: int, serial_rest: float, target, reasons: list):
    """The cluster's "serial" (one task on one worker), or chunks that fit a worker thread's
    share of its memory limit (:meth:`..target.target.Target.chunk_memory`): 7 results of
    48 MB in one task overflowed workers limited to 300 MB, where ``Client.map`` ran."""
    limits = cost_model.Limits.from_settings(available_memory=target.chunk_memory())
    if cost_model.fits(prof, n_rest, limits, in_flight=2):  # the task's items and results, and the next ones
        return cost_model.Candidate("dask", 1, n_rest, serial_rest)
    per_item = prof.bytes_in + prof.bytes_out
    size = max(1, int(limits.memory_bytes // (2 * per_item)))
    reasons.append(f"tasks of {size} items: {n_rest} items' inputs and results ({format_bytes(n_rest * per_item)}) "
                   f"would not fit a worker thread's share of its memory limit")
    return cost_model.Candidate("dask", target.cores, size, serial_rest)


def _reaches_workers(func, n_workers: int, early: "_EarlyStart") -> bool:
    """Can ``func`` run on a pool of ``n_workers``? Speculation pickled it if it started
    items; else :meth:`..engines.processes.ProcessEngine.reaches`."""
    return early.spec is not None or shared_engine().reaches(func, n_workers)


def plan_rest(func, prof: Profile, n_rest: int, target, engine: str) -> tuple[cost_model.Candidate, list[str]]:
    """The best configuration for ``n_rest`` items left, from a profile of the items run so
    far (a serial plan that overran its prediction: :mod:`.overrun`), and why."""
    nothing_early = _EarlyStart(None, None, n_rest)
    ranked, reasons = _rank(func, prof, n_rest, target, engine, None, None, nothing_early)
    best = choose(ranked, n_rest * prof.item_seconds, engine)
    return best, reasons + [describe_choice(ranked, best, n_rest * prof.item_seconds)]


def _no_process_plan_wins(target, n_items: int, engine: str):
    """``(item_seconds, bytes_per_item) -> bool``: would serial beat every process plan?

    Then a probe of two threads costs nothing but its hand-off: without it, the plan would
    be serial. None when this machine's overheads are not measured yet (the plan is serial).
    """
    found = target.overheads(measure_now=False)
    if found is None:
        return None
    if engine == "threads":
        return lambda item_seconds, nbytes: True

    def serial_wins(item_seconds: float, nbytes: float) -> bool:
        prof = Profile(n_sampled=1, item_seconds=item_seconds, item_cv=0.0, cpu_ratio=1.0, bytes_in=nbytes,
                       bytes_out=0.0, picklable=True, thread_speedup=None, sample_seconds=0.0)
        ranked = cost_model.rank(prof, n_items, found, cores=target.cores, pool_warm=target.pool_warm(target.cores),
                                 engines=("serial", "processes"))
        return choose(ranked, n_items * item_seconds, "auto").engine == "serial"

    return serial_wins


def choose(ranked: list[cost_model.Candidate], serial_rest: float, engine: str) -> cost_model.Candidate:
    """The fastest candidate; serial unless a parallel one wins by the noise margin."""
    best = ranked[0]
    if engine == "auto" and best.engine != "serial":
        serial = next((c for c in ranked if c.engine == "serial"), None)
        if serial is not None and best.seconds * config.get("planner.min-speedup") > serial_rest:
            return serial
        # Only on the workers: one task on one worker is the cluster's "serial".
        ones = [c for c in ranked if c.n_workers == 1] if serial is None else []
        one = max(ones, key=lambda c: c.chunksize, default=None)
        if one is not None and best.seconds * config.get("planner.min-speedup") > one.seconds:
            return one
    return best


def confidence(profile: Profile) -> float:
    """More items and less spread: more confidence in the sampled figures (0..1)."""
    return round(profile.n_sampled / (profile.n_sampled + 2) / (1 + profile.item_cv), 3)


def _fixed_plan(engine: str, n_workers: int, chunksize: int, n: int, reasons) -> Plan:
    n_tasks = math.ceil(n / chunksize) if n else 0
    return Plan(engine=engine, n_workers=n_workers, chunksize=chunksize, n_tasks=n_tasks, source="default",
                confidence=1.0 if n == 0 else 0.0, predicted_seconds=0.0, n_items=n, reasons=tuple(reasons))


def describe_profile(p: Profile) -> str:
    threads = "" if p.thread_speedup is None else f", 2 threads {p.thread_speedup:.2f}x"
    if p.cores_busy > ONE_CORE_UP_TO:
        threads += f", {p.cores_busy:.1f} cores busy per item (its own threads)"
    return (
        f"sampled {p.n_sampled} items in {format_seconds(p.sample_seconds)}: "
        f"{format_seconds(p.item_seconds)}/item (cv {p.item_cv:.2f}), CPU/wall {p.cpu_ratio:.2f}{threads}; "
        f"pickled {format_bytes(p.bytes_in)} in, {format_bytes(p.bytes_out)} out per item"
        + ("" if p.picklable else " (NOT picklable: processes ruled out)")
    )


def describe_overheads(o: Overheads, cores: int) -> str:
    if o.start_method == "dask":
        head = f"cluster: {cores} worker threads; "
    else:
        start = format_seconds(o.start_seconds) + (" (estimated)" if o.start_estimated and not o.estimated else "")
        head = f"machine: {cores} usable cores; {o.start_method} pool start {start}, "
    return (
        head
        + f"task round trip {format_seconds(o.task_seconds)}, "
        + f"{format_bytes(o.bytes_per_second)}/s to workers and back"
        + (f", thread task {format_seconds(o.thread_task_seconds)}" if o.thread_task_seconds else "")
        + (" (estimated: not measured here yet; measured after this call, in the background)"
           if o.estimated else "")
        + (" (measured while the machine was busy: measured again after an hour)" if o.provisional else "")
    )


def describe_choice(ranked, best, serial_rest: float) -> str:
    best_by_engine = {}
    for cand in ranked:
        best_by_engine.setdefault(cand.engine, cand)
    parts = [
        f"{c.engine} {c.n_workers}x{c.chunksize} {format_seconds(c.seconds)}"
        for c in best_by_engine.values()
    ]
    speed = serial_rest / best.seconds if best.seconds > 0 else 1.0
    verdict = f"{best.engine} ({speed:.2f}x serial)"
    if best.engine == "serial" and len(best_by_engine) > 1:
        verdict += ": in-process, no parallel plan beats it by the margin"
    return f"predicted for the rest: {'; '.join(parts)} -> {verdict}"

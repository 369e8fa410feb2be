"""The planned call behind ``ad.map`` (:mod:`.entry` hands it over, after the call's head
where there is one): plan, run, record (:func:`run_map`); and ``plan``.

>>> outcome = run_map(pow, [2, 3, 4], [5, 2])
>>> outcome.results, outcome.plan.engine
([32, 9], 'serial')
"""

from __future__ import annotations

import dataclasses
import math
import time
from dataclasses import dataclass
from typing import Callable, Iterable

from . import config, inputs, validation
from .cluster import growth
from .target.context import active_client, engine_dask_names
from .engines import exit_hooks, get_engine, shared_engine
# The process engine loads with map, not inside a script's first call (~3 ms of it); so
# does psutil, which the plan's fingerprint and memory bound ask (~9 ms; target.machine
# loads it when asked, so that a call's head and the workers do without it).
from .engines import processes  # noqa: F401
import psutil  # noqa: F401
from .errors import WorkerStartError, warn_once, warn_running_serially
from .planning import overheads, overrun, thread_safety
from .planning import head as planning_head
from .planning.plan import Plan
from .progress import make_progress
from .planning.planner import Planned, plan_items, plan_rest
from .target.target import Target
from .target.workload import function_name
from .entry import map  # noqa: F401  (the public map, here where it always was)


@dataclass
class MapOutcome:
    """What one ``map`` call did: results, the plan, and the measured figures."""

    results: list
    plan: Plan
    wall_seconds: float
    compute_seconds: float


@exit_hooks.waited_for
@config.looked_up_once
def run_map(func, *iterables, client=None, engine="auto", n_workers=None, chunksize=None,
            training_dir=None, learn=True, progress=False, allow_local=None, head=None) -> MapOutcome:
    """:func:`map`, returning the plan and measurements too (used by benchmarks and wrappers).
    ``head``: what :func:`.planning.head.run_head` ran of this call's items (read already)."""
    validation.check_progress(progress)
    validation.check_bool("learn", learn)
    n_workers, chunksize = validation.check_call(func, iterables, client=client, engine=engine, n_workers=n_workers,
                                                 chunksize=chunksize, training_dir=training_dir)
    t0 = time.perf_counter() if head is None else head.started
    loading = 0.0 if head is None else time.perf_counter() - head.ended  # the planner's, after the head
    if head is None:
        engine = engine_at_exit(engine_dask_names(engine, client), client)
        call, items, input_error = inputs.prepare(func, iterables)
        target = target_for(func, client, engine, training_dir, allow_local)  # keyed by func itself, not its wrapper
    else:  # the call began here, with nothing configured: a client (or a dask setting) its
        # function made meanwhile is not the call's (hunt 18: item 0 ran twice on that client)
        engine = engine_at_exit(engine, None)
        call, items, input_error = head.call, head.items, head.input_error
        target = Target.local(func, training_dir)
    with planning_head.continued(head):  # its sampler goes on from the head
        planned = plan_call(call, items, target, engine=engine, n_workers=n_workers, chunksize=chunksize,
                            speculate=head is None)
    results, compute = _done_before_the_run(planned, head)
    one_time_before = shared_engine().one_time_seconds_total  # a pool started while sampling overlapped it
    plan = planned.plan
    rest = items[plan.n_sampled : len(items) - plan.n_speculated]
    run_id = target.start_run(func, planned) if learn else ""
    if len(rest) or planned.speculation is not None:
        bar = make_progress(progress, len(items), start=t0)
        try:
            if bar is not None:
                bar.advance(len(results))
            run = _run_rest(call, rest, planned, target, engine, run_id, bar)
            results.extend(run.results)
            compute += run.compute_seconds
            _note_thread_failure(run, target, func)
            if planned.speculation is not None:
                results.extend(planned.speculation.results(progress=bar))
                compute += planned.speculation.compute_seconds
        except BaseException:
            if planned.speculation is not None:
                planned.speculation.cancel()
            if bar is not None:
                bar.close(stopped=True)
            raise
        finally:
            if bar is not None:
                bar.close()
    wall = time.perf_counter() - t0
    if learn and len(items):
        # A pool's start and its workers' imports meanwhile are this run's only here (on a
        # cluster another thread's: a dask run's record read one_time_seconds beside an imap's).
        one_time = loading + (shared_engine().one_time_seconds_total - one_time_before if target.client is None else 0)
        target.record(func, planned, wall_seconds=wall, compute_seconds=compute, run_id=run_id,
                      one_time_seconds=one_time)
    overheads.run_later()  # a calibration this call asked for, now that it is done
    if input_error is not None:  # the items read before it mapped without an error: as builtins.map raises it
        raise input_error
    return MapOutcome(results, planned.plan, wall, compute)


def _done_before_the_run(planned: Planned, head) -> tuple[list, float]:
    """(the results of the items done while planning, their compute seconds): the sample's
    (the head's among them), or the head's alone when the model planned the call."""
    if planned.sample is not None:
        return list(planned.sample.results), planned.profile.sample_seconds if planned.profile is not None else 0.0
    if head is None or not head.results:
        return [], 0.0
    head.close()
    planned.plan = planned.plan.replace(n_sampled=len(head.results))  # the run starts after them
    return list(head.results), sum(t * n for t, n in zip(head.per_item, head.batch_sizes))


def _run_rest(call, rest, planned: Planned, target: Target, engine: str, run_id: str, bar):
    """Run the items the sample left on the plan's engine (results, compute seconds). A
    serial plan made from the sample is watched (:mod:`.planning.overrun`)."""
    plan = planned.plan
    if _watched(plan, planned, target, engine, len(rest)):
        return _run_watched(call, rest, planned, target, engine, run_id, bar)
    kwargs = _engine_kwargs(plan, engine, run_id, target)
    if plan.engine == "processes" and planned.speculation is not None:
        kwargs["func_bytes"] = planned.speculation.func_bytes  # pickled once for the call
    if plan.engine in ("threads", "processes") and exit_hooks.interpreter_exiting():
        return _serially(call, rest, planned, bar)  # the main thread returned while a non-daemon thread planned
    try:
        run = get_engine(plan.engine, target.client).run(
            call, rest, n_workers=plan.n_workers, chunksize=plan.chunksize, first_index=plan.n_sampled,
            progress=bar, **kwargs,
        )
    except RuntimeError as exc:
        if exit_hooks.refused_at_exit(exc):  # the main thread returned while this one planned
            return _serially(call, rest, planned, bar)
        if engine != "auto" or not isinstance(exc, WorkerStartError):
            raise
        warn_running_serially(exc)
        return _serially(call, rest, planned, bar)
    if run.notes:  # the engine ran some items otherwise than planned: recorded with the plan
        planned.plan = plan.replace(reasons=plan.reasons + tuple(run.notes))
        planned.ran_locally = True
    return run


def _serially(call, rest, planned: Planned, bar):
    """Run ``rest`` here after all (its workers cannot start, or the interpreter is exiting
    and its pools take no new work); the plan says so."""
    plan = planned.plan = planned.plan.replace(engine="serial", n_workers=1, chunksize=len(rest), n_tasks=1)
    return get_engine("serial").run(call, rest, first_index=plan.n_sampled, progress=bar)


def _watched(plan: Plan, planned: Planned, target: Target, engine: str, n_rest: int) -> bool:
    """Is this a serial plan the sample chose, here, that a longer run may show wrong?"""
    return (engine == "auto" and target.client is None and plan.engine == "serial" and plan.source == "sample"
            and planned.profile is not None and n_rest > 1)


def _run_watched(call, rest, planned: Planned, target: Target, engine: str, run_id: str, bar) -> overrun.Watched:
    """Serial, re-planned from the items it ran if it overruns its prediction (skewed items)."""
    plan, prof = planned.plan, planned.profile

    def replan(item_seconds: float, item_cv: float, n_left: int):
        measured = dataclasses.replace(prof, item_seconds=item_seconds, item_cv=item_cv)
        return plan_rest(call, measured, n_left, target, engine)

    watched = overrun.run_watched(
        call, rest, first_index=plan.n_sampled, expected_seconds=len(rest) * prof.item_seconds, replan=replan,
        progress=bar, engine_kwargs=lambda cand: _engine_kwargs(plan.replace(engine=cand.engine), engine, run_id,
                                                                target))
    reasons = plan.reasons + tuple(watched.reasons) + watched.notes
    cand = watched.replanned
    if cand is not None:
        plan = plan.replace(engine=cand.engine, n_workers=cand.n_workers, chunksize=cand.chunksize,
                            n_tasks=math.ceil(len(rest) / cand.chunksize))
    planned.plan = plan.replace(reasons=reasons)
    planned.ran_locally = planned.ran_locally or bool(watched.notes)
    return watched


def _engine_kwargs(plan: Plan, engine: str, run_id: str, target: Target) -> dict:
    """Engine-specific arguments: the dask engine's run id and the cluster's shape the plan
    saw (not asked again: one scheduler RPC, ~1.5 ms of a ~25 ms warm 1,000-item call);
    under ``engine="auto"``, the process engine runs here what cannot be pickled instead of
    raising (a fixed ``engine="processes"`` raises a TypeError naming it), and the thread
    engine re-runs serially what failed only on threads (an error seen only there is not
    the user's)."""
    if plan.engine == "dask":
        return {"run_id": run_id or None, "worker_threads": target.worker_threads}
    if plan.engine == "processes" and engine == "auto":
        return {"local_fallback": True}
    if plan.engine == "threads" and engine == "auto":
        return {"serial_retry": True}
    return {}


@config.looked_up_once
def plan(
    func: Callable,
    *iterables: Iterable,
    client=None,
    engine: str = "auto",
    n_workers: int | None = None,
    chunksize: int | None = None,
    training_dir=None,
    allow_local: bool | None = None,
) -> Plan:
    """What :func:`map` would do with these arguments (it may time the first items).

    Iterators (generators, ``iter(x)``, ``map`` objects) are left unread, so that the same
    iterator can be passed to :func:`map` next: the plan then comes from the model's past
    runs (for a length the iterator reports) or is a default, and ``explain()`` says so.

    >>> p = plan(abs, range(10))
    >>> p.engine, p.n_items
    ('serial', 10)
    >>> gen = (x for x in range(3))
    >>> plan(abs, gen).source, map(abs, gen)
    ('default', [0, 1, 2])
    """
    n_workers, chunksize = validation.check_call(func, iterables, client=client, engine=engine, n_workers=n_workers,
                                                 chunksize=chunksize, training_dir=training_dir)
    engine = engine_dask_names(engine, client)
    target = target_for(func, client, engine, training_dir, allow_local)
    if any(inputs.is_one_shot(it) for it in iterables):
        return _unread_plan(target, inputs.length_hint(iterables), engine, n_workers, chunksize)
    call, items, _ = inputs.prepare(func, iterables)
    return plan_call(call, items, target, engine=engine, n_workers=n_workers, chunksize=chunksize, explore=False).plan


def _unread_plan(target: "Target", n: int, engine: str, n_workers, chunksize) -> Plan:
    """The plan for items that cannot be read without using them up: the model's (when it
    knows this workload at the iterator's reported length), else a default."""
    why = ("the items are a one-shot iterator: plan() left it unread (map() reads it into a list, "
           "then samples its first items)")
    if n:
        learned = None
        if engine != "serial" and n_workers is None and chunksize is None:
            learned = target.learned_plan(n, explore=False)
        if learned is not None and engine in ("auto", learned.engine) and _threads_allowed(target, learned):
            return learned.replace(reasons=(why,) + learned.reasons, fingerprint=target.fingerprint.id,
                                   workload=target.workload)
    count = f"{n} items (the iterator's own count)" if n else "the number of items is unknown until it is read"
    chosen = engine if engine != "auto" else ("serial" if target.client is None else "dask")
    workers = 1 if chosen == "serial" else (n_workers or target.cores)
    size = chunksize or max(n, 1)
    return Plan(engine=chosen, n_workers=workers, chunksize=size, n_tasks=math.ceil(n / size), source="default",
                confidence=0.0, predicted_seconds=0.0, n_items=n,
                reasons=(why, count + "; nothing measured, so this is a default"),
                fingerprint=target.fingerprint.id, workload=target.workload)


def plan_call(func, items, target: "Target", *, engine, n_workers, chunksize, explore=True, speculate=False) -> Planned:
    """Plan one call on ``target``: the model's plan when it is confident (and allowed),
    else :func:`~amorsize_dask.planning.planner.plan_items` (sampling); planning time
    includes the model's query."""
    t0 = time.perf_counter()
    learned = None
    if engine != "serial" and n_workers is None and chunksize is None and len(items):
        learned = target.learned_plan(len(items), explore=explore, engine=engine)
        if learned is not None and engine not in ("auto", learned.engine):
            learned = None  # the model's best is another engine than the one asked for: sample
        if learned is not None and not _threads_allowed(target, learned):
            learned = None  # measured on threads before the function failed there: sample
    planned = plan_items(func, items, target, engine=engine, n_workers=n_workers, chunksize=chunksize,
                         learned=learned, speculate=speculate)
    if target.client is not None and n_workers is None and chunksize is None:
        room = growth.room_to_grow(target.client, target.cores)
        if room is not None:  # tasks for the workers adaptive scaling may add
            planned.plan = growth.leave_room(planned.plan, room, target.cores)
    # Planning time includes the model's query (plan_items only sees its answer).
    planned.plan = planned.plan.replace(fingerprint=target.fingerprint.id, workload=target.workload,
                                        planning_seconds=time.perf_counter() - t0)
    return planned


def _note_thread_failure(run, target: "Target", func) -> None:
    """A run whose function raised on threads only: never threads for it again (said once)."""
    failure = getattr(run, "thread_failure", None)
    if failure:
        thread_safety.mark_unsafe(target.workload)
        warn_once(f"amorsize_dask: {function_name(func)} raised {failure} on threads only; those items ran "
                  "serially, and engine='auto' will not use threads for it again")


def _threads_allowed(target: "Target", plan: Plan) -> bool:
    """A plan on threads only for a function not known to fail on threads."""
    return plan.engine != "threads" or target.client is not None or target.thread_safe()


def engine_at_exit(engine: str, client) -> str:
    """``engine``, or "serial" while the interpreter exits (a map in an ``atexit``
    handler): thread and process pools refuse new work then ("cannot schedule new futures
    after interpreter shutdown"), as ``builtins.map`` never would. An engine the caller
    asked for by name is a warning."""
    if client is not None or engine in ("serial", "dask") or not exit_hooks.interpreter_exiting():
        return engine
    if engine != "auto":
        warn_once(f"amorsize_dask: the interpreter is exiting, when pools take no new work: engine={engine!r} "
                  "runs serially")
    return "serial"


def target_for(func, client, engine: str, training_dir, allow_local=None, *, wait: bool = True) -> Target:
    """The cluster when one is given or active (and no local engine was asked for), else
    here. ``wait``: for a cluster's first worker (see :meth:`Target.cluster`)."""
    if allow_local is not None:
        validation.check_bool("allow_local", allow_local)
    if engine in ("serial", "threads", "processes"):
        return Target.local(func, training_dir)
    if client is None:
        client = active_client()
    if client is None:
        if engine == "dask":
            raise ValueError(
                "engine='dask' needs a distributed Client: pass client=..., or create one "
                "first (distributed.Client()), or use engine='processes' on this machine"
            )
        return Target.local(func, training_dir)
    return Target.cluster(client, func, training_dir, allow_local, wait=wait)


as_sequence = inputs.as_sequence  # bag.map reads its items the same way

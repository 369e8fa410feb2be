"""``map`` and ``plan``: the library's front door.

>>> import amorsize_dask as ad
>>> ad.map(lambda x: x * 2, range(5))
[0, 2, 4, 6, 8]
>>> ad.map(str.upper, iter(["a", "b"]))
['A', 'B']
"""

from __future__ import annotations

import builtins
import logging
import time
import warnings
from dataclasses import dataclass
from typing import Callable, Iterable

from . import validation
from .target.context import active_client
from .engines import get_engine
from .errors import WorkerStartError
from .planning.plan import Plan
from .progress import make_progress
from .planning.planner import Planned, plan_items
from .target.target import Target


def map(
    func: Callable,
    iterable: Iterable,
    *,
    client=None,
    engine: str = "auto",
    n_workers: int | None = None,
    chunksize: int | None = None,
    training_dir=None,
    learn: bool = True,
    progress=False,
    allow_local: bool | None = None,
) -> list:
    """``list(map(func, iterable))``, run the fastest way this machine or cluster knows.

    Parameters
    ----------
    func : callable of one argument.
    iterable : list, tuple, range, numpy array, or any iterable (consumed once).
    client : a ``distributed.Client`` to run on; default: the active one, if any.
    engine : "auto" (choose), "serial", "threads", "processes" or "dask".
    n_workers, chunksize : fix the number of workers / items per task (default: planned).
    training_dir : where measured runs are recorded (default: ``amorsize.training-dir``).
    learn : record this run's measurements (default True).
    progress : show a progress bar on a terminal (True), or always on the given stream.
    allow_local : on a cluster, may ``func`` run in this process (sampling, tiny jobs)?
        Default ``amorsize.cluster.allow-local`` (False: only on the workers, as ``Client.map``).

    Returns
    -------
    list : the results, in the order of ``iterable``.

    >>> map(abs, [-3, 4, -5], engine="threads")
    [3, 4, 5]
    """
    return run_map(
        func, iterable, client=client, engine=engine, n_workers=n_workers, chunksize=chunksize,
        training_dir=training_dir, learn=learn, progress=progress, allow_local=allow_local,
    ).results


@dataclass
class MapOutcome:
    """What one ``map`` call did: results, the plan, and the measured figures."""

    results: list
    plan: Plan
    wall_seconds: float
    compute_seconds: float


def run_map(func, iterable, *, client=None, engine="auto", n_workers=None, chunksize=None,
            training_dir=None, learn=True, progress=False, allow_local=None) -> MapOutcome:
    """:func:`map`, returning the plan and measurements too (used by benchmarks and wrappers)."""
    validation.check_progress(progress)
    validation.check_bool("learn", learn)
    items, n_workers, chunksize = _checked(func, iterable, client, engine, n_workers, chunksize, training_dir)
    t0 = time.perf_counter()
    target = _target(func, client, engine, training_dir, allow_local)
    planned = _plan(func, items, target, engine=engine, n_workers=n_workers, chunksize=chunksize, speculate=True)
    plan = planned.plan
    results = list(planned.sample.results) if planned.sample is not None else []
    compute = planned.profile.sample_seconds if planned.profile is not None else 0.0
    rest = items[plan.n_sampled : len(items) - plan.n_speculated]
    run_id = target.start_run(func, planned) if learn else ""
    if len(rest) or planned.speculation is not None:
        engine_kwargs = {"run_id": run_id} if plan.engine == "dask" and run_id else {}
        bar = make_progress(progress, len(items))
        try:
            if bar is not None:
                bar.advance(len(results))
            try:
                run = get_engine(plan.engine, target.client).run(
                    func, rest, n_workers=plan.n_workers, chunksize=plan.chunksize, first_index=plan.n_sampled,
                    progress=bar, **engine_kwargs,
                )
            except WorkerStartError as exc:
                if engine != "auto":
                    raise
                warn_once(str(exc) + " — running serially instead")
                plan = planned.plan = plan.replace(engine="serial", n_workers=1, chunksize=len(rest), n_tasks=1)
                run = get_engine("serial").run(func, rest, first_index=plan.n_sampled, progress=bar)
            results.extend(run.results)
            compute += run.compute_seconds
            if planned.speculation is not None:
                results.extend(planned.speculation.results(progress=bar))
                compute += planned.speculation.compute_seconds
        except BaseException:
            if planned.speculation is not None:
                planned.speculation.cancel()
            raise
        finally:
            if bar is not None:
                bar.close()
    wall = time.perf_counter() - t0
    if learn and len(items):
        target.record(func, planned, wall_seconds=wall, compute_seconds=compute, run_id=run_id)
    return MapOutcome(results, plan, wall, compute)


def plan(
    func: Callable,
    iterable: Iterable,
    *,
    client=None,
    engine: str = "auto",
    n_workers: int | None = None,
    chunksize: int | None = None,
    training_dir=None,
    allow_local: bool | None = None,
) -> Plan:
    """What :func:`map` would do with these arguments (it may time the first items).

    >>> p = plan(abs, range(10))
    >>> p.engine, p.n_items
    ('serial', 10)
    """
    items, n_workers, chunksize = _checked(func, iterable, client, engine, n_workers, chunksize, training_dir)
    target = _target(func, client, engine, training_dir, allow_local)
    return _plan(func, items, target, engine=engine, n_workers=n_workers, chunksize=chunksize, explore=False).plan


def _checked(func, iterable, client, engine, n_workers, chunksize, training_dir):
    """The arguments ``map`` and ``plan`` share, checked: (items, n_workers, chunksize)."""
    validation.check_func(func)
    validation.check_engine(engine)
    validation.check_client(client)
    validation.check_training_dir(training_dir)
    n_workers = validation.check_positive_int("n_workers", n_workers, "or None to let amorsize choose")
    chunksize = validation.check_positive_int("chunksize", chunksize, "or None to let amorsize choose")
    return as_sequence(validation.check_iterable(iterable)), n_workers, chunksize


def _plan(func, items, target: "Target", *, engine, n_workers, chunksize, explore=True, speculate=False) -> Planned:
    t0 = time.perf_counter()
    learned = None
    if engine != "serial" and n_workers is None and chunksize is None and len(items):
        learned = target.learned_plan(len(items), explore=explore)
        if learned is not None and learned.explored and engine not in ("auto", learned.engine):
            learned = target.learned_plan(len(items), explore=False)  # explore within the engine only
        if learned is not None and engine not in ("auto", learned.engine):
            learned = None  # the model's best is another engine than the one asked for: sample
    planned = plan_items(func, items, target, engine=engine, n_workers=n_workers, chunksize=chunksize,
                         learned=learned, speculate=speculate)
    # Planning time includes the model's query (plan_items only sees its answer).
    planned.plan = planned.plan.replace(fingerprint=target.fingerprint.id, workload=target.workload,
                                        planning_seconds=time.perf_counter() - t0)
    return planned


_WARNED: set[str] = set()


def warn_once(message: str) -> None:
    """A RuntimeWarning (and a log line) the first time ``message`` is seen in this process."""
    if message in _WARNED:
        return
    _WARNED.add(message)
    logging.getLogger("amorsize_dask").warning(message)
    warnings.warn(message, RuntimeWarning, stacklevel=3)


def _target(func, client, engine: str, training_dir, allow_local=None) -> Target:
    """The cluster when one is given or active (and no local engine was asked for), else here."""
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
    return Target.cluster(client, func, training_dir, allow_local)


def as_sequence(iterable):
    """A sized, sliceable view of ``iterable``; other iterables are consumed once into a list.

    >>> as_sequence(range(3)), as_sequence(x for x in "ab")
    (range(0, 3), ['a', 'b'])
    """
    if isinstance(iterable, (list, tuple, range, str, bytes)):
        return iterable
    if hasattr(iterable, "shape") and hasattr(iterable, "__array__") and getattr(iterable, "ndim", 0) >= 1:
        return iterable
    return builtins.list(iterable)

"""``amorsize_dask.bag.map``: a lazy ``dask.bag.Bag`` partitioned by the plan.

>>> from amorsize_dask import bag
>>> b = bag.map(abs, [-1, -2, -3, -4])
>>> b.compute(scheduler="sync")
[1, 2, 3, 4]
"""

from __future__ import annotations

import os
import time
from dataclasses import replace

import dask.bag as db

from . import validation
from .errors import NoWorkersYet
from .target.context import current_worker
from .engines.base import raise_failure_in_generator
from .engines.chunks import ByState, pickle_by_state, portable_failure, run_chunk
from .engines.transport import WholeList
from .cluster.keys import KEY_PREFIX, key_name, new_run_id
from .learning.learner import get_learner
from .mapping import as_sequence, target_for
from .planning.plan import Plan
from .planning.planner import POOL_MAP_TASKS_PER_WORKER, Planned
from .cluster.reporting import COLLECTOR, TOPIC, gather_fragments, report

def map(func, seq_or_bag, *, client=None, training_dir=None, learn: bool = True) -> db.Bag:
    """A Bag of ``func`` applied to every item, partitioned as planned; lazy.

    Building it computes nothing (no sample either: a function reading state the caller
    changes before ``compute()`` sees the new state). A sequence is partitioned as the
    model plans it, or four partitions per worker thread before anything was measured;
    a Bag keeps its partitions unless measured runs say merging them is faster. When the
    Bag is computed, each partition measures itself where it runs and, once all have
    reported, the run is recorded like any other.
    """
    validation.check_func(func)
    validation.check_client(client)
    validation.check_training_dir(training_dir)
    validation.check_bool("learn", learn)
    validation.check_settings()
    try:
        target = target_for(func, client, "auto", training_dir, wait=False)
    except NoWorkersYet:  # compute() may come after the cluster scales up: nothing to plan for now
        target, learn = None, False
    if isinstance(seq_or_bag, db.Bag):
        bag, plan, planned = _plan_bag(func, seq_or_bag, target) if target is not None else (seq_or_bag, None, None)
        return _measured(func, bag, plan, planned, target, learn, client=client)
    items = as_sequence(validation.check_iterable(seq_or_bag))
    if not len(items):
        return db.from_sequence([], npartitions=1)
    plan = _plan_sequence(len(items), target) if target is not None else None
    size = plan.chunksize if plan is not None else max(1, -(-len(items) // DASK_BAG_PARTITIONS))
    return _measured(func, db.from_sequence(items, partition_size=size), plan, None, target, learn, client=client,
                     partition_size=size)


# dask.bag.from_sequence's own partitions of a long sequence (len / 100 items each), for a
# sequence mapped while the cluster had no worker to plan for (then unmeasured).
DASK_BAG_PARTITIONS = 100


# Partitions per worker thread for a sequence nothing was measured on (nothing runs before
# compute(): no sample): multiprocessing.Pool.map's balance.
DEFAULT_PARTITIONS_PER_WORKER = POOL_MAP_TASKS_PER_WORKER


def _plan_sequence(n_items: int, target) -> Plan:
    """Partitions of a sequence of ``n_items``, with nothing run: the model's plan for that
    many items when it has one (a serial plan: one partition), else
    :data:`DEFAULT_PARTITIONS_PER_WORKER` per worker thread. Its run, measured by its
    partitions, teaches the model the next one."""
    learned = target.learned_plan(n_items, explore=False)
    if learned is not None:
        chunksize = n_items if learned.engine == "serial" else learned.chunksize
        return learned.replace(chunksize=chunksize, n_tasks=-(-n_items // chunksize))
    chunksize = max(1, -(-n_items // (DEFAULT_PARTITIONS_PER_WORKER * target.cores)))
    engine = "dask" if target.client is not None else "processes"  # dask.bag's own default
    return Plan(engine=engine, n_workers=target.cores, chunksize=chunksize, n_tasks=-(-n_items // chunksize),
                source="default", confidence=0.0, predicted_seconds=0.0,
                reasons=(f"nothing measured for this workload here and nothing runs before compute(): "
                         f"{DEFAULT_PARTITIONS_PER_WORKER} partitions per worker thread",))


def _plan_bag(func, bag: db.Bag, target):
    """A Bag keeps its partitions unless measured runs of ``func`` say merging is faster.

    Nothing is computed: the Bag's size is unknown until its partitions run (they measure
    and count themselves, and the run is recorded from their reports). The evidence is the
    model's plan for the size of this workload's newest run here: partitions are merged
    when it puts at least twice as many items in a task, never into fewer partitions than
    worker threads unless that plan runs one task.
    """
    n_parts = bag.npartitions
    engine = "dask" if target.client is not None else "processes"  # dask.bag's own default
    plan = Plan(engine=engine, n_workers=target.cores, chunksize=1, n_tasks=n_parts, source="default",
                confidence=0.0, predicted_seconds=0.0,
                reasons=(f"a Bag of {n_parts} partitions of unknown size: kept as they are, measured as they run",))
    newest = max(target.learner.observations(target.fingerprint.id, target.workload), key=lambda o: o.time,
                 default=None)
    learned = target.learned_plan(newest.n_items, explore=False) if newest is not None else None
    if learned is None:
        return bag, plan, None
    per_part = newest.n_items / n_parts
    merge = int(learned.chunksize // max(per_part, 1.0))
    floor = 1 if learned.n_workers == 1 else min(n_parts, target.cores)
    npartitions = max(floor, -(-n_parts // merge)) if merge >= 2 else n_parts
    reason = (f"model: {learned.engine} {learned.n_workers}x{learned.chunksize} for {newest.n_items} items "
              f"(its newest run here), ~{per_part:.3g} items per partition -> {npartitions} partition(s)")
    plan = plan.replace(n_workers=learned.n_workers, n_tasks=npartitions, source="model",
                        confidence=learned.confidence, reasons=(reason,))
    if npartitions < n_parts:
        bag = bag.repartition(npartitions=npartitions)
    return bag, plan, None


def _measured(func, bag: db.Bag, plan: Plan, planned, target, learn: bool, *, client=None,
              partition_size: int | None = None) -> db.Bag:
    """``bag.map(func)`` whose partitions report their measured compute time; computed on
    ``client`` (see :class:`_WholeBag`). ``partition_size``: the items in each partition but
    the last (of a sequence: a failing item is named by its place in it)."""
    run_id = new_run_id()
    info = {"run_id": "", "n_parts": bag.npartitions, "creator": os.getpid(), "pending": None,
            "template": None, "sized_by_parts": planned is None, "partition_size": partition_size}
    if learn:
        template = target.record_fields(func, planned or Planned(plan), wall_seconds=1.0, compute_seconds=0.0)
        info.update(run_id=run_id, template=template,
                    pending=str(target.learner.store.path / "pending"),
                    training_dir=str(target.learner.store.path))
        COLLECTOR.expect(run_id, n_parts=bag.npartitions,
                         on_complete=lambda run, reports: record_run(info, reports))
        if target.client is not None:
            _subscribe(target.client)
    # dask.bag passes no partition_info: each partition gets its number from a bag of them.
    numbers = db.from_sequence(range(bag.npartitions), npartitions=bag.npartitions)
    # Keys "amorsize-<function>-<hash>": Dask's per-prefix statistics see the function (as for map).
    mapped = bag.map_partitions(_run_partition, numbers, func, info, token=f"{KEY_PREFIX}{key_name(func)}")
    whole = _WholeBag(mapped.dask, mapped.name, mapped.npartitions)
    whole.client = client
    return whole


class _WholeBag(db.Bag):
    """A Bag whose computed list travels from a Dask worker to the client as one pickle
    (see :class:`~amorsize_dask.engines.transport.WholeList`); it arrives as the plain list
    ``dask.bag``'s own ``compute()`` returns.

    ``client``: the one ``map`` was given, which its ``compute()`` and ``persist()`` use
    unless told a scheduler (dask itself would send it to the default client, or off the
    cluster when there is none). A Bag derived from it computes where dask sends it."""

    client = None

    def __dask_postcompute__(self):
        return _finalize_whole, ()

    def compute(self, **kwargs):
        return super().compute(**self._on_client(kwargs))

    def persist(self, **kwargs):
        return super().persist(**self._on_client(kwargs))

    def _on_client(self, kwargs: dict) -> dict:
        if self.client is not None and "scheduler" not in kwargs and "get" not in kwargs:
            kwargs["scheduler"] = self.client
        return kwargs


def _finalize_whole(results):
    return _whole(db.core.finalize(results))


def _whole(out):
    """``out`` as a :class:`WholeList` when it leaves a Dask worker (elsewhere as it is)."""
    return WholeList(out) if type(out) is list and current_worker() is not None else out


def _run_partition(part, number, func, info):
    items = list(part)
    (index,) = number
    start = time.time()
    first = index * info["partition_size"] if info.get("partition_size") else 0
    out = run_chunk(func, items, first, portable_only=False)
    if out.failure is not None:
        failure = out.failure
        if not info.get("partition_size"):  # a Bag of unknown partition sizes: its place in its partition
            failure = replace(failure, index=f"{failure.index} of partition {index}")
        _raise_from_task(failure, func, remote=os.getpid() != info["creator"])
    if info["run_id"]:
        msg = {"run_id": info["run_id"], "part": index, "n_items": len(items),
               "compute_seconds": out.compute_seconds, "start": start, "stop": time.time()}
        report(msg, info["pending"], info["creator"])
        if os.getpid() != info["creator"] and info["pending"] and current_worker() is None:
            reports = gather_fragments(info["pending"], info["run_id"], info["n_parts"])
            if reports is not None:
                record_run(info, reports)
    return _whole(out.results)  # to the task that gathers the partitions: one pickle, not one per item


def _raise_from_task(failure, func, *, remote: bool) -> None:
    """Raise the function's exception from a partition's task, for Dask to carry back
    as itself: an exception class whose ``__init__`` takes other arguments than its
    ``args`` travels by state; a StopIteration (which would end the task's coroutine) as
    a RuntimeError naming the item."""
    if remote:
        failure = portable_failure(failure)
        if isinstance(failure.exception, ByState):
            pickle_by_state(type(failure.exception.exc))
    raise_failure_in_generator(failure, func, remote=remote)


def record_run(info: dict, reports: list[dict]) -> bool:
    """Write the record of a bag run from its partitions' reports (wherever they meet)."""
    fields = dict(info["template"])
    features = dict(fields["features"])
    n_run = sum(r["n_items"] for r in reports)
    if n_run == 0:
        return False  # nothing ran: nothing learned
    compute = sum(r["compute_seconds"] for r in reports)
    wall = max(r["stop"] for r in reports) - min(r["start"] for r in reports)
    features["n_items"] = n_run + int(features.get("n_sampled", 0))
    features["item_seconds"] = compute / max(n_run, 1)
    if info.get("sized_by_parts"):  # a Bag of unknown size: its tasks were its partitions
        fields["chunksize"] = max(1, -(-n_run // len(reports)))
    fields.update(features=features, compute_seconds=compute,
                  wall_seconds=max(wall, 1e-9) + float(features.get("planning_seconds", 0.0)))
    return get_learner(info["training_dir"]).record(**fields)


def _subscribe(client) -> None:
    """Have the client collect the partition reports its workers send (once per client)."""
    if getattr(client, "_amorsize_subscribed", False):
        return
    client.subscribe_topic(TOPIC, _on_event)
    client._amorsize_subscribed = True


def _on_event(event) -> None:
    _, msg = event
    if isinstance(msg, dict):
        COLLECTOR.add(msg)

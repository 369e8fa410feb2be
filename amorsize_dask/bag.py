"""``amorsize_dask.bag.map``: a lazy ``dask.bag.Bag`` partitioned by the plan.

>>> from amorsize_dask import bag
>>> b = bag.map(abs, [-1, -2, -3, -4])
>>> b.compute(scheduler="sync")
[1, 2, 3, 4]
"""

from __future__ import annotations

import os
import time

import dask.bag as db

from . import validation
from .target.context import current_worker
from .engines.base import raise_failure
from .engines.chunks import run_chunk
from .engines.dask import new_run_id
from .learning.learner import get_learner
from .mapping import _plan, _target, as_sequence
from .planning.plan import Plan
from .planning.planner import Planned, plan_items
from .cluster.reporting import COLLECTOR, TOPIC, gather_fragments, report

# Items of a Bag input timed to plan it when the model has no answer. Their results
# cannot be spliced into a lazy upstream: for a Bag input these are computed twice.
BAG_SAMPLE_ITEMS = 20


def map(func, seq_or_bag, *, client=None, training_dir=None, learn: bool = True) -> db.Bag:
    """A Bag of ``func`` applied to every item, partitioned as planned; lazy.

    A sequence is planned like :func:`amorsize_dask.map`: the sampled items' results form
    the first partition, nothing is computed twice. A Bag is repartitioned by the model's
    plan, or by one made from timing ``func`` on a few of its first items. When the Bag is
    computed, each partition measures itself where it runs and, once all have reported,
    the run is recorded like any other.
    """
    validation.check_func(func)
    validation.check_client(client)
    validation.check_training_dir(training_dir)
    validation.check_bool("learn", learn)
    target = _target(func, client, "auto", training_dir)
    if isinstance(seq_or_bag, db.Bag):
        bag, plan, planned = _plan_bag(func, seq_or_bag, target)
        return _measured(func, bag, plan, planned, target, learn)
    items = as_sequence(validation.check_iterable(seq_or_bag))
    planned = _plan(func, items, target, engine="auto", n_workers=None, chunksize=None)
    plan = planned.plan
    parts = []
    if planned.sample is not None and planned.sample.results:
        parts.append(db.from_sequence(planned.sample.results, npartitions=1))
    rest = items[plan.n_sampled :]
    if len(rest):
        chunksize = plan.chunksize if plan.engine != "serial" else len(rest)
        source = db.from_sequence(rest, partition_size=chunksize)
        parts.append(_measured(func, source, plan, planned, target, learn))
    if not parts:
        return db.from_sequence([], npartitions=1)
    return parts[0] if len(parts) == 1 else db.concat(parts)


def _plan_bag(func, bag: db.Bag, target):
    head = list(bag.take(BAG_SAMPLE_ITEMS, npartitions=1, compute=True, warn=False))
    n_estimate = max(len(head), 1) * bag.npartitions
    plan, planned = (target.learned_plan(n_estimate), None) if head else (None, None)
    if plan is None:
        planned = plan_items(func, head, target, engine="auto")
        plan = _scaled(planned.plan, n_estimate)
    npartitions = plan.n_tasks if plan.engine != "serial" else 1
    if npartitions != bag.npartitions:
        bag = bag.repartition(npartitions=max(1, npartitions))
    return bag, plan, planned


def _scaled(plan: Plan, n_items: int) -> Plan:
    """A plan made on a Bag's first items, carried to the Bag's estimated size."""
    if plan.engine == "serial":
        return plan.replace(n_items=n_items, n_sampled=0, n_tasks=1, chunksize=max(1, n_items))
    return plan.replace(n_items=n_items, n_sampled=0, n_tasks=max(1, -(-n_items // plan.chunksize)))


def _measured(func, bag: db.Bag, plan: Plan, planned, target, learn: bool) -> db.Bag:
    """``bag.map(func)`` whose partitions report their measured compute time."""
    run_id = new_run_id()
    info = {"run_id": "", "n_parts": bag.npartitions, "creator": os.getpid(), "pending": None,
            "template": None}
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
    return bag.map_partitions(_run_partition, numbers, func, info, token=f"amorsize-{run_id}")


def _run_partition(part, number, func, info):
    items = list(part)
    (index,) = number
    start = time.time()
    out = run_chunk(func, items, 0)
    raise_failure(out.failure, func, remote=os.getpid() != info["creator"])
    if info["run_id"]:
        msg = {"run_id": info["run_id"], "part": index, "n_items": len(items),
               "compute_seconds": out.compute_seconds, "start": start, "stop": time.time()}
        report(msg, info["pending"], info["creator"])
        if os.getpid() != info["creator"] and info["pending"] and current_worker() is None:
            reports = gather_fragments(info["pending"], info["run_id"], info["n_parts"])
            if reports is not None:
                record_run(info, reports)
    return out.results


def record_run(info: dict, reports: list[dict]) -> bool:
    """Write the record of a bag run from its partitions' reports (wherever they meet)."""
    fields = dict(info["template"])
    features = dict(fields["features"])
    n_run = sum(r["n_items"] for r in reports)
    compute = sum(r["compute_seconds"] for r in reports)
    wall = max(r["stop"] for r in reports) - min(r["start"] for r in reports)
    features["n_items"] = n_run + int(features.get("n_sampled", 0))
    features["item_seconds"] = compute / max(n_run, 1)
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

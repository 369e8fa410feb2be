"""Room to grow: a run on a cluster that adaptive scaling may enlarge leaves tasks for the
workers it adds.

``cluster.adapt(minimum=1, maximum=8)`` starts workers while the queued work would take
longer than its ``target_duration`` on the workers present. A plan sized to the workers
present (one task on a one-worker cluster) cannot be shared with workers that join, and
dask's ``Adaptive`` does not even ask for them (it never wants more workers than there
are tasks). So a dask plan on such a cluster is made for the worker threads adaptive
scaling would want for the run's work (its maximum at most), with
``planner.min-tasks-per-worker`` tasks for each.

>>> room = Room(maximum_threads=8, target_duration=5.0)
>>> room.threads_for(work_seconds=12.0, present=1)
3
>>> plan = Plan(engine="dask", n_workers=1, chunksize=300, n_tasks=1, source="sample", confidence=1.0,
...             predicted_seconds=6.0, n_items=306, n_sampled=6, predicted_serial_seconds=6.1)
>>> grown = leave_room(plan, room, present=1)
>>> grown.n_workers, grown.chunksize, grown.n_tasks
(2, 38, 8)
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from .. import config
from ..planning.plan import Plan, format_seconds

__all__ = ["Room", "room_to_grow", "leave_room"]


@dataclass(frozen=True)
class Room:
    """How far the cluster's adaptive scaling may take it: its maximum worker threads
    (``inf`` when unbounded) and the time it wants the queued work done in."""

    maximum_threads: float
    target_duration: float

    def threads_for(self, work_seconds: float, present: int) -> int:
        """The worker threads adaptive scaling would want for ``work_seconds`` of work."""
        wanted = math.ceil(work_seconds / self.target_duration) if self.target_duration > 0 else present
        return int(max(present, min(self.maximum_threads, wanted)))


def room_to_grow(client, present: int) -> Room | None:
    """The room the adaptive scaling of ``client``'s cluster leaves above ``present``
    worker threads, or None: no cluster object in this process (a ``Client`` made from an
    address), no adaptive scaling, stopped, or at its maximum already."""
    cluster = getattr(client, "cluster", None)
    adaptive = getattr(cluster, "_adaptive", None)
    if adaptive is None or getattr(adaptive, "state", None) not in ("starting", "running"):
        return None
    try:
        maximum = float(adaptive.maximum)
        target_duration = float(adaptive.target_duration)
    except (AttributeError, TypeError, ValueError):
        return None
    maximum_threads = maximum * _threads_per_worker(cluster, present)
    if maximum_threads <= present:
        return None
    return Room(maximum_threads=maximum_threads, target_duration=target_duration)


def _threads_per_worker(cluster, present: int) -> int:
    """Threads of each worker the cluster adds: its worker spec (``LocalCluster``'s,
    jobqueue's), else those of the workers present."""
    try:
        return max(1, int(cluster._threads_per_worker()))
    except Exception:
        workers = (getattr(cluster, "scheduler_info", None) or {}).get("workers") or {}
        return max(1, round(present / len(workers))) if workers else 1


def leave_room(plan: Plan, room: Room, present: int) -> Plan:
    """``plan`` made for the worker threads ``room`` would bring for its work, when more
    than ``present``: ``planner.min-tasks-per-worker`` tasks for each, and no worker
    restriction (its ``n_workers`` covers every worker then)."""
    work = plan.predicted_serial_seconds or plan.predicted_seconds * plan.n_workers
    threads = room.threads_for(work, present)
    n_rest = plan.n_items - plan.n_sampled - plan.n_speculated
    if plan.engine != "dask" or threads <= present or n_rest <= 0:
        return plan
    size = max(1, min(plan.chunksize, math.ceil(n_rest / (config.get("planner.min-tasks-per-worker") * threads))))
    tasks = math.ceil(n_rest / size)
    why = (f"adaptive scaling may add workers ({format_seconds(work)} of work, up to "
           f"{room.maximum_threads:g} threads): {tasks} tasks of {size} items for {threads} worker threads, "
           f"{present} present")
    return plan.replace(n_workers=threads, chunksize=size, n_tasks=tasks, reasons=plan.reasons + (why,))

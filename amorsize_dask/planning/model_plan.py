"""A confident model prediction as the :class:`~.plan.Plan` a call runs, and what it says.

The prediction is the k-NN model's (:mod:`amorsize_dask.learning.model`); the plan keeps
its configuration but for what holds here and now: a chunk no larger than the items,
``amorsize.planner.max-threads`` on this machine, and serial for a parallel plan that
would have one worker to run on.

>>> from amorsize_dask.learning.model import Prediction
>>> pred = Prediction(engine="processes", n_workers=2, chunksize=10**12, seconds=1.0, confidence=0.9, n_observations=3)
>>> plan = model_plan(pred, 300, shape="local", local=True, one_worker=False)
>>> plan.engine, plan.n_workers, plan.chunksize, plan.n_tasks
('processes', 2, 300, 1)
"""

from __future__ import annotations

import math

from .. import config
from .plan import Plan, format_seconds

__all__ = ["model_plan"]


def model_plan(pred, n_items: int, *, shape: str, local: bool, one_worker: bool) -> Plan:
    """The plan of ``pred`` for ``n_items``. ``shape``: the fingerprint's kind ("local",
    "cluster"); ``local``: on this machine (max-threads applies); ``one_worker``: a
    parallel plan that has one worker to run on here (then serial: it only adds the
    hand-off; runs borrowed from a 2-core machine kept a script under ``taskset -c 1`` on
    processes, 0.19-0.32 s against 0.16-0.27 s serially)."""
    best = getattr(pred, "best_config", None) or (pred.engine, pred.n_workers, pred.chunksize)
    reasons = [
        f"model: {pred.n_observations} measured runs of this workload on this {shape} shape; "
        f"fastest predicted {best[0]} {best[1]}x{best[2]}: "
        f"{format_seconds(pred.best_seconds or pred.seconds)} (confidence {pred.confidence:.2f})"
    ]
    if pred.explored:
        reasons.append(
            f"exploring a neighbouring configuration {pred.engine} {pred.n_workers}x{pred.chunksize} "
            "(never measured here) so repeated runs converge on the best"
        )
    if one_worker:
        reasons.append(f"{pred.engine} with one worker here only adds the hand-off to serial: serial")
        return Plan(engine="serial", n_workers=1, chunksize=n_items, n_tasks=1, source="model",
                    confidence=pred.confidence, predicted_seconds=pred.seconds, n_items=n_items,
                    reasons=tuple(reasons))
    n_workers, chunksize = pred.n_workers, max(1, min(int(pred.chunksize), n_items))
    if pred.engine == "threads" and local:
        n_workers = min(n_workers, max(1, int(config.get("planner.max-threads"))))
        if n_workers < pred.n_workers:
            reasons.append(f"{n_workers} threads: amorsize.planner.max-threads")
    return Plan(engine=pred.engine, n_workers=n_workers, chunksize=chunksize, n_tasks=math.ceil(n_items / chunksize),
                source="model", confidence=pred.confidence, predicted_seconds=pred.seconds, n_items=n_items,
                explored=pred.explored, reasons=tuple(reasons))

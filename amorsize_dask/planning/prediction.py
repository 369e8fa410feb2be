"""The model's prediction for one workload on one fingerprint, its explorations vetted by
the cost model: what a client's :class:`~amorsize_dask.target.target.Target` and the
scheduler plugin both ask, from the learner they hold.

>>> import tempfile
>>> from amorsize_dask.learning.learner import Learner
>>> from amorsize_dask.target.fingerprint import local_fingerprint
>>> with tempfile.TemporaryDirectory() as d:
...     predict_here(Learner(d), local_fingerprint("forkserver"), "0" * 16, 100, cores=2) is None
True
"""

from __future__ import annotations

from typing import Callable

from ..learning.model import CostsNow
from . import cost_model, overheads
from .overheads import Overheads

__all__ = ["predict_here", "estimator"]


def predict_here(learner, fingerprint, workload: str, n_items: int, *, cores: int, explore: bool = True,
                 engines: tuple[str, ...] = ("serial", "threads", "processes"), pool=None):
    """The learner's prediction (or None) for ``n_items`` of ``workload`` on ``fingerprint``.

    ``pool``: the process pool a plan here would find (a local
    :class:`~amorsize_dask.target.target.Target`; None on a cluster): its
    ``cold_overheads()`` (see :func:`estimator`) and ``cold_start_seconds(n_workers)`` (see
    :class:`~amorsize_dask.learning.model.CostsNow`)."""
    cold_pool = None if pool is None else pool.cold_overheads
    now = CostsNow(estimate=estimator(learner, fingerprint.id, workload, n_items, cores, cold_pool=cold_pool),
                   cold_start=None if pool is None else pool.cold_start_seconds)
    return learner.predict(fingerprint.id, workload, n_items, cores=cores, fields=fingerprint.as_dict(),
                           explore=explore, engines=engines, now=now)


def estimator(learner, fingerprint_id: str, workload: str, n_items: int, cores: int, *,
              cold_pool: Callable[[], Overheads | None] | None = None):
    """``config -> predicted seconds`` from the workload's measured features and the
    target's measured overheads, or None when either is unknown.

    ``cold_pool()``: the overheads to use when no process pool is running (a process plan
    then includes its start: what trying it would cost now); None: those cached for the
    fingerprint, the pool running (or a cluster's). Each run of a script is a fresh
    process, and a script's second run of a 4 ms job explored processes: a ~10 ms start.
    Asked only for a workload with features (it walks the function's objects for what a
    forked worker copies: 0.3 ms for big-global's table, on every first call before).
    """
    features = learner.features(fingerprint_id, workload)
    prof = cost_model.profile_from_features(features) if features else None
    if prof is None:
        return None
    cold = cold_pool() if cold_pool is not None else None
    found = cold or overheads.cached(fingerprint_id)
    if found is None:
        return None
    warm = cold is None
    return lambda cfg: cost_model.predict_one(prof, n_items, found, cfg, cores=cores, pool_warm=warm)

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

from . import cost_model, overheads
from .overheads import Overheads

__all__ = ["predict_here", "estimator"]


def predict_here(learner, fingerprint, workload: str, n_items: int, *, cores: int, explore: bool = True,
                 engines: tuple[str, ...] = ("serial", "threads", "processes"), cold_pool: Overheads | None = None):
    """The learner's prediction (or None) for ``n_items`` of ``workload`` on ``fingerprint``;
    ``cold_pool``: see :func:`estimator`."""
    return learner.predict(fingerprint.id, workload, n_items, cores=cores, fields=fingerprint.as_dict(),
                           explore=explore, engines=engines,
                           estimate=estimator(learner, fingerprint.id, workload, n_items, cores, cold_pool=cold_pool))


def estimator(learner, fingerprint_id: str, workload: str, n_items: int, cores: int, *,
              cold_pool: Overheads | None = None):
    """``config -> predicted seconds`` from the workload's measured features and the
    target's measured overheads, or None when either is unknown.

    ``cold_pool``: the overheads to use when no process pool is running (a process plan
    then includes its start: what trying it would cost now); None: those cached for the
    fingerprint, the pool running (or a cluster's). Each run of a script is a fresh
    process, and a script's second run of a 4 ms job explored processes: a ~10 ms start.
    """
    features = learner.features(fingerprint_id, workload)
    found = cold_pool or overheads.cached(fingerprint_id)
    prof = cost_model.profile_from_features(features) if features else None
    if prof is None or found is None:
        return None
    warm = cold_pool is None
    return lambda cfg: cost_model.predict_one(prof, n_items, found, cfg, cores=cores, pool_warm=warm)

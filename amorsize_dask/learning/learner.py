"""Learning from measured runs: one :class:`Learner` per training directory.

It keeps the store's records in an in-memory index ((fingerprint, workload) → observations),
refreshed incrementally, answers "what did the fastest run of this workload here look like"
through :mod:`amorsize_dask.learning.model`, and appends one record per run.

A group whose newest model-planned run measured a cost per item its neighbours did not
(:func:`amorsize_dask.learning.model.drifted`) is *drifted*: it gets no prediction, so the
planner samples again and the cost model decides, until a sampled run is recorded.

>>> import tempfile
>>> with tempfile.TemporaryDirectory() as d:
...     learner = get_learner(d)
...     learner.predict("0" * 16, "1" * 16, 100, cores=2) is None
True
"""

from __future__ import annotations

import logging
import os
import threading
from collections import defaultdict

from .. import config
from . import model
from .records import RecordError, make_record
from .store import TrainingStore

logger = logging.getLogger("amorsize_dask")


class Learner:
    """The store of one training directory and the model's index over it."""

    def __init__(self, path=None):
        self.store = TrainingStore(path)
        self._lock = threading.Lock()
        self._groups: dict[tuple[str, str], list[model.Observation]] = defaultdict(list)
        self._fields: dict[str, dict] = {}
        self._features: dict[tuple[str, str], dict] = {}
        self._drifted: set[tuple[str, str]] = set()
        self._n_indexed = 0
        self._pid = os.getpid()

    def refresh(self) -> None:
        """Index records other processes wrote since the last call (cheap when none did)."""
        records = self.store.records()
        with self._lock:
            if len(records) == self._n_indexed:
                return
            self._groups = defaultdict(list)
            self._fields = {}
            self._features = {}
            self._drifted = set()
            for rec in records:
                self._index(rec)
            self._n_indexed = len(records)

    def _index(self, rec: dict) -> None:
        obs = model.Observation.from_record(rec)
        if obs is not None:
            group = (rec["fingerprint"], rec["workload"])
            before = self._groups[group]
            if obs.source == "sample":
                self._drifted.discard(group)   # the cost model decided on fresh figures
            elif obs.source in ("model", "explore") and model.drifted(before, obs):
                self._drifted.add(group)
            before.append(obs)
            self._fields.setdefault(rec["fingerprint"], rec["fingerprint_fields"])
            if "bytes_in" in rec["features"]:  # sampled: the full set of measured features
                self._features[group] = rec["features"]

    def features(self, fingerprint: str, workload: str) -> dict | None:
        """The newest sampled features of this workload here (or None)."""
        return self._features.get((fingerprint, workload))

    def drifted(self, fingerprint: str, workload: str) -> bool:
        """Did this workload's newest model-planned run here measure an unpredicted cost?"""
        self.refresh()
        return (fingerprint, workload) in self._drifted

    def observations(self, fingerprint: str, workload: str) -> list[model.Observation]:
        self.refresh()
        return list(self._groups.get((fingerprint, workload), ()))

    def predict(self, fingerprint: str, workload: str, n_items: int, *, cores: int, fields: dict | None = None,
                explore: bool = True, engines: tuple[str, ...] = ("threads", "processes"),
                estimate=None) -> model.Prediction | None:
        """The model's best configuration for this workload here, or None without evidence.

        With no runs on this fingerprint, runs of the same workload on the most similar
        fingerprint are borrowed, at a confidence scaled by their similarity. A drifted
        workload gets None (the planner samples again).
        """
        from ..target.fingerprint import similarity

        self.refresh()
        kwargs = dict(
            cores=cores,
            k=config.get("model.k"),
            explore=explore,
            explore_probability=config.get("model.explore-probability"),
            explore_max_slowdown=config.get("model.explore-max-slowdown"),
            explore_budget=config.get("model.explore-budget"),
            max_threads=config.get("planner.max-threads"),
            engines=engines,
            estimate=estimate,
        )
        own = self._groups.get((fingerprint, workload))
        if (fingerprint, workload) in self._drifted:
            return None
        if own:
            return model.predict(own, n_items, **kwargs)
        if not fields:
            return None
        borrowed = [
            (similarity(fields, self._fields.get(fp, {})), obs)
            for (fp, wl), obs in self._groups.items()
            if wl == workload and fp != fingerprint
        ]
        if not borrowed:
            return None
        sim, obs = max(borrowed, key=lambda pair: pair[0])
        if sim <= 0:
            return None
        return model.predict(obs, n_items, similarity=sim, **kwargs)

    def record(self, **fields) -> bool:
        """Append one measured run (see :func:`amorsize_dask.learning.records.make_record`).

        Never fails the caller's map: an unwritable directory is one warning (from the
        store), a record that does not validate is logged and dropped.
        """
        try:
            rec = make_record(**fields)
        except RecordError as exc:
            logger.warning("amorsize_dask: run not recorded: %s", exc)
            return False
        written = self.store.append(rec)
        if written:
            with self._lock:
                self._index(rec)
                self._n_indexed += 1
        return written


_LEARNERS: dict[str, Learner] = {}
_LEARNERS_LOCK = threading.Lock()


def get_learner(training_dir=None) -> Learner:
    """The learner of ``training_dir`` (default: ``amorsize.training-dir``), one per process."""
    if training_dir is None:
        training_dir = config.default_training_dir()
    key = os.path.abspath(os.fspath(training_dir))
    with _LEARNERS_LOCK:
        learner = _LEARNERS.get(key)
        if learner is None or learner._pid != os.getpid():
            learner = _LEARNERS[key] = Learner(key)
        return learner

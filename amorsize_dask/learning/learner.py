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

import dataclasses
import logging
import os
import threading

import numpy as np

from .. import config
from ..settings import Settings, current
from . import model, snapshot
from .index import Group, SavedGroup, kept_features, newer_features
from .records import RecordError, make_record
from .store import TrainingStore

__all__ = ["MIN_KEPT", "Learner", "get_learner"]

logger = logging.getLogger("amorsize_dask")

# The index keeps at least this many newest runs per workload in memory (twice
# amorsize.store.keep-per-workload, the most pruning keeps on disk, when larger).
MIN_KEPT = 32


class Learner:
    """The store of one training directory and the model's index over it.

    The index holds numpy rows per (fingerprint, workload) (:class:`~amorsize_dask.learning.
    index.Group`, the newest ``2 × amorsize.store.keep-per-workload`` of each); the store
    keeps no records (``compact``), only the ids it handed out. A refresh reads only what
    other processes appended since the previous one and adds it to the index.
    """

    def __init__(self, path=None):
        self.store = TrainingStore(path, compact=True)
        self._lock = threading.Lock()
        self._groups: dict[tuple[str, str], Group] = {}
        self._fields: dict[str, dict] = {}
        self._pid = os.getpid()
        self._resumed = False  # the host's snapshot of the index was tried
        self._since_snapshot = 0

    def refresh(self, settings: Settings | None = None) -> None:
        """Index records other processes wrote since the last call (cheap when none did).

        The first refresh resumes from this host's snapshot of the index when there is one
        (:mod:`amorsize_dask.learning.snapshot`); a refresh that indexed many records
        (parsed lines, sealed rows) writes a new one. Sealed files are indexed from their
        columns, in bulk.
        """
        settings = current(settings)
        self._resume(settings)
        columns, records = self.store.read_new_columns(settings)
        if not records and not columns:
            return
        records.sort(key=lambda r: r["time"])
        capacity = self.group_capacity(settings)
        with self._lock:
            n_sealed = self._index_columns(columns, capacity) if columns else 0
            touched = {self._index(rec, capacity) for rec in records}
            for group in touched - {None}:
                group.flush()  # rows in numpy now: no tuple per record stays behind
            # What a snapshot saves: lines parsed, and sealed rows too (their headers are
            # decoded and checked per workload: a loop's 20,000 calls of 50 items, each a
            # workload of its own, cost 0.19-0.27 s of each new process's first call;
            # ~10 ms from a snapshot).
            self._since_snapshot += len(records) + n_sealed
            if snapshot.due(self._since_snapshot, self.store.n_seen):
                self._since_snapshot = 0
                snapshot.save(self)

    def _index_columns(self, columns: list, capacity: int) -> int:
        """Index the new rows of sealed files, all at once: each group gets its newest
        ``capacity`` rows of all files in one :meth:`~amorsize_dask.learning.index.Group.extend`.
        Returns how many rows the files held (those with nothing to learn from too: their
        workloads' features are decoded all the same)."""
        codes: dict[tuple, int] = {}
        group_of, rows, features = [], [], {}
        for cols in columns:
            local = np.array([codes.setdefault((fp, wl), len(codes)) for fp, wl, _, _ in cols.groups], np.int64)
            keep = cols.keep & (cols.rows["n_items"] > 0)
            group_of.append(np.repeat(local, np.diff(cols.bounds))[keep])
            rows.append(cols.rows[keep])
            for fp, wl, feats, when in cols.groups:
                features[(fp, wl)] = newer_features(features.get((fp, wl), (None, None)), (feats, when))
            for fp, fields in cols.fields.items():
                self._fields.setdefault(fp, fields)
        n_rows = sum(len(cols.rows) for cols in columns)
        group_of, rows = np.concatenate(group_of), np.concatenate(rows)
        order = np.lexsort((rows["time"], group_of))
        bounds = np.searchsorted(group_of[order], np.arange(len(codes) + 1)).tolist()
        for key, start, stop in zip(codes, bounds, bounds[1:]):
            if stop > start:
                group = self._group(key)
                if group is None:
                    group = self._groups[key] = Group(capacity)
                group.extend(rows[order[max(start, stop - capacity): stop]])
            group = self._group(key)
            if key in features and group is not None:
                group.features, group.features_time = newer_features((group.features, group.features_time),
                                                                     features[key])
        return n_rows

    def _resume(self, settings: Settings | None = None) -> None:
        """Once: start from this host's snapshot of the index, if it has one."""
        if not self._resumed:
            with self._lock:
                if not self._resumed:
                    snapshot.load(self, self.group_capacity(settings))
                    self._resumed = True

    @staticmethod
    def group_capacity(settings: Settings | None = None) -> int:
        """Runs kept in memory per workload: twice what pruning keeps, at least :data:`MIN_KEPT`."""
        return 2 * max(current(settings).keep_per_workload, MIN_KEPT)

    def index_state(self) -> tuple[list, dict]:
        """The index: [((fingerprint, workload), group)], {fingerprint: fields} (for a snapshot)."""
        return list(self._groups.items()), dict(self._fields)

    def restore_index(self, groups: dict, fields: dict) -> None:
        """Resume from a snapshot's groups (:class:`~amorsize_dask.learning.index.SavedGroup`
        until asked for) and fingerprints' fields."""
        self._groups, self._fields = groups, fields

    def _group(self, key: tuple[str, str]) -> Group | None:
        """The group of ``key`` (built now if the snapshot saved it), or None; under the lock."""
        group = self._groups.get(key)
        if type(group) is SavedGroup:
            group = self._groups[key] = group.build()
        return group

    def _index(self, rec: dict, capacity: int) -> Group | None:
        fields = model.fields_of_record(rec)
        if fields is None:
            return None
        key = (rec["fingerprint"], rec["workload"])
        group = self._group(key)
        if group is None:
            group = self._groups[key] = Group(capacity)
        group.add(fields)
        self._fields.setdefault(rec["fingerprint"], rec["fingerprint_fields"])
        if "bytes_in" in rec["features"]:  # sampled: the full set of measured features
            group.features, group.features_time = kept_features(rec["features"], group.features or {}), rec["time"]
        group.features = kept_features(group.features, rec["features"])
        return group

    def nbytes(self) -> int:
        """Bytes of the index's rows (what the model keeps per record; not the dicts)."""
        with self._lock:
            return sum(g.nbytes() for g in self._groups.values())

    def features(self, fingerprint: str, workload: str) -> dict | None:
        """The newest sampled features of this workload here (or None), as of this process's
        latest read of the directory, which comes first if there was none: a script's call
        asks before the model refreshes, and a fresh process had read nothing (its cost
        model missing, the model never left its first plan: a script mapping bench --fresh
        payload's function, its first run serial, ran serially 44-46 ms run after run; 27-29
        ms on the two threads its second run now tries)."""
        if not self._resumed:
            self.refresh()
        with self._lock:
            group = self._group((fingerprint, workload))
        return None if group is None else group.features

    def drifted(self, fingerprint: str, workload: str) -> bool:
        """Did this workload's newest model-planned run here measure an unpredicted cost?"""
        self.refresh()
        with self._lock:
            group = self._group((fingerprint, workload))
        return group is not None and group.drifted

    def observations(self, fingerprint: str, workload: str) -> list[model.Observation]:
        """The measured runs of ``workload`` on ``fingerprint`` (``bag.map`` sizes a Bag of
        unknown length by the newest one)."""
        self.refresh()
        with self._lock:
            group = self._group((fingerprint, workload))
            return [] if group is None else list(group.observations(workload))

    def predict(self, fingerprint: str, workload: str, n_items: int, *, cores: int, fields: dict | None = None,
                explore: bool = True, engines: tuple[str, ...] = ("threads", "processes"),
                now: model.CostsNow | None = None) -> model.Prediction | None:
        """The model's best configuration for this workload here, or None without evidence.

        With no runs on this fingerprint, runs of the same workload on the most similar
        fingerprint are borrowed, at a confidence scaled by their similarity. A drifted
        workload gets None (the planner samples again).
        """
        from ..target.fingerprint import similarity

        settings = Settings.from_config()
        self.refresh(settings)
        kwargs = dict(cores=cores, settings=settings, explore=explore, engines=engines,
                      now=now)
        with self._lock:  # another thread may be adding runs to these groups
            own = self._group((fingerprint, workload))
            if own is not None and own.drifted:
                return None
            if own:
                observations = own.observations(workload)
            elif not fields:
                return None
            else:
                others = [key for key in self._groups if key[1] == workload and key[0] != fingerprint]
                borrowed = [
                    (similarity(fields, self._fields.get(fp, {})), self._group((fp, wl)).observations(workload))
                    for fp, wl in others if len(self._groups[(fp, wl)])
                ]
        if own:
            return model.predict(observations, n_items, **kwargs)
        if not borrowed:
            return None
        sim, obs = max(borrowed, key=lambda pair: pair[0])
        if sim <= 0:
            return None
        pred = model.predict(obs, n_items, **kwargs)  # borrowed: as sure as the shapes are alike
        return None if pred is None else dataclasses.replace(pred, confidence=round(pred.confidence * sim, 3))

    def record(self, settings: Settings | None = None, **fields) -> bool:
        """Append one measured run (see :func:`amorsize_dask.learning.records.make_record`).

        Never fails the caller's map: an unwritable directory is one warning (from the
        store), a record that does not validate is logged and dropped.
        """
        settings = current(settings)
        try:
            rec = make_record(**fields)
        except RecordError as exc:
            logger.warning("amorsize_dask: run not recorded: %s", exc)
            return False
        self._resume(settings)  # before indexing: a snapshot loaded later would replace the index
        with self._lock:
            written = self.store.append(rec, settings)
            if written:
                self._index(rec, self.group_capacity(settings))
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

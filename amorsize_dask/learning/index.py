"""The learner's in-memory index of one (fingerprint, workload): numpy rows, not dicts.

A :class:`Group` holds what the model needs of each observed run in one packed numpy row
(~70 bytes), keeps at most ``capacity`` of the newest, and tracks whether the workload has
*drifted* (its newest model-planned run measured a cost per item its predecessors did
not) from the newest few item seconds per engine and worker count, so that adding a run
costs O(1).

>>> g = Group(capacity=64)
>>> g.add(("w", 400, 1e-6, "serial", 1, 400, 4e-4, 1.0, "sample", None, None, None))
>>> g.add(("w", 400, 3e-3, "serial", 1, 400, 1.2, 2.0, "model", None, None, None))
>>> len(g), g.drifted, g.observations()[1].item_seconds
(2, True, 0.003)
"""

from __future__ import annotations

import math

import numpy as np

from . import model

__all__ = ["ENGINES", "SOURCES", "ROW", "row_of", "Group", "SavedGroup", "THREAD_SAFE", "kept_features", "newer_features"]

ENGINES = ("serial", "threads", "processes", "dask")
SOURCES = ("sample", "model", "explore", "default")  # codes: append only
ROW = np.dtype([
    ("n_items", "i8"), ("item_seconds", "f8"), ("engine", "i1"), ("n_workers", "i4"),
    ("chunksize", "i8"), ("run_seconds", "f8"), ("time", "f8"), ("source", "i1"),
    ("bytes_per_item", "f8"), ("cpu_ratio", "f8"), ("predicted_seconds", "f8"),
])
# The feature a record sets to 0 once its workload failed on threads only (what
# planning.thread_safety marks): kept for the group whatever records come after. Kept
# from sampled records only, a model-planned run's failure was forgotten: every later
# process planned threads again, warned again, and ran ~55 of 400 items twice.
THREAD_SAFE = "thread_safe"


def kept_features(features: dict | None, record_features: dict) -> dict | None:
    """A group's ``features`` after a record with ``record_features``: as they were, but
    for the thread-safety mark, which a record of any kind sets and none clears.

    >>> kept_features({"bytes_in": 8.0}, {"n_items": 400, "thread_safe": 0})
    {'bytes_in': 8.0, 'thread_safe': 0}
    >>> kept_features(None, {"n_items": 400})
    """
    if record_features.get(THREAD_SAFE) == 0 and (features or {}).get(THREAD_SAFE) != 0:
        return {**(features or {}), THREAD_SAFE: 0}
    return features


def newer_features(kept: tuple, new: tuple) -> tuple:
    """A group's ``(features, time)`` after another ``(features, time)`` of it (a sealed
    file's, or the group's so far): the newer sampled features, with the thread-safety
    mark of both. A time of None (features that are marks alone) is older than any.

    >>> newer_features(({"bytes_in": 8.0}, 5.0), ({"thread_safe": 0}, None))
    ({'bytes_in': 8.0, 'thread_safe': 0}, 5.0)
    >>> newer_features(({"bytes_in": 8.0, "thread_safe": 0}, 5.0), ({"bytes_in": 9.0}, 7.0))
    ({'bytes_in': 9.0, 'thread_safe': 0}, 7.0)
    """
    (kept_features_, kept_time), (new_features, new_time) = kept, new
    if new_features is None:
        return kept
    if kept_features_ is None or _time(new_time) >= _time(kept_time):
        return kept_features(new_features, kept_features_ or {}), new_time
    return kept_features(kept_features_, new_features), kept_time


def _time(when) -> float:
    return -math.inf if when is None else when


# Rows added one by one are kept as tuples until this many, then stored in bulk (a numpy
# row assignment costs ~2 us; a bulk conversion a fraction of that per row).
_FLUSH_ROWS = 256
_ENGINE_CODE = {name: i for i, name in enumerate(ENGINES)}
_SOURCE_CODE = {name: i for i, name in enumerate(SOURCES)}


def _nan(value) -> float:
    return math.nan if value is None else float(value)


def _none(value: float) -> float | None:
    return None if value != value else float(value)


def row_of(fields: tuple | None) -> tuple:
    """The :data:`ROW` values of :func:`~amorsize_dask.learning.model.fields_of_record`'s
    ``fields`` (None, nothing to learn from: a row of ``n_items`` 0, which no group keeps).

    >>> row_of(("w", 400, 1e-6, "threads", 2, 50, 4e-4, 1.0, "sample", None, 0.5, None))[:4]
    (400, 1e-06, 1, 2)
    """
    if fields is None:
        return (0, 0.0, 0, 1, 1, 0.0, 0.0, 0, math.nan, math.nan, math.nan)
    _, n_items, item_seconds, engine, workers, chunksize, run_seconds, time, source, nbytes, cpu, predicted = fields
    return (n_items, item_seconds, _ENGINE_CODE[engine], workers, chunksize, run_seconds, time,
            _SOURCE_CODE[source], _nan(nbytes), _nan(cpu), _nan(predicted))


class SavedGroup:
    """A :class:`Group` as a snapshot keeps it, built only when its workload is asked for:
    a new process resumes from a snapshot of 20,000 one-run workloads without building
    20,000 groups (~29 us each) for the one its call plans.

    >>> g = Group(8)
    >>> g.add(("w", 10, 1e-3, "serial", 1, 10, 0.01, 1.0, "sample", None, None, None))
    >>> saved = SavedGroup(g.state(), g.rows[: g.n], 8)
    >>> len(saved), saved.build().observations() == g.observations()
    (1, True)
    """

    __slots__ = ("_state", "rows", "n", "capacity")

    def __init__(self, state: dict, rows: np.ndarray, capacity: int):
        self._state, self.rows, self.n, self.capacity = state, rows, len(rows), capacity

    def __len__(self) -> int:
        return self.n

    def state(self) -> dict:
        return self._state

    def nbytes(self) -> int:
        return self.rows.nbytes

    def build(self) -> "Group":
        return Group.from_state(self._state, self.rows, self.capacity)


def _observation(workload: str, r: tuple) -> model.Observation:
    """The :class:`~amorsize_dask.learning.model.Observation` of one :data:`ROW` tuple."""
    return model.Observation(workload, int(r[0]), float(r[1]), ENGINES[r[2]], int(r[3]), int(r[4]), float(r[5]),
                             float(r[6]), SOURCES[r[7]], _none(r[8]), _none(r[9]), _none(r[10]))


class Group:
    """The observed runs of one workload on one fingerprint, newest ``capacity`` kept."""

    __slots__ = ("rows", "n", "capacity", "recent", "drifted", "features", "features_time", "_cache", "_pending")

    def __init__(self, capacity: int):
        self.rows = np.empty(4, ROW)
        self.n = 0
        self.capacity = max(4, int(capacity))
        self.recent: dict[str, list[float]] = {}  # "engine/workers" ("" any) -> newest item seconds
        self.drifted = False
        self.features: dict | None = None  # the newest sampled run's features
        self.features_time = None          # ... and that run's time (None: none yet)
        self._cache: list[model.Observation] | None = None
        self._pending: list[tuple] = []  # rows added since the last flush (numpy in bulk)

    def __len__(self) -> int:
        return self.n + len(self._pending)

    def add(self, fields: tuple) -> None:
        """Index one observed run, given as :func:`~amorsize_dask.learning.model.fields_of_record`
        (drift first: it compares with the runs before it)."""
        _, n_items, item_seconds, engine, workers, _, _, _, source, _, _, _ = fields
        self._observe(engine, workers, source, item_seconds, n_items)
        row = row_of(fields)
        self._pending.append(row)
        cache = self._cache
        # The newest run joins the built list (a warm call's prediction after the last call's
        # record rebuilt ~500 observations: ~1.5 ms of a ~2 ms planning); a run older than
        # the newest needs the rows sorted again, one past the capacity the older half dropped.
        if cache is not None and (not cache or cache[-1].time <= row[6]) and len(self) <= self.capacity:
            self._cache = cache + [_observation(cache[-1].workload if cache else fields[0], row)]
        else:
            self._cache = None
        if len(self._pending) >= _FLUSH_ROWS:
            self.flush()

    def _observe(self, engine: str, workers: int, source: str, item_seconds: float, n_items: int) -> None:
        """Update the drift state with one run (in time order)."""
        if source == "sample":
            self.drifted = False  # the cost model decided on fresh figures
        config = f"{engine}/{workers}"
        if source in ("model", "explore") and model.drift_from(
                self.recent.get(config, []), self.recent.get("", []), item_seconds, n_items):
            self.drifted = True
        for key in (config, ""):
            newest = self.recent.setdefault(key, [])
            newest.append(item_seconds)
            del newest[:-model.REFERENCE_RUNS]

    def extend(self, rows: np.ndarray) -> None:
        """Index many observed runs at once (:data:`ROW` values, oldest first, ``n_items`` > 0).

        Only the newest ``capacity`` are kept; only those are replayed for drift (older runs
        would be dropped from the rows anyway).

        >>> g, h = Group(8), Group(8)
        >>> for i in range(20):
        ...     g.add(("w", 10, 1e-3, "serial", 1, 10, 0.01, float(i), "model", None, None, None))
        >>> g.flush()
        >>> h.extend(g.rows[: g.n])
        >>> [o.time for o in h.observations()] == [o.time for o in g.observations()], len(h) <= 8
        (True, True)
        """
        self.flush()
        tail = rows[-self.capacity:]
        columns = (tail[name].tolist() for name in ("engine", "n_workers", "source", "item_seconds", "n_items"))
        for engine, workers, source, item_seconds, n_items in zip(*columns):
            self._observe(ENGINES[engine], workers, SOURCES[source], item_seconds, n_items)
        n = self.n + len(tail)
        if n <= len(self.rows):               # room: in place
            self.rows[self.n: n] = tail
        elif n <= self.capacity:              # grow
            rows = np.empty(min(self.capacity, max(n, 2 * len(self.rows))), ROW)
            rows[: self.n] = self.rows[: self.n]
            rows[self.n: n] = tail
            self.rows = rows
        else:                                 # the newest ``capacity`` only
            rows = np.concatenate([self.rows[: self.n], tail])
            self.rows = rows[np.sort(np.argsort(rows["time"], kind="stable")[n - self.capacity:])]
            n = self.capacity
        self.n = n
        self._cache = None

    def flush(self) -> None:
        """Store the rows added since the last flush in the numpy rows."""
        if not self._pending:
            return
        pending, self._pending = self._pending, []
        new = np.array(pending, dtype=ROW)
        while len(new):
            if self.n == len(self.rows):
                self._grow()
            take = new[: len(self.rows) - self.n]
            self.rows[self.n: self.n + len(take)] = take
            self.n += len(take)
            new = new[len(take):]

    def _grow(self) -> None:
        """Double the rows, or past ``capacity`` drop the older half (by time)."""
        if self.n >= self.capacity:
            self._cache = None  # the older half goes
            rows = self.rows[: self.n]
            keep = np.sort(np.argsort(rows["time"], kind="stable")[self.n - self.capacity // 2:])
            self.rows = np.concatenate([rows[keep], np.empty(self.capacity - len(keep), ROW)])
            self.n = len(keep)
            return
        rows = np.empty(min(2 * len(self.rows), self.capacity), ROW)
        rows[: self.n] = self.rows[: self.n]
        self.rows = rows

    def observations(self, workload: str = "") -> list[model.Observation]:
        """The observed runs, oldest first (built once per change)."""
        if self._cache is None:
            self.flush()
            rows = self.rows[: self.n]
            rows = rows[np.argsort(rows["time"], kind="stable")]
            self._cache = [_observation(workload, r) for r in rows.tolist()]
        return self._cache

    def state(self) -> dict:
        """Everything but the rows, as JSON values (for a snapshot of the index)."""
        self.flush()
        return {"recent": self.recent, "drifted": self.drifted, "features": self.features}

    @classmethod
    def from_state(cls, state: dict, rows: np.ndarray, capacity: int) -> "Group":
        """The group of :meth:`state` and its rows (the newest ``capacity``).

        >>> g = Group(8)
        >>> g.add(("w", 10, 1e-3, "serial", 1, 10, 0.01, 1.0, "sample", None, None, None))
        >>> again = Group.from_state(g.state(), g.rows[: g.n], 8)
        >>> again.observations() == g.observations(), again.recent
        (True, {'serial/1': [0.001], '': [0.001]})
        """
        group = cls(capacity)
        group.recent = {str(k): [float(x) for x in v][-model.REFERENCE_RUNS:] for k, v in state["recent"].items()}
        group.drifted = bool(state["drifted"])
        group.features = state["features"] if isinstance(state["features"], dict) else None
        rows = rows[np.argsort(rows["time"], kind="stable")][-group.capacity:]
        group.rows = np.empty(max(4, len(rows)), ROW)
        group.rows[: len(rows)] = rows
        group.n = len(rows)
        return group

    def nbytes(self) -> int:
        self.flush()
        return self.rows.nbytes

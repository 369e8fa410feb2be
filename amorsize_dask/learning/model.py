"""k-NN over measured runs: which configuration ran a workload fastest, and how sure we are.

An :class:`Observation` is the part of a record the model needs. For a query (a workload
and its item count) the model takes the ``k`` observations of that workload nearest in
the features that decide the cost: ``log(n_items)``, and — beyond their measured noise —
``log(item_seconds)``, ``log(bytes per item)`` and ``log(cpu_ratio)``, each compared with
the workload's current figures (:func:`reference`: what its newest runs measured).
Observations of another cost regime (cheap items, when the items are dear now) are left
out. It groups the rest by configuration (engine, workers, chunksize scaled to the
query) and predicts each configuration's run time from the measured seconds per item,
weighted by nearness and recency. The fastest one now wins (a process plan with no pool
running here pays its start) — but not a configuration whose newest run measured clearly
slower than another's newest (:data:`REGRESSION_FACTOR`). Confidence grows with the number
of close observations and shrinks with distance (the learner scales it by fingerprint
similarity when the observations were borrowed from a near machine shape). :func:`drifted`
tells when a model-planned run measured a cost its neighbours did not predict: the
learner then lets the planner sample again.

It explores (:mod:`.exploration`): an unmeasured neighbour of the best configuration
that the cost model predicts much faster is tried at once; otherwise, now and then
(probability ``1/observations``, at least ``amorsize.model.explore-probability``), one
it predicts within ``explore-max-slowdown`` of the best; always within ``explore-budget``.

>>> obs = [Observation("w", 1000, 1e-3, "processes", 2, 50, 0.6, 0.0),
...        Observation("w", 1000, 1e-3, "processes", 2, 100, 0.5, 1.0)]
>>> p = predict(obs, 1000, cores=2, explore=False)
>>> (p.engine, p.n_workers, p.chunksize)
('processes', 2, 100)
"""

from __future__ import annotations

import math
import random
from collections import defaultdict
from dataclasses import dataclass
from typing import Callable

import numpy as np

from ..settings import Settings, current
from . import exploration

__all__ = ["CLOSE_LOG_DISTANCE", "NOISE_FACTOR", "SAME_ENGINE_NOISE_FACTOR", "FAR_LOG_DISTANCE",
           "REFERENCE_RUNS", "RECENCY_HALF_LIFE", "REGRESSION_FACTOR", "Observation", "CostsNow",
           "fields_of_record", "Prediction", "scale_chunksize", "Reference", "reference",
           "feature_distances", "DRIFT_MIN_SECONDS", "drifted", "drift_from",
           "predict"]

# Observations within this log-distance of the query's item count count as "close"
# for confidence (log(1.65) ≈ 0.5: runs of 0.6x..1.65x the items).
CLOSE_LOG_DISTANCE = 0.5
# Measured seconds per item (compute seconds / items) of one workload vary by this factor
# between runs without any change in the work: 5 repeated runs of 300 items on a loaded
# 2-core machine (session 13, /tmp measurement) spread max/min 1.01-1.05x serially, 1.43x
# in processes, 1.80x on 4 threads (CPU-bound items): SAME_ENGINE_NOISE_FACTOR, for runs of
# one engine and worker count. Across engines up to 4.6x (numpy items: 31 us serially,
# 143 us on 4 threads): NOISE_FACTOR. A factor beyond it is new evidence.
NOISE_FACTOR = 5.0
SAME_ENGINE_NOISE_FACTOR = 2.5
_LOG_NOISE = math.log(NOISE_FACTOR)
# Observations whose features are this far (log units beyond the noise) from the
# workload's current figures describe another cost regime: they are left out. A design
# choice, not a measurement: 10x beyond the noise is 50x in all, a change (20 us -> 1 ms
# items, say) that moves the best plan of the bench's item counts across the serial /
# parallel line.
FAR_LOG_DISTANCE = math.log(10.0)
# The workload's current figures are the median of its newest runs' (one noisy run
# does not move them; after a change, two runs do).
REFERENCE_RUNS = 3
# Evidence loses half its weight per this many newer runs of the workload: twice the
# default model.k, so that the k nearest runs of one configuration weigh alike while a
# change a few dozen runs ago no longer does (a design choice, not a measurement).
RECENCY_HALF_LIFE = 16
# A configuration whose newest run measured this much slower than another's newest is not
# chosen again until new runs say otherwise: beyond run-to-run noise of wall time (1.43x
# max/min in processes above), below the 2x of a clear regression.
REGRESSION_FACTOR = 1.6


@dataclass(frozen=True)
class Observation:
    """One measured run of a workload: its size, its configuration, its measured seconds."""

    workload: str
    n_items: int
    item_seconds: float  # compute seconds measured inside tasks / n_items
    engine: str
    n_workers: int
    chunksize: int
    run_seconds: float  # wall seconds of the run without planning, as if it ran every item
    time: float
    source: str = "sample"  # the plan's source: model | explore | sample | default
    bytes_per_item: float | None = None  # pickled bytes in + out per item (sampled runs)
    cpu_ratio: float | None = None  # CPU / wall while sampling (sampled runs)
    predicted_seconds: float | None = None  # what the plan predicted for the run


def _chunksize_over_all(chunksize: int, n_run: int, n: int) -> int:
    """The chunksize that runs all ``n`` items in as many tasks as ``chunksize`` ran the
    ``n_run`` the plan covered (the rest were sampled first), when one does; else as it was.

    1,000 items of which 1 was sampled ran as 1 task of 999: carried as chunksize 999, it
    would plan 2 tasks for 1,000. 5 of 6 items as 5 tasks of 1: no chunksize makes 5 tasks
    of 6 items (2 makes 3, which halves the parallelism of 2 workers), so 1 stays.

    >>> _chunksize_over_all(999, 999, 1000), _chunksize_over_all(1, 5, 6), _chunksize_over_all(250, 9987, 10_000)
    (1000, 1, 250)
    """
    if n_run == n:
        return chunksize
    tasks = math.ceil(n_run / chunksize)
    over_all = math.ceil(n / tasks)
    return over_all if math.ceil(n / over_all) == tasks else chunksize


def fields_of_record(rec: dict) -> tuple | None:
    """The :class:`Observation` fields of a record, in order (None: nothing to learn from):
    ``Observation(*fields_of_record(rec))``.

    A plain tuple, so that an index can keep it without building an object per record.
    """
    features = rec["features"]
    n = int(features.get("n_items", 0))
    if n <= 0:
        return None
    plan = rec["plan"]
    # Items computed while sampling ran before the plan did: rate the plan on the rest.
    n_run = n - int(features.get("n_sampled", 0))
    # Planning and one-time costs (a pool's start: the next call finds it running) are not
    # the plan's steady-state cost.
    run_seconds = (rec["wall_seconds"] - float(features.get("planning_seconds", 0.0))
                   - float(features.get("one_time_seconds", 0.0)))
    if n_run <= 0:
        return None
    chunksize = _chunksize_over_all(plan["chunksize"], n_run, n)
    nbytes = None
    if "bytes_in" in features and "bytes_out" in features:
        nbytes = float(features["bytes_in"]) + float(features["bytes_out"])
    cpu = features.get("cpu_ratio")
    return (rec["workload"], n, rec["compute_seconds"] / n, plan["engine"], plan["n_workers"], chunksize,
            max(run_seconds, 1e-9) * n / n_run, rec["time"], plan["source"], nbytes,
            None if cpu is None else float(cpu), rec.get("predicted_seconds"))


@dataclass(frozen=True)
class Prediction:
    engine: str
    n_workers: int
    chunksize: int
    seconds: float
    confidence: float
    n_observations: int
    explored: bool = False
    best_seconds: float | None = None
    best_config: tuple | None = None  # (engine, n_workers, chunksize) of the best, when exploring


def scale_chunksize(chunksize: int, n_workers: int, n_from: int, n_to: int) -> int:
    """A chunksize measured at ``n_from`` items, carried to ``n_to`` items.

    A run with few tasks per worker was balance-bound: keep its tasks per worker.
    Otherwise it was overhead-bound: keep its items per task.

    >>> scale_chunksize(500, 2, 1000, 3000), scale_chunksize(10, 2, 1000, 3000)
    (1500, 10)
    """
    if n_from == n_to:
        return chunksize
    tasks = math.ceil(n_from / chunksize)
    if tasks <= 4 * n_workers:
        return max(1, min(n_to, math.ceil(n_to / tasks)))
    return max(1, min(n_to, chunksize))


@dataclass(frozen=True)
class Reference:
    """A workload's current figures: the median of its newest runs' (None: not measured)."""

    item_seconds: float | None
    bytes_per_item: float | None
    cpu_ratio: float | None


def _recent_median(values: list[float]) -> float | None:
    """``statistics.median`` of the newest :data:`REFERENCE_RUNS` values (None if none),
    inline: it runs once per record a learner indexes.

    >>> _recent_median([5.0, 1.0, 3.0, 2.0]), _recent_median([4.0, 1.0]), _recent_median([])
    (2.0, 2.5, None)
    """
    newest = sorted(values[-REFERENCE_RUNS:])
    n = len(newest)
    if not n:
        return None
    return newest[n // 2] if n % 2 else (newest[n // 2 - 1] + newest[n // 2]) / 2


def reference(observations: list[Observation]) -> Reference:
    """What the workload's newest runs measured (observations oldest first).

    >>> ref = reference([_example(1e-6), _example(3e-3), _example(3e-3)])
    >>> ref.item_seconds, ref.bytes_per_item
    (0.003, None)
    """
    return Reference(
        _recent_median([o.item_seconds for o in observations]),
        _recent_median([o.bytes_per_item for o in observations if o.bytes_per_item is not None]),
        _recent_median([o.cpu_ratio for o in observations if o.cpu_ratio is not None]),
    )


# The cost features runs are compared by, and the floor under which values count as equal.
_FEATURE_FLOORS = (("item_seconds", 1e-9), ("bytes_per_item", 1.0), ("cpu_ratio", 1e-3))


def feature_distances(observations: list[Observation], ref: Reference) -> np.ndarray:
    """Distance of each observation's cost features from the workload's current ones
    (``ref``), beyond the noise: per feature, the log gap past :data:`NOISE_FACTOR` (0 when
    either is unknown), summed. One pass per feature: a prediction scores every run its
    workload kept (up to 2 x ``keep-per-workload``), ~1 ms one by one for 500 runs of a
    warm call of a few ms.

    >>> feature_distances([_example(1e-3), _example(1e-6)], Reference(1e-3, None, None)).round(2).tolist()
    [0.0, 5.3]
    """
    total = np.zeros(len(observations))
    for name, floor in _FEATURE_FLOORS:
        known = getattr(ref, name)
        if known is None:
            continue
        values = np.array([getattr(o, name) for o in observations], dtype=float)  # None: nan
        gaps = np.abs(np.log(np.maximum(values, floor) / max(known, floor))) - _LOG_NOISE
        total += np.where(gaps > 0, gaps, 0.0)  # nan (unknown) compares False: 0
    return total


# Runs whose compute time, measured and expected, is below this are not worth re-planning:
# below 0.2 s of serial work the planner keeps serial without even measuring the parallel
# overheads (planning.planner.CALIBRATE_ABOVE_SECONDS, bench: calibrate), and the noise of
# such short runs is larger (file I/O items under load read 3x apart, session 13).
DRIFT_MIN_SECONDS = 0.2


def drifted(before: list[Observation], new: Observation) -> bool:
    """Did ``new`` measure a cost per item its predecessors (oldest first) did not?

    Compared with the newest runs of the same engine and workers (noise
    ``SAME_ENGINE_NOISE_FACTOR``), else with the newest runs of any configuration (noise
    ``NOISE_FACTOR``: threads contending for the GIL inflate the compute time measured).

    >>> drifted([_example(1e-6)], _example(3e-3)), drifted([_example(1e-3)], _example(1.5e-3))
    (True, False)
    >>> drifted([_example(1e-6)], _example(1e-4))  # 100 x 0.1 ms: too short to re-plan
    False
    """
    same = [o.item_seconds for o in before if (o.engine, o.n_workers) == (new.engine, new.n_workers)]
    same = same[-REFERENCE_RUNS:]
    return drift_from(same, [o.item_seconds for o in before[-REFERENCE_RUNS:]], new.item_seconds, new.n_items)


def drift_from(same_engine: list[float], any_engine: list[float], item_seconds: float, n_items: int) -> bool:
    """:func:`drifted`, from the newest item seconds of the same engine and workers, and of any."""
    ref = _recent_median(same_engine or any_engine)
    if ref is None or n_items * max(ref, item_seconds) < DRIFT_MIN_SECONDS:
        return False
    factor = SAME_ENGINE_NOISE_FACTOR if same_engine else NOISE_FACTOR
    ratio = max(item_seconds, 1e-9) / max(ref, 1e-9)
    return ratio > factor or ratio < 1 / factor


def _example(item_seconds: float) -> Observation:
    return Observation("w", 100, item_seconds, "serial", 1, 100, 100 * item_seconds, 0.0)


def _nearest(observations: list[Observation], n_items: int, k: int) -> list[tuple[float, float, Observation]]:
    """The ``k`` observations nearest the query, as (distance, weight, observation).

    Observations of another cost regime (:data:`FAR_LOG_DISTANCE`) are left out; weights
    fall with distance and halve every :data:`RECENCY_HALF_LIFE` newer runs.
    """
    ref = reference(sorted(observations, key=lambda o: o.time))
    newest_first = sorted(observations, key=lambda o: -o.time)  # the index is each one's age
    far = feature_distances(newest_first, ref)
    distance = np.abs(np.log(np.array([o.n_items for o in newest_first], dtype=float)) - math.log(n_items)) + far
    kept = np.flatnonzero(far <= FAR_LOG_DISTANCE)
    nearest = kept[np.lexsort((kept, distance[kept]))][:k]  # by distance, then age
    return [(d, 0.5 ** (age / RECENCY_HALF_LIFE) / (d + 0.1), newest_first[age])
            for age, d in zip(nearest.tolist(), distance[nearest].tolist())]


@dataclass(frozen=True)
class CostsNow:
    """What configurations would cost here and now, beside what their runs measured.

    ``estimate(config) -> seconds``: the cost model's (the workload's features and the
    machine's overheads), which vets explorations: a neighbour predicted slower than
    ``settings.explore_max_slowdown`` × the best is not tried. ``cold_start(n_workers)
    -> seconds``: what a process plan pays now to start its pool (none of that size
    running here), added to the processes' measured steady state when choosing: a 5-item
    call, planned from its 3,000-item runs' processes (~0.2 ms), started a pool on each
    run (18-21 ms, against 0.4 ms for ``builtins.map``).
    """

    estimate: Callable[[tuple], float] | None = None
    cold_start: Callable[[int], float] | None = None


def predict(
    observations: list[Observation],
    n_items: int,
    *,
    cores: int,
    settings: Settings | None = None,
    engines: tuple[str, ...] = ("threads", "processes"),
    explore: bool | random.Random = True,
    now: CostsNow | None = None,
) -> Prediction | None:
    """The fastest measured configuration for ``n_items``, or None without observations;
    serial, never measured, when the measured runs' own compute time (their items'
    seconds) beats the fastest of them by more than :data:`REGRESSION_FACTOR` (a notebook
    function carrying a 48 MB table ran 2x50 processes at 6 s, 20x its serial time, run
    after run, while its items took 0.3 s: no run had been serial).

    ``settings`` (default: read now) gives ``k`` and the exploration bounds. ``explore``:
    False never explores; True explores with :mod:`random`; a :class:`random.Random`
    explores with it. ``now``: what configurations cost here and now (:class:`CostsNow`).
    """
    if not observations or n_items <= 0:
        return None
    settings = current(settings)
    nearest = _nearest(observations, n_items, settings.k)
    if not nearest:
        return None
    now = now or CostsNow()
    predicted, best_cfg, best_now = _measured_configs(nearest, n_items, cores, now.cold_start)
    n_close = sum(1 for d, _, _ in nearest if d <= CLOSE_LOG_DISTANCE)
    d_min = min(d for d, _, _ in nearest)
    # One close measured run is already better evidence than a sample (0.67); more, more so.
    confidence = n_close / (n_close + 0.5) * math.exp(-d_min)
    best = Prediction(*best_cfg, predicted[best_cfg], round(confidence, 3), len(nearest))
    if "serial" in engines and not any(cfg[0] == "serial" for cfg in predicted):
        serial = n_items * sum(o.item_seconds * w for _, w, o in nearest) / sum(w for _, w, _ in nearest)
        if serial * REGRESSION_FACTOR < best_now:  # the runs' own work, done here, beats them
            return Prediction("serial", 1, n_items, serial, best.confidence, len(nearest))
    if explore is False or exploration.spent(observations) > settings.explore_budget:
        return best
    tried = exploration.promising(best_cfg, predicted, n_items, cores=cores, settings=settings, engines=engines,
                                  estimate=now.estimate)
    rng = random if explore is True else explore
    # Explore often while evidence is thin (1/observations, as amorsize.yaml says: a second
    # call tries a neighbour the cost model vouches for), never less than the floor.
    # bench --fresh payload's third call stayed serial (1.33x the oracle's two threads)
    # when its second call, at 1/(observations+1), drew no exploration.
    if tried is None and rng.random() < max(settings.explore_probability, 1.0 / len(observations)):
        tried = exploration.pick(best_cfg, predicted, n_items, rng=rng, cores=cores, settings=settings,
                                 engines=engines, estimate=now.estimate)
    if tried is None:
        return best
    engine, workers, chunksize = tried
    return Prediction(engine, workers, chunksize, best.seconds, best.confidence, len(nearest), True, best.seconds,
                      best_cfg)


def _measured_configs(nearest, n_items: int, cores: int, cold_start=None) -> tuple[dict, tuple, float]:
    """({configuration: predicted seconds for ``n_items``}, the best allowed one, what it
    costs now: its seconds, and for processes ``cold_start(n_workers)``, the pool's start).

    A configuration whose newest run measured clearly slower than another's newest, now
    (:data:`REGRESSION_FACTOR`), is not chosen again: its older, faster runs no longer
    describe it.
    """
    per_config: dict[tuple, list[tuple[float, float]]] = defaultdict(list)
    newest: dict[tuple, tuple[float, float]] = {}  # cfg -> (time, seconds per item) of its newest run
    for _, weight, o in nearest:
        workers = min(o.n_workers, cores) if o.engine == "processes" else o.n_workers
        cfg = (o.engine, workers, scale_chunksize(o.chunksize, o.n_workers, o.n_items, n_items))
        per_item = o.run_seconds / o.n_items
        per_config[cfg].append((per_item, weight))
        if cfg not in newest or o.time > newest[cfg][0]:
            newest[cfg] = (o.time, per_item)
    predicted = {
        cfg: n_items * sum(s * w for s, w in vals) / sum(w for _, w in vals) for cfg, vals in per_config.items()
    }
    starts: dict[int, float] = {}  # by worker count: a pool of that size may be running
    for engine, workers, _ in predicted:
        if engine == "processes" and cold_start is not None and workers not in starts:
            starts[workers] = cold_start(workers)
    extra = {cfg: starts.get(cfg[1], 0.0) if cfg[0] == "processes" else 0.0 for cfg in predicted}
    newest_now = {cfg: n_items * per_item + extra[cfg] for cfg, (_, per_item) in newest.items()}
    best_newest = min(newest_now.values())
    allowed = [cfg for cfg in predicted if newest_now[cfg] <= REGRESSION_FACTOR * best_newest]
    best = min(allowed, key=lambda cfg: predicted[cfg] + extra[cfg])
    return predicted, best, predicted[best] + extra[best]

"""k-NN over measured runs: which configuration ran a workload fastest, and how sure we are.

An :class:`Observation` is the part of a record the model needs. For a query (a workload
and its item count) the model takes the ``k`` observations of that workload nearest in
``log(n_items)``, groups them by configuration (engine, workers, chunksize scaled to the
query), and predicts each configuration's run time from the measured seconds per item,
weighted by nearness. The fastest one wins. Confidence grows with the number of close
observations and shrinks with distance (and with fingerprint dissimilarity when the
observations were borrowed from a near machine shape).

It explores: now and then (with probability ``1/(observations+1)``, at least
``explore_probability``) it proposes a neighbour of the best configuration (chunksize
×2 or ÷2, one worker more or fewer, serial vs parallel) that has not been measured yet,
so that repeated runs converge to the best configuration rather than the first guess.
Exploration is bounded: a neighbour is tried only while unmeasured (once), and only if the
cost model predicts it within ``explore_max_slowdown`` of the best (without a cost model,
only chunk-size steps are tried).

>>> obs = [Observation("w", 1000, 1e-3, "processes", 2, 50, 0.6, 0.0),
...        Observation("w", 1000, 1e-3, "processes", 2, 100, 0.5, 1.0)]
>>> p = predict(obs, 1000, cores=2, k=8, explore=False)
>>> (p.engine, p.n_workers, p.chunksize)
('processes', 2, 100)
"""

from __future__ import annotations

import math
import random
from collections import defaultdict
from dataclasses import dataclass
from typing import Callable

# Observations within this log-distance of the query's item count count as "close"
# for confidence (log(1.65) ≈ 0.5: runs of 0.6x..1.65x the items).
CLOSE_LOG_DISTANCE = 0.5


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

    @classmethod
    def from_record(cls, rec: dict) -> "Observation | None":
        features = rec["features"]
        n = int(features.get("n_items", 0))
        if n <= 0:
            return None
        plan = rec["plan"]
        # Items computed while sampling ran before the plan did: rate the plan on the rest.
        n_run = n - int(features.get("n_sampled", 0))
        run_seconds = rec["wall_seconds"] - float(features.get("planning_seconds", 0.0))
        if n_run <= 0:
            return None
        return cls(
            workload=rec["workload"],
            n_items=n,
            item_seconds=rec["compute_seconds"] / n,
            engine=plan["engine"],
            n_workers=plan["n_workers"],
            chunksize=plan["chunksize"],
            run_seconds=max(run_seconds, 1e-9) * n / n_run,
            time=rec["time"],
        )


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


def predict(
    observations: list[Observation],
    n_items: int,
    *,
    cores: int,
    k: int = 8,
    explore: bool = True,
    explore_probability: float = 0.1,  # defaults: amorsize.yaml model.*
    explore_max_slowdown: float = 1.05,
    max_threads: int = 64,
    similarity: float = 1.0,
    rng: random.Random | None = None,
    engines: tuple[str, ...] = ("threads", "processes"),
    estimate: Callable[[tuple], float] | None = None,
) -> Prediction | None:
    """The fastest measured configuration for ``n_items``, or None without observations.

    ``estimate(config) -> seconds`` (the cost model, when the workload's features and the
    machine's overheads are known) vets explorations: a neighbour predicted slower than
    ``explore_max_slowdown`` × the best is not tried.
    """
    if not observations or n_items <= 0:
        return None
    log_n = math.log(n_items)
    nearest = sorted(observations, key=lambda o: (abs(math.log(o.n_items) - log_n), -o.time))[:k]
    per_config: dict[tuple, list[tuple[float, float]]] = defaultdict(list)
    for o in nearest:
        distance = abs(math.log(o.n_items) - log_n)
        workers = min(o.n_workers, cores) if o.engine == "processes" else o.n_workers
        cfg = (o.engine, workers, scale_chunksize(o.chunksize, o.n_workers, o.n_items, n_items))
        per_config[cfg].append((o.run_seconds / o.n_items, 1.0 / (distance + 0.1)))
    predicted = {
        cfg: n_items * sum(s * w for s, w in vals) / sum(w for _, w in vals) for cfg, vals in per_config.items()
    }
    best_cfg = min(predicted, key=predicted.get)
    n_close = sum(1 for o in nearest if abs(math.log(o.n_items) - log_n) <= CLOSE_LOG_DISTANCE)
    d_min = min(abs(math.log(o.n_items) - log_n) for o in nearest)
    # One close measured run is already better evidence than a sample (0.67); more, more so.
    confidence = n_close / (n_close + 0.5) * math.exp(-d_min) * similarity
    best = Prediction(*best_cfg, predicted[best_cfg], round(confidence, 3), len(nearest))
    if not explore:
        return best
    rng = rng or random
    # Explore often while evidence is thin (1/(observations+1)), never less than the floor.
    if rng.random() >= max(explore_probability, 1.0 / (len(observations) + 1)):
        return best
    options = [
        cfg
        for cfg in neighbours(best_cfg, n_items, cores=cores, max_threads=max_threads, engines=engines)
        if cfg not in predicted
    ]
    if estimate is None:
        # Without a cost model to vouch for it, only a chunk size step is a small risk.
        options = [cfg for cfg in options if cfg[:2] == best_cfg[:2]]
    else:
        reference = estimate(best_cfg)
        options = [cfg for cfg in options if estimate(cfg) <= explore_max_slowdown * reference]
    if not options:
        return best
    engine, workers, chunksize = rng.choice(options)
    return Prediction(engine, workers, chunksize, best.seconds, best.confidence, len(nearest), True, best.seconds,
                      best_cfg)


def neighbours(cfg: tuple, n_items: int, *, cores: int, max_threads: int,
               engines: tuple[str, ...] = ("threads", "processes")) -> list[tuple]:
    """Configurations one step from ``cfg``: chunksize ×2 / ÷2 (while every worker gets a
    task), workers ±1 (threads ×2 / ÷2), and across the serial / parallel line.

    >>> neighbours(("processes", 2, 10), 100, cores=2, max_threads=64)
    [('serial', 1, 100), ('processes', 2, 20), ('processes', 2, 5)]
    >>> neighbours(("threads", 2, 50), 100, cores=2, max_threads=2)
    [('serial', 1, 100), ('threads', 2, 25)]
    """
    engine, workers, chunksize = cfg
    if engine == "serial":
        out = []
        if "processes" in engines and cores >= 2:
            out.append(("processes", cores, math.ceil(n_items / (4 * cores))))
        if "threads" in engines:
            out.append(("threads", 2, math.ceil(n_items / 8)))
        if "dask" in engines:
            out.append(("dask", cores, math.ceil(n_items / (4 * cores))))
        return out
    out = [("serial", 1, n_items)]
    for c in (chunksize * 2, chunksize // 2):
        # Fewer tasks than workers leaves workers idle: never a step towards the best.
        if 1 <= c <= n_items and c != chunksize and math.ceil(n_items / c) >= workers:
            out.append((engine, workers, c))
    if engine == "processes":
        for w in (workers - 1, workers + 1):
            if 2 <= w <= cores:
                out.append((engine, w, chunksize))
    elif engine == "threads":
        for w in (workers // 2, workers * 2):
            if 2 <= w <= max_threads and w != workers:
                out.append((engine, w, chunksize))
    return out

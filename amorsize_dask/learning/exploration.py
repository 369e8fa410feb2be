"""Exploration: which unmeasured configuration the model tries next, and what trying cost.

The model (:mod:`.model`) predicts only configurations it has measured. To converge on
the best one rather than on its first guess it tries a neighbour of the best now and
then (:func:`neighbours`): at once when the cost model, fed with what the runs measured,
predicts one much faster (:func:`promising`), else at random among those the cost model
predicts within ``explore-max-slowdown`` of the best (:func:`pick`) — and only while what
past tries cost stays within ``explore-budget`` of the measured run time (:func:`spent`).

>>> neighbours(("serial", 1, 100), 100, cores=2, max_threads=64)
[('processes', 2, 13), ('threads', 2, 13)]
"""

from __future__ import annotations

import math

from ..settings import Settings

__all__ = ["PROMISING_FACTOR", "PROMISING_MIN_SAVING_SECONDS", "neighbours", "promising", "pick", "spent"]

# An unmeasured neighbour that the cost model predicts this much faster than the best
# measured configuration is tried next, once: the margin of the model's regression guard
# (model.REGRESSION_FACTOR: beyond the 1.43x run-to-run noise of a process run), the
# other way round.
PROMISING_FACTOR = 1.6
# ... and saves at least this much per call: what an exploring call may pay once to start
# a process pool (a forked pool of 2: 9-14 ms, bench --fresh's pool start line, sessions
# 7-9), rounded up. bench --fresh short-cpu (200 x 0.27 ms: 53 ms serial, ~30 ms on a
# running pool) was never tried on processes by its second call while this gate asked
# for 0.2 s of work.
PROMISING_MIN_SAVING_SECONDS = 0.02


def neighbours(cfg: tuple, n_items: int, *, cores: int, max_threads: int,
               engines: tuple[str, ...] = ("threads", "processes")) -> list[tuple]:
    """Configurations one step from ``cfg``: chunksize ×2 / ÷2 (while every worker gets a
    task), one wave (a task per worker: the fewest hand-offs, for items as uniform as the
    cost model needs to keep it within ``explore-max-slowdown``), workers ±1 (threads ×2 /
    ÷2), across the serial / parallel line, and across the thread / process line (the
    same chunks). Without that last step threads were out of reach of a process plan:
    bench --fresh numpy-nogil (np.sort, the GIL released) kept the processes its first
    sample chose, 1.3-1.6x slower than threads, call after call.

    bench --cluster's heavy (6 items of ~70 ms, 2 workers) ran 2x1 (one item per task:
    ``planner.min-tasks-per-worker``) in 0.254 s and 2x3 in 0.240 s (medians of 6 in turn;
    ``Client.map`` 0.250 s); chunksize steps from 1 reach 2, never 3.

    >>> neighbours(("processes", 2, 10), 100, cores=2, max_threads=64)
    [('serial', 1, 100), ('processes', 2, 20), ('processes', 2, 5), ('processes', 2, 50), ('threads', 2, 10)]
    >>> neighbours(("threads", 2, 50), 100, cores=2, max_threads=2)
    [('serial', 1, 100), ('threads', 2, 25), ('processes', 2, 50)]
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
    one_wave = math.ceil(n_items / workers)
    for c in (chunksize * 2, chunksize // 2, one_wave):
        # Fewer tasks than workers leaves workers idle: never a step towards the best.
        step = (engine, workers, c)
        if 1 <= c <= n_items and c != chunksize and math.ceil(n_items / c) >= workers and step not in out:
            out.append(step)
    if engine == "processes":
        for w in (workers - 1, workers + 1):
            if 2 <= w <= cores:
                out.append((engine, w, chunksize))
        if "threads" in engines:
            out.append(("threads", workers, chunksize))
    elif engine == "threads":
        for w in (workers // 2, workers * 2):
            # More threads than tasks idle (big-inputs, 100 items in 2 tasks, tried 4 and 8).
            if 2 <= w <= min(max_threads, math.ceil(n_items / chunksize)) and w != workers:
                out.append((engine, w, chunksize))
        if "processes" in engines and cores >= 2:
            out.append(("processes", max(2, min(workers, cores)), chunksize))
    return out


def _untried(best_cfg: tuple, measured, n_items: int, cores: int, settings: Settings, engines) -> list[tuple]:
    return [cfg for cfg in neighbours(best_cfg, n_items, cores=cores, max_threads=settings.max_threads,
                                      engines=engines) if cfg not in measured]


def promising(best_cfg: tuple, measured: dict, n_items: int, *, cores: int, settings: Settings,
              engines: tuple[str, ...], estimate) -> tuple | None:
    """The unmeasured neighbour of ``best_cfg`` that ``estimate`` (the cost model, fed
    with what this workload's runs measured) predicts :data:`PROMISING_FACTOR` times
    faster, both than its own estimate of ``best_cfg`` and than what ``best_cfg``
    measured (``measured``: configuration -> predicted seconds from measured runs), and
    :data:`PROMISING_MIN_SAVING_SECONDS` faster; None if there is none, or no cost model.
    (A cost model too pessimistic about the best — a thread plan it rates slow that
    measured fast — does not make a neighbour promising.)

    The first plan came from a few sampled items; when the whole run measured a cost they
    did not show (a skewed tail: 0.1 ms items, every 40th 30 ms), its configuration is
    the only one measured, and random exploration alone would keep it for several calls.

    >>> s = Settings.from_config()
    >>> promising(("serial", 1, 400), {("serial", 1, 400): 1.6}, 400, cores=2, settings=s, engines=("processes",),
    ...           estimate=lambda cfg: 1.6 if cfg[0] == "serial" else 0.85)
    ('processes', 2, 50)
    >>> promising(("serial", 1, 400), {("serial", 1, 400): 0.03}, 400, cores=2, settings=s, engines=("processes",),
    ...           estimate=lambda cfg: 0.03 if cfg[0] == "serial" else 0.015) is None  # saves 15 ms: no
    True
    """
    options = _untried(best_cfg, measured, n_items, cores, settings, engines)
    if estimate is None or not options:
        return None
    seconds, cfg = min((estimate(c), c) for c in options)
    best = min(estimate(best_cfg), measured[best_cfg])
    return cfg if seconds * PROMISING_FACTOR <= best and best - seconds >= PROMISING_MIN_SAVING_SECONDS else None


def pick(best_cfg: tuple, measured: dict, n_items: int, *, rng, cores: int, settings: Settings,
         engines: tuple[str, ...], estimate) -> tuple | None:
    """A random unmeasured neighbour the cost model predicts within
    ``settings.explore_max_slowdown`` of ``best_cfg`` (without a cost model to vouch for
    it, only a chunk size step: a small risk); None if there is none. ``measured``:
    configuration -> predicted seconds from measured runs.

    Another engine than a parallel ``best_cfg``'s (serial, or threads from processes and
    back) must also be predicted within it of what ``best_cfg`` measured: the cost model
    may misjudge a whole engine. bench --fresh big-inputs ran twice as fast on two threads
    as serially, where a fresh process's thread probe read no gain; rating both alike,
    the model explored serial on a third call (2.4x). (Against what a serial best
    measured, every estimate of a sample inflated by warm-up would look slow: a serial
    best's parallel neighbours keep the estimate of the best as their reference.)

    >>> import random
    >>> s = Settings.from_config()
    >>> pick(("threads", 2, 13), {("threads", 2, 13): 0.18}, 100, rng=random.Random(0), cores=2, settings=s,
    ...      engines=("threads",), estimate=lambda cfg: 0.36)[0]  # serial predicted 0.36 s: not tried
    'threads'
    """
    options = _untried(best_cfg, measured, n_items, cores, settings, engines)
    if estimate is None:
        options = [cfg for cfg in options if cfg[:2] == best_cfg[:2]]
    else:
        reference = estimate(best_cfg)
        measured_reference = min(reference, measured[best_cfg])
        options = [cfg for cfg in options if estimate(cfg) <= settings.explore_max_slowdown * (
            measured_reference if best_cfg[0] != "serial" and cfg[0] != best_cfg[0] else reference)]
    return rng.choice(options) if options else None


def spent(observations) -> float:
    """Share of the measured run time (of model ``Observation``\\ s) that explorations cost
    beyond the best's prediction.

    >>> from amorsize_dask.learning.model import Observation
    >>> obs = [Observation("w", 100, 1e-3, "serial", 1, 100, 0.1, 0.0),
    ...        Observation("w", 100, 1e-3, "threads", 2, 50, 0.3, 1.0, "explore", predicted_seconds=0.1)]
    >>> round(spent(obs), 2)
    0.5
    """
    total = sum(o.run_seconds for o in observations)
    cost = sum(max(0.0, o.run_seconds - o.predicted_seconds) for o in observations
               if o.source == "explore" and o.predicted_seconds is not None)
    return cost / total if total > 0 else 0.0

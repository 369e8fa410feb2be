"""The scheduler plugin: plans from the model it holds in memory, records the runs it sees.

A cluster client asks the plugin for a plan (``amorsize_plan``) and tells it about a run
before submitting its tasks (``amorsize_run``). The plugin adds up the compute seconds the
workers measured for each of that run's tasks as they finish, and the wall time from the
registration to the last one. The client then confirms that the run succeeded
(``amorsize_done``: a function that raised on an item still finishes its task, the failure
travels back as a value) and the plugin writes the run's one record. An ``Adaptive``
subclass asks it how many threads the pending amorsize work needs (``amorsize_target``).
Client-side wrappers: :mod:`amorsize_dask.cluster.client`.

Install it with ``client.register_plugin(AmorsizePlugin(training_dir=...))`` or
``dask scheduler --preload amorsize_dask.plugin --amorsize-dir PATH``.

>>> import pickle
>>> p = pickle.loads(pickle.dumps(AmorsizePlugin(training_dir="/tmp/training")))
>>> p.name, p.idempotent, p.training_dir
('amorsize', True, '/tmp/training')
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import math
import numbers
import threading
import time

from distributed.diagnostics.plugin import SchedulerPlugin

from ..target import fingerprint as fingerprints
from .keys import KEY_PREFIX, parse_task_key
from ..learning.learner import get_learner
from ..planning.prediction import predict_here
from .client import METADATA_KEY
from .first_index import index_elsewhere_if_large
from .requests import (MAX_STR_CHARS, MAX_TASKS_PER_RUN, bad_value, check_run,  # noqa: F401 (re-exported)
                              checked_hex16, checked_int, checked_run_id, checked_seconds, checked_text)
from ..learning.records import MAX_INT, make_record

logger = logging.getLogger("amorsize_dask")

PROTOCOL_VERSION = 1
# Bounds on a long-lived scheduler. A client has one run in flight at a time, so even a
# busy shared scheduler rarely holds more than a few dozen; beyond these the oldest goes.
MAX_PENDING_RUNS = 1_000
RUN_TTL_SECONDS = 3600.0
# A finished run waits this long for the client's confirmation (which comes within
# milliseconds of the client getting its results); unconfirmed, it failed: dropped.
CONFIRM_SECONDS = 60.0
# Finished tasks are kept as one bit each (a recomputed task is not counted twice):
# at most 125 KB per run (MAX_TASKS_PER_RUN) and 1.25 MB in all.
MAX_PENDING_TASKS = 10_000_000
# Only these transitions can finish or end a run: everything else returns at once.
_FINISHES = ("memory", "erred", "forgotten")


class _Run:
    """What the plugin keeps of one pending run: the record's fields and a few counters."""

    __slots__ = ("run_id", "n_tasks", "done", "n_done", "compute", "started", "finished", "fingerprint",
                 "workload", "function", "features", "plan", "predicted", "planning", "sampled")

    def __init__(self, run: dict, fingerprint, started: float):
        self.run_id = run["run_id"]
        self.n_tasks = run["n_tasks"]
        self.done = bytearray((self.n_tasks + 7) // 8)  # one bit per finished task
        self.n_done = 0
        self.compute = 0.0
        self.started = started
        self.finished: float | None = None  # time.time() when its last task finished
        self.fingerprint = fingerprint
        self.workload = run["workload"]
        self.function = run["function"]
        self.features = run["features"]
        self.sampled = float(self.features.pop("sample_seconds", 0.0))
        self.plan = run["plan"]
        self.predicted = run["predicted_seconds"]
        self.planning = run["planning_seconds"]


class AmorsizePlugin(SchedulerPlugin):
    """Plans amorsize runs from the model and records them from their finished tasks.

    Parameters
    ----------
    training_dir : str or path, optional
        The training directory on the scheduler's machine (default: the scheduler's
        ``amorsize.training-dir``, else the user's cache dir). Point every process of a
        cluster at one shared directory.
    """

    name = "amorsize"
    idempotent = True

    def __init__(self, training_dir=None):
        self.training_dir = None if training_dir is None else str(training_dir)
        self.scheduler = None
        self.learner = None
        self._runs: dict[str, _Run] = {}
        self._first_index, self._indexed = threading.Lock(), False  # see _learner()
        self._n_pending_tasks = 0
        self._warned_evict = False
        self.n_hook_errors = 0
        self.n_recorded = 0
        self.n_plans = 0

    def __getstate__(self):
        return {"training_dir": self.training_dir}  # nothing of a running scheduler

    def __setstate__(self, state):
        self.__init__(state["training_dir"])

    # -- lifecycle -----------------------------------------------------------------------
    async def start(self, scheduler) -> None:
        self._setup(scheduler)

    def _setup(self, scheduler) -> None:
        if self.scheduler is scheduler:
            return
        self.scheduler = scheduler
        self.learner = get_learner(self.training_dir)
        scheduler.handlers.update(self._handlers())
        self._announce(scheduler)
        logger.info("amorsize plugin started; training directory %s", self.learner.store.path)

    def _announce(self, scheduler) -> None:
        """Say where any client can look without calling an unknown handler that this
        scheduler runs the plugin (its task metadata: ``client.restart()`` clears it)."""
        scheduler.set_metadata(keys=[METADATA_KEY], value={"name": self.name, "version": PROTOCOL_VERSION})

    def _handlers(self) -> dict:
        return {"amorsize_ping": self.amorsize_ping, "amorsize_plan": self.amorsize_plan,
                "amorsize_run": self.amorsize_run, "amorsize_done": self.amorsize_done,
                "amorsize_target": self.amorsize_target}

    async def close(self) -> None:
        if self.scheduler is not None:
            self.scheduler.set_metadata(keys=[METADATA_KEY], value=None)
            for op, handler in self._handlers().items():
                if self.scheduler.handlers.get(op) == handler:
                    del self.scheduler.handlers[op]
        self._runs.clear()
        self._n_pending_tasks = 0

    def restart(self, scheduler, **kwargs) -> None:
        self._runs.clear()  # every task is forgotten: no pending run can finish
        self._n_pending_tasks = 0
        # The restart cleared the announcement with the tasks' metadata: clients then
        # planned and recorded in their own directories, for good (a re-registration is
        # a no-op: the plugin is idempotent).
        self._announce(scheduler)

    # -- following tasks -----------------------------------------------------------------
    def transition(self, key, start, finish, *args, **kwargs) -> None:
        # Called on every transition of every task: return at once for all others.
        if finish not in _FINISHES or not self._runs or type(key) is not str or not key.startswith(KEY_PREFIX):
            return
        try:
            self._on_transition(key, start, finish, kwargs)
        except Exception:
            self._hook_failed("transition")

    def _on_transition(self, key: str, start: str, finish: str, kwargs: dict) -> None:
        parsed = parse_task_key(key)
        run = self._runs.get(parsed[0]) if parsed else None
        if run is None or run.finished is not None:
            return  # not ours, or finished (its results are being released)
        index = parsed[1]
        byte, bit = divmod(index, 8)
        counted = index < run.n_tasks and bool(run.done[byte] >> bit & 1)
        if finish != "memory":
            if not (finish == "forgotten" and counted):  # a done chunk its client gathered and released
                self._drop(run, f"task {key} went {start} -> {finish}")
            return
        if index >= run.n_tasks or counted:
            return  # recomputed (its worker died after it finished): counted once
        run.done[byte] |= 1 << bit
        run.n_done += 1
        for ss in kwargs.get("startstops") or ():
            if ss.get("action") == "compute":
                run.compute += max(0.0, ss["stop"] - ss["start"])
        if run.n_done == run.n_tasks:
            run.finished = time.time()
            run.done = None  # nothing more to count: free the bits
            self._n_pending_tasks -= run.n_tasks

    def _write(self, run: _Run) -> bool:
        compute = run.compute + run.sampled
        features = dict(run.features)
        features["item_seconds"] = compute / features["n_items"]
        wall = run.finished - run.started + run.planning
        return self._learner().record(
            fingerprint=run.fingerprint.id, fingerprint_fields=run.fingerprint.as_dict(),
            workload=run.workload, function=run.function, features=features,
            engine=run.plan["engine"], n_workers=run.plan["n_workers"], chunksize=run.plan["chunksize"],
            source=run.plan["source"], wall_seconds=max(wall, 1e-9), compute_seconds=compute,
            predicted_seconds=run.predicted,
        )

    def _drop(self, run: _Run, reason: str | None) -> None:
        if self._runs.pop(run.run_id, None) is not None:
            if run.finished is None:
                self._n_pending_tasks -= run.n_tasks
            if reason:
                logger.debug("amorsize run %s not recorded: %s", run.run_id, reason)

    def _hook_failed(self, hook: str) -> None:
        self.n_hook_errors += 1
        if self.n_hook_errors == 1 or self.n_hook_errors % 1000 == 0:
            logger.error("amorsize plugin: the %s hook failed (%d times so far); the scheduler goes on, "
                         "runs it missed are recorded by their clients", hook, self.n_hook_errors, exc_info=True)

    # -- handlers ------------------------------------------------------------------------
    def amorsize_ping(self) -> dict:
        """``{"name": "amorsize", "version": ..., "training_dir": ..., "pending_runs": n}``."""
        return {"name": self.name, "version": PROTOCOL_VERSION,
                "training_dir": str(self.learner.store.path), "pending_runs": len(self._runs)}

    async def amorsize_plan(self, workload, function, n_items, explore=True) -> dict:
        """The model's plan for ``n_items`` of ``workload`` on this cluster as it is now.

        Returns ``{"fingerprint", "fields", "cores", "plan"}``; ``plan`` is None without
        evidence, else the prediction's fields (engine, n_workers, chunksize, confidence,
        seconds, explored, n_observations, best_seconds).
        """
        workload = checked_hex16("workload", workload)
        checked_text("function", function)
        n_items = checked_int("n_items", n_items, 1, MAX_INT)
        if type(explore) is not bool:
            raise bad_value("explore", "True or False", explore, TypeError)
        self.n_plans += 1
        try:
            fp = self._fingerprint()
            cores = int(fp.as_dict()["total_threads"])
            reply = {"fingerprint": fp.id, "fields": fp.as_dict(), "cores": cores, "plan": None}
            if cores > 0:  # reading the store may take a while: off the event loop
                pred = await asyncio.to_thread(self._predict, fp, workload, n_items, cores, explore)
                reply["plan"] = None if pred is None else _plain(dataclasses.asdict(pred))
            return reply
        except Exception as exc:
            raise self._handler_failed("amorsize_plan", exc) from None

    def _learner(self):
        """The learner, a large directory first indexed by a child process (in a thread)."""
        with self._first_index:
            if not self._indexed:
                index_elsewhere_if_large(self.learner, self.learner.store.path)
                self._indexed = True
        return self.learner

    def _predict(self, fp, workload: str, n_items: int, cores: int, explore: bool):
        return predict_here(self._learner(), fp, workload, n_items, cores=cores, explore=explore,
                            engines=("serial", "dask"))

    def amorsize_run(self, run) -> None:
        """Follow the tasks of a run about to start (recorded once they finished and the
        client confirmed: :meth:`amorsize_done`).

        ``run``: ``{"run_id": 16 hex, "n_tasks": int, "workload": 16 hex, "function": str,
        "features": {"n_items": ..., ...}, "plan": {"engine": "dask", "n_workers",
        "chunksize", "source"}, "predicted_seconds": float | None, "planning_seconds": float,
        "fingerprint_fields": the fields of the cluster fingerprint it was planned for (optional:
        the cluster's now)}``.
        """
        run = check_run(run)
        if run["run_id"] in self._runs:
            raise ValueError(f"amorsize plugin: run_id {run['run_id']!r} is already registered; "
                             "use a new id per run (engines.dask.new_run_id())")
        # Filed under the shape it was planned for (workers may have joined since the plan).
        fields = run.get("fingerprint_fields")
        fp = fingerprints.Fingerprint.from_fields(fields) if fields else self._fingerprint()
        # The record must validate when it is written: fail now, naming the field.
        make_record(fingerprint=fp.id, fingerprint_fields=fp.as_dict(), workload=run["workload"],
                    function=run["function"], features=dict(run["features"], item_seconds=0.0),
                    wall_seconds=1.0, compute_seconds=0.0, predicted_seconds=run["predicted_seconds"],
                    **run["plan"])
        try:
            now = time.time()
            self._evict(now, run["n_tasks"])
            self._runs[run["run_id"]] = _Run(run, fp, now)
            self._n_pending_tasks += run["n_tasks"]
        except Exception as exc:
            raise self._handler_failed("amorsize_run", exc) from None

    async def amorsize_done(self, run_id) -> bool:
        """The client got every result of ``run_id``: write its record (True), or False
        when the plugin cannot (it does not know the run, or did not see all its tasks
        finish): the client records the run itself. The write (file I/O, the learner's
        lock) runs off the scheduler's event loop."""
        run = self._runs.get(checked_run_id("run_id", run_id))
        if run is None:
            return False
        self._drop(run, None if run.finished is not None else "the plugin did not see all its tasks finish")
        if run.finished is None:
            return False
        try:
            written = await asyncio.to_thread(self._write, run)
        except Exception as exc:
            raise self._handler_failed("amorsize_done", exc) from None
        self.n_recorded += bool(written)
        return written

    def _evict(self, now: float, n_new_tasks: int) -> None:
        """Drop runs older than the TTL, finished runs never confirmed, then the oldest
        while over the bounds."""
        runs = self._runs
        stale = [run for run in runs.values() if run.finished is not None and now - run.finished > CONFIRM_SECONDS]
        for run in stale:
            self._drop(run, "never confirmed by its client (its function raised?)")
        while runs:
            oldest = next(iter(runs.values()))
            expired = now - oldest.started > RUN_TTL_SECONDS
            full = len(runs) >= MAX_PENDING_RUNS or self._n_pending_tasks + n_new_tasks > MAX_PENDING_TASKS
            if not (expired or full):
                return
            if full and not expired and not self._warned_evict:
                self._warned_evict = True
                logger.warning("amorsize plugin: more than %d runs (or %d tasks) pending; the oldest are "
                               "dropped unrecorded", MAX_PENDING_RUNS, MAX_PENDING_TASKS)
            self._drop(oldest, "expired" if expired else "evicted")

    def amorsize_target(self, target_duration=5.0) -> int:
        """Worker threads that would finish the pending amorsize work in ``target_duration``.

        Remaining tasks × seconds per task (measured so far, else predicted), at least 1
        while work is pending; 0 when there is none.
        """
        duration = checked_seconds("target_duration", target_duration)
        try:
            self._evict(time.time(), 0)
            work, pending = 0.0, 0
            for run in self._runs.values():
                if run.finished is None:
                    pending += 1
                    work += (run.n_tasks - run.n_done) * _task_seconds(run)
            if not pending:
                return 0
            return max(1, math.ceil(work / duration))
        except Exception as exc:
            raise self._handler_failed("amorsize_target", exc) from None

    def pending_runs(self) -> int:
        return len(self._runs)

    def _fingerprint(self):
        return fingerprints.cluster_fingerprint(fingerprints.workers_from_scheduler(self.scheduler))

    def _handler_failed(self, op: str, exc: Exception) -> RuntimeError:
        logger.error("amorsize plugin: %s failed", op, exc_info=exc)
        return RuntimeError(f"amorsize plugin: {op} failed on the scheduler ({type(exc).__name__}: {exc}); "
                            "see the scheduler's log")


def _task_seconds(run: _Run) -> float:
    """Compute seconds per task: measured mean, else predicted run seconds × workers / tasks."""
    if run.n_done:
        return run.compute / run.n_done
    if run.predicted:
        return run.predicted * min(run.plan["n_workers"], run.n_tasks) / run.n_tasks
    return 0.0


def _plain(d: dict) -> dict:
    """Plain Python values only (msgpack-ready), whatever the model computed with.

    >>> _plain({"n": 2, "best_config": ("dask", 2, 50), "seconds": 1.5, "note": None})
    {'n': 2, 'best_config': ['dask', 2, 50], 'seconds': 1.5, 'note': None}
    """
    return {key: _plain_value(value) for key, value in d.items()}


def _plain_value(value):
    if value is None or isinstance(value, (bool, str)):
        return value
    if isinstance(value, numbers.Integral):
        return int(value)
    if isinstance(value, (tuple, list)):  # e.g. Prediction.best_config
        return [_plain_value(v) for v in value]
    return float(value)


# -- installing ----------------------------------------------------------------------------
def install(scheduler, training_dir=None) -> AmorsizePlugin:
    """Add the plugin to a running or starting ``scheduler`` (once: again returns the first).

    For a scheduler started in Python, e.g. ``Scheduler(...)`` or inside a preload.
    """
    existing = scheduler.plugins.get(AmorsizePlugin.name)
    if isinstance(existing, AmorsizePlugin):
        return existing
    plugin = AmorsizePlugin(training_dir)
    plugin._setup(scheduler)  # the scheduler calls start() too if it has not started yet
    scheduler.add_plugin(plugin, name=plugin.name, idempotent=True)
    return plugin

"""Where a call runs and what it runs: the fingerprint, the workload key, the learner.

A :class:`Target` ties one call to the training directory: it asks the model for a
plan before the call and records the measured run after it.

>>> import tempfile
>>> with tempfile.TemporaryDirectory() as d:
...     t = Target.local(abs, d)
...     len(t.fingerprint.id), t.learned_plan(100) is None
(16, True)
"""

from __future__ import annotations

import logging
import math
import os
import numbers
from dataclasses import dataclass, field

from .. import config
from ..errors import NoWorkersYet, warn_once
from ..planning import overheads, pickled, thread_safety
from ..planning.fork_cost import forked_start
from ..planning.prediction import predict_here
from . import machine
from ..engines import get_engine, shared_engine
from ..planning.overheads import Overheads
from .context import can_start_processes
from .fingerprint import Fingerprint, local_fingerprint
from ..learning.learner import Learner, get_learner
from ..planning.model_plan import model_plan
from ..planning.plan import Plan
from .workload import function_name, workload_key
from ..cluster import client as plugin_client
from ..cluster.keys import new_run_id, sample_key

logger = logging.getLogger("amorsize_dask")

__all__ = ["Target"]


@dataclass
class Target:
    """This machine (``client`` None) or a Dask cluster, with its learner."""

    fingerprint: Fingerprint
    workload: str
    learner: Learner
    cores: int  # usable cores here, or worker threads of the cluster
    client: object = None
    function: str = ""  # the function's name, for humans (and the scheduler's records)
    # On a cluster: may func run in this process (sampling, tiny jobs)? Opt-in only.
    allow_local: bool = False
    # The cluster's {worker address: threads} when this target was made (None: this machine).
    worker_threads: dict | None = None
    # The smallest memory limit of the cluster's workers per thread, in bytes (None: none set).
    memory_per_thread: float | None = None
    # The training directory the caller named (None: the default, or the plugin's).
    training_dir: str | None = None
    # Run ids whose record the cluster's scheduler plugin writes (not this client).
    _plugin_runs: set = field(default_factory=set, repr=False, compare=False)
    # This machine: the function, for what forking a pool for it costs (:meth:`prediction`).
    _func: object = field(default=None, repr=False, compare=False)

    @classmethod
    def local(cls, func, training_dir=None) -> "Target":
        """This machine, with the process engine's start method."""
        return cls(
            fingerprint=local_fingerprint(shared_engine().start_method),
            workload=workload_key(func),
            learner=get_learner(training_dir),
            cores=machine.cpu_count(),
            _func=func,
        )

    @classmethod
    def cluster(cls, client, func, training_dir=None, allow_local: bool | None = None, *,
                wait: bool = True) -> "Target":
        """The cluster behind ``client``, as the scheduler sees it now; one with no workers
        yet (starting, or scaled to zero) is waited for, as ``Client.map``'s tasks wait
        (``wait`` False: :class:`~amorsize_dask.errors.NoWorkersYet` instead).

        ``allow_local``: may ``func`` run in this process (default ``amorsize.cluster.allow-local``)?
        """
        from .fingerprint import cluster_fingerprint

        workers = plugin_client.cluster_workers(client)
        if not workers:
            if not wait:
                raise NoWorkersYet(f"the cluster behind {client!r} has no workers yet")
            logger.info("amorsize_dask: the cluster behind %r has no workers yet; waiting for one", client)
            plugin_client.wait_for_a_worker(client)
            workers = plugin_client.cluster_workers(client)
        threads = {address: int(w.get("nthreads", 1)) for address, w in workers.items()}
        return cls(
            fingerprint=cluster_fingerprint(workers),
            workload=workload_key(func),
            learner=get_learner(training_dir),
            cores=sum(threads.values()),
            client=client,
            training_dir=None if training_dir is None else os.fspath(training_dir),
            function=function_name(func),
            allow_local=bool(config.get("cluster.allow-local") if allow_local is None else allow_local),
            worker_threads=threads,
            memory_per_thread=min((float(w["memory_limit"]) / threads[address] for address, w in workers.items()
                                   if w.get("memory_limit")), default=None),
        )

    def chunk_memory(self) -> float:
        """The bytes the chunks in flight may take, before ``planner.memory-fraction``: this
        machine's available memory; on a cluster, a worker thread's share of the smallest
        worker memory limit (a plan of 7 results of 48 MB in one task overflowed workers
        limited to 286 MiB, where ``Client.map``, a task per item, ran)."""
        if self.client is not None and self.memory_per_thread:
            return self.memory_per_thread
        return float(machine.available_memory())

    def auto_engines(self) -> tuple[str, ...]:
        """Engines ``engine="auto"`` chooses among here: in-process serial only if allowed
        on a cluster; threads only for a function not known to fail on them
        (:meth:`thread_safe`); processes only where this process may start them."""
        if self.client is not None:
            return ("serial", "dask") if self.allow_local else ("dask",)
        features = self.learner.features(self.fingerprint.id, self.workload) or {}
        engines = ("serial", "threads") if self.thread_safe(features) else ("serial",)
        travels = features.get(pickled.FEATURE, 1) != 0  # its newest sample's items and results pickled
        return engines + ("processes",) if travels and can_start_processes() else engines

    def thread_safe(self, features: dict | None = None) -> bool:
        """False for a function that :meth:`changed_shared_state`, and once this workload failed
        only on threads: here, or in a run recorded with ``thread_safe: 0`` (``features``)."""
        if thread_safety.is_marked_unsafe(self.workload) or self.changed_shared_state():
            return False
        if features is None:
            features = self.learner.features(self.fingerprint.id, self.workload) or {}
        return features.get(thread_safety.FEATURE, 1) != 0

    def changed_shared_state(self) -> str | None:
        """:func:`.thread_safety.changes_process_state` of the function (here)."""
        return thread_safety.changes_process_state(self._func) if self._func is not None else None

    @property
    def on_workers_only(self) -> bool:
        """A cluster whose workers alone may run func (no opt-in to run it in this process)."""
        return self.client is not None and not self.allow_local

    def placement_reasons(self) -> tuple[str, ...]:
        """What the plan says about where func runs (nothing on this machine)."""
        if self.client is None:
            return ()
        if self.allow_local:
            return ("func may run in this process (allow-local opted in): sampled here, tiny jobs run here",)
        return ("func runs only on the workers (cluster.allow-local is false): sampled in a first task "
                "on a worker, results kept",)

    def sample_on_worker(self, func, items, n_total: int, parallelism):
        """The planner's sample, timed in a first task on one of the cluster's workers."""
        from ..cluster.sampling import sample_on_worker

        return sample_on_worker(self.client, func, items, n_total, parallelism=parallelism, key=sample_key(func))

    def pool_warm(self, n_workers: int) -> bool:
        return True if self.client is not None else shared_engine().is_warm(n_workers)

    def overheads(self, measure_now: bool) -> Overheads | None:
        """Measured overheads of this target (cached); when asked for and not measured yet,
        on this machine the estimate (measured after the call: never on its critical path),
        on a cluster measured now."""
        fp = self.fingerprint.id
        found = overheads.cached(fp)
        if self.client is None and found is not None:
            return overheads.for_start_method(found, shared_engine().next_start_method())
        if found is not None or not measure_now:
            return found
        if self.client is None and not can_start_processes():
            return None  # measuring starts a process pool, which a daemonic process may not
        if self.client is None:
            overheads.measure_later(fp, lambda: overheads.measure_local(shared_engine(), get_engine("threads"),
                                                                        self.cores))
            return overheads.estimate(shared_engine().next_start_method())
        from ..engines.dask import DaskEngine

        return overheads.get(fp, lambda: overheads.measure_cluster(DaskEngine(self.client), self.cores))

    def learned_plan(self, n_items: int, explore: bool = True, engine: str = "auto") -> Plan | None:
        """A ``source="model"`` plan when the model is confident, else None (then: sample).
        On a cluster whose scheduler runs the amorsize plugin, the plugin's model answers.
        An exploration is kept only where ``func`` may run and, for an ``engine`` the caller
        fixed, only from a best measured on that engine to another configuration of it."""
        engines = None if engine in ("auto", "dask") else (engine,)  # an engine asked for: its runs
        pred = self._any_prediction(n_items, explore, engines)
        if pred is not None and pred.explored and not self._may_explore(pred, engine):
            pred = self._any_prediction(n_items, False, engines)
        if pred is not None and pred.engine not in self.auto_engines():
            return None  # measured runs in this process (opted in then), not allowed now: sample
        if pred is None or pred.confidence < config.get("model.min-confidence"):
            return None
        return model_plan(pred, n_items, shape=self.fingerprint.kind, local=self.client is None,
                          one_worker=self._one_worker_only(pred, engine))

    def _one_worker_only(self, pred, engine: str) -> bool:
        """A parallel plan of ``engine="auto"`` here that has one worker to run on: one
        thread, or processes on one usable core (:func:`.model_plan.model_plan`)."""
        if self.client is not None or engine != "auto":  # here, serial is always an auto engine
            return False
        if pred.engine == "threads":
            return pred.n_workers == 1
        return pred.engine == "processes" and min(pred.n_workers, self.cores) == 1

    def _may_explore(self, pred, engine: str) -> bool:
        """May the exploration ``pred`` be tried for a call that asked for ``engine``?"""
        if pred.engine not in self.auto_engines():
            return False
        best_engine = (pred.best_config or (pred.engine,))[0]
        return engine == "auto" or pred.engine == best_engine == engine

    def _any_prediction(self, n_items: int, explore: bool, engines: tuple[str, ...] | None = None):
        pred = self._plugin_prediction(n_items, explore)
        return self.prediction(n_items, explore=explore, engines=engines) if pred is _NO_PLUGIN else pred

    def prediction(self, n_items: int, explore: bool = True, engines: tuple[str, ...] | None = None):
        """The model's prediction for this workload here, from this process's learner."""
        return predict_here(self.learner, self.fingerprint, self.workload, n_items, cores=self.cores,
                            explore=explore, engines=engines or self.auto_engines(),
                            pool=None if self.client is not None else self)

    def cold_overheads(self) -> Overheads | None:
        """The overheads of a process plan that starts (forks) its pool now, or None when it
        would run on the pool running (or the cluster): see :func:`..planning.prediction.estimator`."""
        found = None if self.client is not None else self.overheads(measure_now=False)
        forked = None if found is None else forked_start(self._func, found, self.cores, find_out=False)
        if forked is not None:
            return forked[0]
        return None if self.pool_warm(self.cores) else found

    def cold_start_seconds(self, n_workers: int) -> float:
        """What a process plan of ``n_workers`` pays now to start its pool here: 0 with one
        running; else the measured start (a fork's, with its copy) or, not measured yet,
        the estimate."""
        if self.pool_warm(n_workers):
            return 0.0
        found = self.overheads(measure_now=False) or overheads.estimate(shared_engine().next_start_method())
        forked = forked_start(self._func, found, n_workers, find_out=False)
        return (forked[0] if forked is not None else found).start_seconds

    def start_run(self, func, planned) -> str:
        """A new run id for the tasks of this run (a cluster's plugin is told about it here).

        A dask run on a cluster whose scheduler runs the amorsize plugin is registered with
        it: the plugin then writes the run's record from the tasks it sees finish.
        """
        run_id = new_run_id()
        plan = planned.plan
        n_rest = plan.n_items - plan.n_sampled
        if self.client is None or plan.engine != "dask" or n_rest <= 0 or plan.chunksize < 1:
            return run_id
        client = self._plugin_client()
        if client is None:
            return run_id
        run = {
            "run_id": run_id,
            "n_tasks": math.ceil(n_rest / plan.chunksize),  # the engine runs items[n_sampled:]
            "workload": self.workload,
            "function": function_name(func),
            "features": {key: _plain(value) for key, value in self.run_features(planned).items()},
            "plan": {"engine": plan.engine, "n_workers": int(plan.n_workers), "chunksize": int(plan.chunksize),
                     "source": "explore" if plan.explored else plan.source},
            "predicted_seconds": None if plan.predicted_seconds is None else float(plan.predicted_seconds),
            "planning_seconds": float(plan.planning_seconds),
            "fingerprint_fields": self.fingerprint.as_dict(),  # recorded under the shape planned for
        }
        run["features"]["sample_seconds"] = self._sample_seconds(planned)
        try:
            client.register_run(self.client, run)
        except Exception as exc:
            plugin_client.plugin_failed(self.client, "register the run with", exc)
            return run_id
        self._plugin_runs.add(run_id)
        return run_id

    def run_features(self, planned) -> dict:
        """The workload features of a run's record, but for ``item_seconds`` (measured)."""
        plan = planned.plan
        n = plan.n_items
        features = {"n_items": n, "n_sampled": plan.n_sampled, "planning_seconds": plan.planning_seconds}
        if planned.profile is not None:
            # All the sample measured (a list of names here once left the pickling time out),
            # but n_items (above), item_seconds (the record's: over the whole run) and the
            # thread-safety mark (below: this target decides it).
            features.update({key: value for key, value in planned.profile.features(n).items()
                             if key not in ("n_items", "item_seconds", thread_safety.FEATURE)})
        if planned.ran_locally:
            features["ran_locally"] = 1  # items that could not be pickled ran in the caller
        if self.client is None and not self.thread_safe():
            features[thread_safety.FEATURE] = 0  # later runs (and processes) keep off threads
        return features

    def record(self, func, planned, *, wall_seconds: float, compute_seconds: float, run_id: str = "",
               one_time_seconds: float = 0.0) -> bool:
        """Append the measured run to the training directory (never fails the call).

        A run registered with the cluster's scheduler plugin is recorded there, from the
        figures it measured, unless the plugin cannot (then here, as without it).
        """
        if run_id and run_id in self._plugin_runs:
            self._plugin_runs.discard(run_id)
            if self._plugin_recorded(run_id):
                return True
            warn_once(f"amorsize_dask: the scheduler's plugin did not record a run it followed (its training "
                      f"directory cannot be written, or the run's tasks were submitted again); recorded in "
                      f"{self.learner.store.path} instead, which the plugin does not plan from")
        return self.learner.record(**self.record_fields(func, planned, wall_seconds=wall_seconds,
                                                         compute_seconds=compute_seconds,
                                                         one_time_seconds=one_time_seconds))

    def record_fields(self, func, planned, *, wall_seconds: float, compute_seconds: float,
                      one_time_seconds: float = 0.0) -> dict:
        """The fields of this run's record (:func:`amorsize_dask.learning.records.make_record`).

        ``one_time_seconds``: what this run paid once for all later ones (starting the
        process pool), recorded apart so that the model learns what the next call costs.
        """
        plan = planned.plan
        features = self.run_features(planned)
        features["item_seconds"] = compute_seconds / max(plan.n_items, 1)
        if one_time_seconds > 0:
            features["one_time_seconds"] = float(one_time_seconds)
        return dict(
            fingerprint=self.fingerprint.id,
            fingerprint_fields=self.fingerprint.as_dict(),
            workload=self.workload,
            function=function_name(func),
            features=features,
            engine=plan.engine,
            n_workers=plan.n_workers,
            chunksize=plan.chunksize,
            source="explore" if plan.explored else plan.source,
            wall_seconds=max(wall_seconds, 1e-9),
            compute_seconds=compute_seconds,
            predicted_seconds=plan.predicted_seconds,
        )

    # -- the cluster's scheduler plugin (amorsize_dask.cluster.plugin), when it runs one --------------
    @staticmethod
    def _sample_seconds(planned) -> float:
        return float(planned.profile.sample_seconds) if planned.profile is not None else 0.0

    def _plugin_client(self):
        """:mod:`amorsize_dask.cluster.client` if this cluster's scheduler runs the plugin
        (recording to the training directory the caller named, if any), else None."""
        if self.client is None:
            return None
        try:
            if self.training_dir is not None:
                return plugin_client if plugin_client.uses_training_dir(self.client, self.training_dir) else None
            return plugin_client if plugin_client.has_plugin(self.client) else None
        except Exception as exc:
            logger.debug("amorsize plugin check failed: %s", exc)
            return None

    def _plugin_recorded(self, run_id: str) -> bool:
        """Ask the plugin to write the record of a run it followed; False if it did not."""
        try:
            return plugin_client.finish_run(self.client, run_id)
        except Exception as exc:
            plugin_client.plugin_failed(self.client, "record the run with", exc)
            return False

    def _plugin_prediction(self, n_items: int, explore: bool):
        """The plugin's prediction (None: no evidence), or ``_NO_PLUGIN`` to predict here.

        The plugin's view of the cluster (fingerprint, threads) is adopted, so that this
        plan and the record the plugin writes agree.
        """
        client = self._plugin_client()
        if client is None:
            return _NO_PLUGIN
        try:
            reply = client.remote_plan(self.client, self.workload, self.function, n_items, explore)
            fp = Fingerprint.from_fields(reply["fields"])
            if fp.id != reply["fingerprint"]:
                raise ValueError(f"fingerprint {reply['fingerprint']!r} does not match its fields (id {fp.id!r})")
            cores = int(reply["cores"])
            found = reply["plan"]
            pred = None if found is None else plugin_client.prediction_from_reply(found)
        except Exception as exc:
            plugin_client.plugin_failed(self.client, "plan with", exc)
            return _NO_PLUGIN
        if cores > 0:
            self.fingerprint, self.cores = fp, cores
        return pred


_NO_PLUGIN = object()


def _plain(value):
    """A plain int or float (numpy numbers do not travel in the scheduler's messages)."""
    return int(value) if isinstance(value, numbers.Integral) else float(value)

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
from dataclasses import dataclass

from . import config, machine, overheads
from .engines import get_engine, shared_engine
from .overheads import Overheads
from .fingerprint import Fingerprint, local_fingerprint
from .learning import Learner, get_learner
from .plan import Plan, format_seconds
from .workload import function_key, function_name

logger = logging.getLogger("amorsize_dask")


@dataclass
class Target:
    """This machine (``client`` None) or a Dask cluster, with its learner."""

    fingerprint: Fingerprint
    workload: str
    learner: Learner
    cores: int  # usable cores here, or worker threads of the cluster
    client: object = None

    @classmethod
    def local(cls, func, training_dir=None) -> "Target":
        """This machine, with the process engine's start method."""
        return cls(
            fingerprint=local_fingerprint(shared_engine().start_method),
            workload=workload_key(func),
            learner=get_learner(training_dir),
            cores=machine.cpu_count(),
        )

    @classmethod
    def cluster(cls, client, func, training_dir=None) -> "Target":
        """The cluster behind ``client``, as the scheduler sees it now."""
        from .fingerprint import cluster_fingerprint

        workers = client.scheduler_info(n_workers=-1)["workers"]
        if not workers:
            raise RuntimeError(
                f"the cluster behind {client!r} has no workers; wait for them "
                "(client.wait_for_workers(n)) or use engine='processes' on this machine"
            )
        return cls(
            fingerprint=cluster_fingerprint(workers),
            workload=workload_key(func),
            learner=get_learner(training_dir),
            cores=sum(int(w.get("nthreads", 1)) for w in workers.values()),
            client=client,
        )

    def auto_engines(self) -> tuple[str, ...]:
        """Engines ``engine="auto"`` chooses among here (in-process serial is always one)."""
        return ("serial", "threads", "processes") if self.client is None else ("serial", "dask")

    def pool_warm(self, n_workers: int) -> bool:
        return True if self.client is not None else shared_engine().is_warm(n_workers)

    def overheads(self, measure_now: bool) -> Overheads | None:
        """Measured overheads of this target (cached), measuring them now if asked."""
        fp = self.fingerprint.id
        found = overheads.cached(fp)
        if found is not None or not measure_now:
            return found
        if self.client is None:
            return overheads.get(fp, lambda: overheads.measure_local(shared_engine(), get_engine("threads"), self.cores))
        from .engines.dask import DaskEngine

        return overheads.get(fp, lambda: overheads.measure_cluster(DaskEngine(self.client), self.cores))

    def learned_plan(self, n_items: int, explore: bool = True) -> Plan | None:
        """A ``source="model"`` plan when the model is confident, else None (then: sample)."""
        pred = self.learner.predict(
            self.fingerprint.id, self.workload, n_items, cores=self.cores,
            fields=self.fingerprint.as_dict(), explore=explore, engines=self.auto_engines(),
        )
        if pred is None or pred.confidence < config.get("model.min-confidence"):
            return None
        reasons = [
            f"model: {pred.n_observations} measured runs of this workload on this {self.fingerprint.kind} shape; "
            f"fastest predicted {pred.engine} {pred.n_workers}x{pred.chunksize}: "
            f"{format_seconds(pred.best_seconds or pred.seconds)} (confidence {pred.confidence:.2f})"
        ]
        if pred.explored:
            reasons.append(
                f"exploring a neighbouring configuration {pred.engine} {pred.n_workers}x{pred.chunksize} "
                "(never measured here) so repeated runs converge on the best"
            )
        return Plan(
            engine=pred.engine,
            n_workers=pred.n_workers,
            chunksize=pred.chunksize,
            n_tasks=math.ceil(n_items / pred.chunksize),
            source="model",
            confidence=pred.confidence,
            predicted_seconds=pred.seconds,
            n_items=n_items,
            explored=pred.explored,
            reasons=tuple(reasons),
        )

    def start_run(self, func, planned) -> str:
        """A new run id for the tasks of this run (a cluster's plugin is told about it here)."""
        from .engines.dask import new_run_id

        return new_run_id()

    def record(self, func, planned, *, wall_seconds: float, compute_seconds: float, run_id: str = "") -> bool:
        """Append the measured run to the training directory (never fails the call)."""
        plan = planned.plan
        n = plan.n_items
        features = {
            "n_items": n,
            "item_seconds": compute_seconds / n,
            "n_sampled": plan.n_sampled,
            "planning_seconds": plan.planning_seconds,
        }
        if planned.profile is not None:
            prof = planned.profile.features(n)
            for key in ("item_cv", "cpu_ratio", "bytes_in", "bytes_out", "thread_speedup"):
                if key in prof:
                    features[key] = prof[key]
        return self.learner.record(
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


def workload_key(func) -> str:
    """The function's key; a function that cannot be keyed gets one from its name."""
    try:
        return function_key(func)
    except Exception as exc:  # an exotic callable must never fail the user's map
        logger.debug("no function key for %r: %s", func, exc)
        import hashlib

        return hashlib.sha256(function_name(func).encode()).hexdigest()[:16]

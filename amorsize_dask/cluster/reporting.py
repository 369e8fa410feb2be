"""Runs measured piece by piece: partitions of a lazy ``dask.bag`` report as they finish.

A bag built by :func:`amorsize_dask.bag.map` is computed later, by whatever scheduler
the user picks. Each of its partitions measures its own compute time where it runs and
reports ``{run_id, part, n_items, compute_seconds, start, stop}``:

- on a ``distributed`` worker, as an event on topic :data:`TOPIC` (the scheduler plugin,
  or the client that built the bag, collects them);
- in this process (threaded or synchronous scheduler), straight to the collector;
- in another local process (dask's multiprocessing scheduler), as a small JSON file in
  ``<training dir>/pending/<run id>/`` — the last partition to finish gathers them.

When all partitions of a run have reported, one record is written, like any other run's.

>>> c = RunCollector()
>>> c.expect("0123456789abcdef", n_parts=1, on_complete=lambda run, reports: print(len(reports)))
>>> c.add({"run_id": "0123456789abcdef", "part": 0, "n_items": 3, "compute_seconds": 0.1,
...        "start": 1.0, "stop": 1.2})
1
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from typing import Callable

from ..target.context import current_worker

logger = logging.getLogger("amorsize_dask")

TOPIC = "amorsize"
# Runs whose partitions never all report (a bag never computed, a partial take()) are
# forgotten after this many, oldest first: memory stays bounded.
MAX_EXPECTED_RUNS = 1000


class RunCollector:
    """Gathers partition reports per run; calls ``on_complete(run, reports)`` once per run."""

    def __init__(self):
        self._lock = threading.Lock()
        self._runs: dict[str, dict] = {}

    def expect(self, run_id: str, *, n_parts: int, on_complete: Callable, **info) -> None:
        with self._lock:
            while len(self._runs) >= MAX_EXPECTED_RUNS:
                self._runs.pop(next(iter(self._runs)))
            self._runs[run_id] = {"n_parts": n_parts, "on_complete": on_complete, "reports": {}, **info}

    def add(self, report: dict) -> None:
        with self._lock:
            run = self._runs.get(report.get("run_id"))
            if run is None:
                return
            run["reports"][report.get("part")] = report
            if len(run["reports"]) < run["n_parts"]:
                return
            del self._runs[report["run_id"]]
        try:
            run["on_complete"](run, list(run["reports"].values()))
        except Exception:  # recording must never disturb a computation
            logger.exception("amorsize_dask: could not record a run")

    def __len__(self) -> int:
        return len(self._runs)


COLLECTOR = RunCollector()


def report(report: dict, pending_dir: str | None, creator_pid: int) -> None:
    """Send one partition's report to whoever collects it (see the module docstring)."""
    try:
        worker = current_worker()
        if worker is not None:
            worker.log_event(TOPIC, report)
        elif os.getpid() == creator_pid:
            COLLECTOR.add(report)
        elif pending_dir:
            _write_fragment(pending_dir, report)
    except Exception:
        logger.debug("amorsize_dask: a partition report was lost", exc_info=True)


def _write_fragment(pending_dir: str, report: dict) -> None:
    run_dir = os.path.join(pending_dir, report["run_id"])
    os.makedirs(run_dir, exist_ok=True)
    path = os.path.join(run_dir, f"{int(report['part'])}.json")
    tmp = f"{path}.{os.getpid()}.tmp"
    with open(tmp, "w") as f:
        json.dump(report, f)
    os.replace(tmp, path)


def gather_fragments(pending_dir: str, run_id: str, n_parts: int) -> list[dict] | None:
    """The reports of a run written as files, once all are there (exactly one caller wins)."""
    run_dir = os.path.join(pending_dir, run_id)
    try:
        names = [n for n in os.listdir(run_dir) if n.endswith(".json")]
    except OSError:
        return None
    if len(names) < n_parts:
        return None
    claimed = f"{run_dir}.claimed-{os.getpid()}-{time.monotonic_ns()}"
    try:
        os.rename(run_dir, claimed)  # atomic: only one process gets the run
    except OSError:
        return None
    reports = []
    for name in os.listdir(claimed):
        try:
            with open(os.path.join(claimed, name)) as f:
                reports.append(json.load(f))
        except (OSError, ValueError):
            pass
        finally:
            _unlink(os.path.join(claimed, name))
    _rmdir(claimed)
    return reports


def _unlink(path):
    try:
        os.unlink(path)
    except OSError:
        pass


def _rmdir(path):
    try:
        os.rmdir(path)
    except OSError:
        pass

"""One run on the process pool: its chunks' outcomes, crash counts and notes.

A chunk whose worker died is counted and sent again (at most :data:`MAX_CHUNK_RETRIES`
times, then :class:`~amorsize_dask.errors.WorkerLostError` names its items); with
``local_fallback`` (``engine="auto"``) items or results that cannot be pickled are
computed in this process instead, with one warning. Of several items that fail, the
lowest one's exception is raised, once every chunk before it is in (:class:`.base.FirstFailure`).

>>> job = ProcessJob(abs, [-1, -2], 0, local_fallback=False, progress=None)
>>> job.run_here(0, 2)
>>> job.result([(0, 2)]).results
[1, 2]
"""

from __future__ import annotations

from concurrent.futures.process import BrokenProcessPool

from ..errors import WorkerLostError, warn_once
from ..target.workload import function_name
from . import exit_hooks, process_worker, transport
from .base import Gathered, RunResult
from .chunks import ChunkResult, run_chunk

__all__ = ["MAX_CHUNK_RETRIES", "ProcessJob", "worker_lost"]

# A chunk is run again after its worker died at most this many times: one crash may be
# a killed worker (OOM killer, a node going away), repeated crashes are the function's.
MAX_CHUNK_RETRIES = 2


def worker_lost(func, lo: int, hi: int, times: int | None = None) -> Exception:
    """The error for items ``lo..hi`` (``hi`` exclusive) whose worker process died
    (``times`` times, when counted); when this interpreter's exit stopped the workers, the
    error that says so instead (:mod:`.exit_hooks`).

    >>> str(worker_lost(abs, 3, 5, 3)).startswith("a worker process died 3 times while running items 3..4 of")
    True
    """
    label = transport.items_label(lo, hi)
    if exit_hooks.interpreter_exiting():
        return exit_hooks.exiting_error(label, function_name(func))
    count = f" {times} times" if times is not None else ""
    return WorkerLostError(
        f"a worker process died{count} while running {label} of {function_name(func)}; the function "
        "may crash the interpreter (segfault, os._exit, memory); try engine='serial' to see the error"
    )


class ProcessJob:
    """One :meth:`ProcessEngine.run`: its finished chunks, crash counts and notes."""

    def __init__(self, func, items, first_index: int, local_fallback: bool, progress):
        self.func, self.items, self.first_index = func, items, first_index
        self.local_fallback = local_fallback
        self.gathered = Gathered(first_index, progress)  # its chunks back, its earliest failure
        self.crashes: dict[int, int] = {}
        self.notes: list[str] = []
        self.futures: dict = {}  # of the current round: future -> (lo, hi)

    def note(self, message: str) -> None:
        """Something ran here instead of in a worker: warn once per call, and keep it."""
        if not self.notes:
            warn_once(f"amorsize_dask: {message}")
        self.notes.append(message)

    def submit_all(self, executor, todo, func_key, func_bytes) -> list:
        """Send the chunks of ``todo`` (into :attr:`futures`); those whose items cannot be
        pickled run here (with ``local_fallback``); the chunks left unsent when the pool
        broke are returned. ``func_bytes`` None: the workers inherited the function
        (``func_key`` is its token), and the caller's ``__main__`` objects go by name."""
        self.futures = futures = {}
        for k, (lo, hi) in enumerate(todo):
            if not self.needed(lo):
                continue  # after an item that failed
            try:
                payload = transport.dump_items(self.items[lo:hi], self.first_index + lo, by_name=func_bytes is None)
            except TypeError as exc:
                if not self.local_fallback:
                    raise
                self.note(f"{exc}: {transport.items_label(self.first_index + lo, self.first_index + hi)} "
                          "ran in this process instead")
                self.run_here(lo, hi)
                continue
            try:
                fut = executor.submit(process_worker.run_pickled_chunk, func_key, func_bytes, payload,
                                      self.first_index + lo)
            except BrokenProcessPool:
                return list(todo[k:])
            futures[fut] = (lo, hi)
        return []

    def crashed(self, lo: int, hi: int) -> None:
        """The chunk's worker died: sent again, unless it died too often or the exit stopped it."""
        self.crashes[lo] = self.crashes.get(lo, 0) + 1
        if self.crashes[lo] > MAX_CHUNK_RETRIES or exit_hooks.interpreter_exiting():
            raise worker_lost(self.func, self.first_index + lo, self.first_index + hi, self.crashes[lo]) from None

    def needed(self, lo: int) -> bool:
        """May the chunk starting at ``lo`` still matter (no item before it failed)?"""
        return self.gathered.needed(lo)

    def run_here(self, lo: int, hi: int) -> None:
        out = run_chunk(self.func, self.items[lo:hi], self.first_index + lo, portable_only=False)
        self._keep(lo, out, remote=False)

    def take(self, out: ChunkResult, lo: int, hi: int) -> None:
        """A chunk back from a worker: results that could not travel are computed here
        (``local_fallback``) or are its failure; a failure is kept for :meth:`result`."""
        remote = True
        if not self.local_fallback:  # a failure like any other (the earliest wins), made here
            failed = transport.first_untravelled(out)
            out, remote = failed, failed is out
        elif out.failure is None and self.needed(lo):
            for index, reason in out.untravelled:
                self.note(f"{transport.unpicklable_result(index, reason)}: it ran again in this process")
                local = index - self.first_index
                again = run_chunk(self.func, self.items[local : local + 1], index, portable_only=False)
                if again.failure is not None:
                    out, remote = again, False
                    break
                out.results[index - out.first_index] = again.results[0]
        self._keep(lo, out, remote=remote)

    def _keep(self, lo: int, out: ChunkResult, *, remote: bool) -> None:
        if not self.gathered.take(lo, out, remote=remote):
            for fut in self.gathered.unneeded((f, other) for f, (other, _) in self.futures.items()):
                fut.cancel()  # after the failure: not needed

    def result(self, bounds) -> RunResult:
        """The run's results in order; or its earliest failure, raised."""
        results, compute = self.gathered.results(self.func, bounds)
        return RunResult(results, compute, len(bounds), notes=tuple(self.notes))

"""One run on the process pool: its chunks' outcomes, which item killed a worker, and notes.

When a worker dies, the pool fails every chunk it had handed out, the culprit's
neighbours too: those a worker may have held run again one at a time, so that a death is
their own (:meth:`ProcessJob.after_break`); one that dies alone :data:`MAX_CHUNK_RETRIES`
times is halved down to the item, which fails the run with
:class:`~amorsize_dask.errors.WorkerLostError`. With ``local_fallback``
(``engine="auto"``) items or results that cannot be pickled are computed in this process
instead, with one warning. Of several items that fail, the lowest one's exception is
raised, once every chunk before it is in (:class:`.base.FirstFailure`).

>>> job = ProcessJob(abs, [-1, -2], 0, local_fallback=False, progress=None)
>>> job.run_here(0, 2)
>>> job.result([(0, 2)]).results
[1, 2]
"""

from __future__ import annotations

import signal
from concurrent.futures.process import BrokenProcessPool

from ..errors import WorkerLostError, warn_once
from ..target.workload import function_name
from . import exit_hooks, process_worker, transport
from .base import Gathered, RunResult, assemble
from .chunks import ChunkResult, make_failure, run_chunk

__all__ = ["MAX_CHUNK_RETRIES", "ProcessJob", "worker_lost"]

# A chunk is run again after its worker died at most this many times: one crash may be
# a killed worker (OOM killer, a node going away), repeated crashes are the function's.
MAX_CHUNK_RETRIES = 2


def may_have_held(n_workers: int) -> int:
    """How many of the unfinished chunks, in the order they were sent, a pool of
    ``n_workers`` may have handed to its workers: one running in each, and its call queue
    of ``n_workers + 1`` (``concurrent.futures.process.EXTRA_QUEUED_CALLS``). The chunks
    after them never left this process.

    >>> may_have_held(2)
    5
    """
    return 2 * n_workers + 1


def worker_lost(func, lo: int, hi: int, death: str = "") -> Exception:
    """The error for items ``lo..hi`` (``hi`` exclusive) whose worker process died (how:
    ``death``, :func:`how_workers_died`); when this interpreter's exit stopped the workers,
    the error that says so instead (:mod:`.exit_hooks`).

    >>> str(worker_lost(abs, 3, 4)).startswith("a worker process died while running item 3 of")
    True
    """
    label = transport.items_label(lo, hi)
    if exit_hooks.interpreter_exiting():
        return exit_hooks.exiting_error(label, function_name(func))
    return WorkerLostError(
        f"a worker process died{death} while running {label} of {function_name(func)}; the function "
        "may crash the interpreter (segfault, os._exit, memory); try engine='serial' to see the error"
    )


# Signals that end a process as a crash, the system or a parent ends it: a handler the
# script set is not what is missing then.
_CRASHES = {signal.SIGSEGV, signal.SIGBUS, signal.SIGABRT, signal.SIGILL, signal.SIGFPE, signal.SIGKILL}


def how_workers_died(processes) -> str:
    """How a pool's dead worker ended, for :func:`worker_lost` ("" when none is known). The
    pool then stops the others with SIGTERM: that one is not told. Hunt 21: a timer's
    SIGALRM, whose handler the script set in its main block, ended forkserver workers.

    >>> class Dead:
    ...     exitcode = -signal.SIGALRM
    >>> how_workers_died([Dead()]).startswith(" (killed by SIGALRM: a signal whose handler")
    True
    """
    codes = [p.exitcode for p in processes if p.exitcode not in (None, 0, -signal.SIGTERM)]
    codes.sort(key=lambda code: code > 0)  # a signal first (a forkserver's worker whose status is lost reads 255)
    if not codes:
        return ""
    if codes[0] > 0:
        return f" (exit status {codes[0]})"
    sig = signal.Signals(-codes[0])
    if sig in _CRASHES:
        return f" (killed by {sig.name})"
    return (f" (killed by {sig.name}: a signal whose handler this process set? a worker started by the "
            "forkserver does not have it: set it in the function, or DASK_AMORSIZE__START_METHOD=fork)")


class ProcessJob:
    """One :meth:`ProcessEngine.run`: its finished chunks, its failure and notes."""

    def __init__(self, func, items, first_index: int, local_fallback: bool, progress):
        self.func, self.items, self.first_index = func, items, first_index
        self.local_fallback = local_fallback
        self.gathered = Gathered(first_index, progress)  # its chunks back, its earliest failure
        self.notes: list[str] = []
        self.futures: dict = {}  # of the current round: future -> (lo, hi)
        # The longest a worker took to load the function (its module's import): the
        # workers load it at once, each at its first chunk; a one-time cost of the run.
        self.load_seconds = 0.0
        self.death = ""  # how the latest worker that died ended (:func:`how_workers_died`)

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
            except RuntimeError as exc:
                if not exit_hooks.refused_at_exit(exc):
                    raise
                self._here_at_exit(todo[k:])  # the chunks sent finish on the pool
                return []
            futures[fut] = (lo, hi)
        return []

    def _here_at_exit(self, todo) -> None:
        """The main thread returned while this (non-daemon) thread mapped: its pool takes no
        new work, so the chunks it did not take run here, as ``builtins.map`` would."""
        self.note("the interpreter is exiting (the main thread returned): the items the pool had not "
                  "taken ran in this thread")
        for lo, hi in todo:
            if self.needed(lo):
                self.run_here(lo, hi)

    def after_break(self, lost: list, n_workers: int, run_alone) -> list:
        """The pool broke, failing the chunks ``lost``: those it may have handed to a worker
        run alone, in order (:meth:`isolate`), until the one that kills its worker is found;
        the others are returned, to run again with the rest. ``run_alone(lo, hi)``: False
        when a worker died running only that chunk."""
        lost = sorted(bounds for bounds in lost if self.needed(bounds[0]))
        held = may_have_held(n_workers)
        for lo, hi in lost[:held]:
            if self.needed(lo):
                self.isolate(lo, hi, run_alone, retries=MAX_CHUNK_RETRIES - 1)
        return [bounds for bounds in lost[held:] if self.needed(bounds[0])]

    def isolate(self, lo: int, hi: int, run_alone, retries: int) -> None:
        """Run items ``lo..hi`` alone, again up to ``retries`` times when their worker dies;
        then in halves (a death is now the function's: once each), down to the item that
        kills its worker, the run's failure. Halves that finish keep their results."""
        for _ in range(retries + 1):
            if run_alone(lo, hi):
                return
            if exit_hooks.interpreter_exiting():  # the exit stopped the workers: say so
                raise worker_lost(self.func, self.first_index + lo, self.first_index + hi, self.death) from None
        if hi - lo == 1:
            index = self.first_index + lo
            failure = make_failure(worker_lost(self.func, index, index + 1, self.death), index)
            self._keep(lo, ChunkResult(index, [], 0.0, failure=failure), remote=False)
            return
        mid = (lo + hi) // 2
        self.isolate(lo, mid, run_alone, retries=0)
        if self.needed(mid):
            self.isolate(mid, hi, run_alone, retries=0)

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
        self.load_seconds = max(self.load_seconds, out.load_seconds)
        if self.local_fallback and out.failure is not None and isinstance(out.failure.exception,
                                                                          process_worker.FunctionNotLoaded):
            said = (f"the function could not be loaded in a worker process ({out.failure.exception.cause}): "
                    "its items ran in this process instead")
            if said not in self.notes:
                self.note(said)
            if self.needed(lo):
                self.run_here(lo, hi)
            return
        if not self.local_fallback:
            out = transport.first_untravelled(out)  # a failure like any other: the earliest wins
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

    def outcome(self) -> ChunkResult:
        """The run as one chunk's outcome: its results in order up to its failure, if any."""
        results, compute = assemble(self.gathered.chunks)
        return ChunkResult(self.first_index, results, compute, failure=self.gathered.first.failure)

    def result(self, bounds) -> RunResult:
        """The run's results in order; or its earliest failure, raised."""
        results, compute = self.gathered.results(self.func, bounds)
        return RunResult(results, compute, len(bounds), notes=tuple(self.notes))

"""Dask engine: chunks of items as tasks on a ``distributed`` cluster.

Task keys are ``amorsize-<function>-<run id>-<chunk index>``: the scheduler plugin tells
amorsize's tasks apart by the ``amorsize-`` prefix, and Dask's own per-prefix statistics
(``key_split``: work stealing, occupancy, adaptive scaling, the dashboard) see one
prefix per function, as with ``Client.map``. Each task runs
:func:`~amorsize_dask.engines.chunks.run_packed_chunk` on its worker (small items travel as one
cloudpickle bytes object: :func:`~amorsize_dask.engines.transport.items_for_task`), which measures its own
compute seconds there. A worker that dies mid-run costs nothing: the scheduler runs its
tasks again elsewhere (``distributed.scheduler.allowed-failures``); chunks whose futures
are cancelled (``client.restart()``, a scheduler lost and reconnected) are submitted
again from the items the client still holds.
"""

from __future__ import annotations

import contextlib
import warnings
from typing import NamedTuple

from ..cluster.keys import KEY_PREFIX, key_name, new_run_id, parse_task_key, sample_key, task_key  # noqa: F401
from ..errors import LostTasksError
from ..target.context import off_the_worker_pool
from .base import Engine, Gathered, RunResult, chunk_bounds
from . import transport
from .chunks import ChunkResult, dump_task_result, run_packed_chunk
from .function_parcel import pickles_large

# Rounds of re-submitting chunks whose futures were cancelled under the run (a restart
# cancels every future once; more rounds mean the cluster keeps going away).
MAX_RESUBMITS = 3
# Before chunks are submitted again, the scheduler must answer within this (a restarted
# one answers in milliseconds; a lost one refuses or times out).
REACHABLE_TIMEOUT = "10s"
# While no chunk finishes, whether the scheduler still answers is checked this often (a
# scheduler that went away mid-close may leave futures pending, never cancelled).
WATCH_SECONDS = 5.0


class Placement(NamedTuple):
    """Where a run's chunks go: the workers they are restricted to (None: any), and the
    worker threads the plan counts on."""

    workers: list | None
    slots: int


class DaskEngine(Engine):
    name = "dask"

    def __init__(self, client):
        if client is None:
            raise ValueError(
                "engine='dask' needs a distributed Client: pass client=..., or create one "
                "first (distributed.Client()), or use engine='processes' on this machine"
            )
        self.client = client

    def run(self, func, items, *, n_workers, chunksize, first_index=0, progress=None, run_id=None,
            worker_threads=None):
        """``worker_threads``: the cluster's {worker address: threads} as the plan saw it (asked
        from the scheduler when None)."""
        run_id = run_id or new_run_id()
        bounds = chunk_bounds(len(items), chunksize)
        placement = Placement(restricted_workers(self.client, n_workers, worker_threads), max(1, n_workers or 1))
        gathered = Gathered(first_index, progress)
        todo = list(bounds)
        with off_the_worker_pool():  # inside a task: free its thread while the chunks run
            for attempt in range(MAX_RESUBMITS + 1):
                if attempt:  # the workers chosen may be gone: chunks pinned to them were lost every round
                    placement = placement._replace(workers=restricted_workers(self.client, n_workers))
                keys = [task_key(run_id if attempt == 0 else new_run_id(), i, func) for i in range(len(todo))]
                todo = self._run_round(func, items, todo, keys, first_index, placement, gathered)
                todo = [b for b in todo if gathered.needed(b[0])]
                if not todo:
                    break
                if attempt == MAX_RESUBMITS or not _reachable(self.client):
                    raise LostTasksError.of(todo, first_index, func, attempt + 1)
        results, compute = gathered.results(func, bounds)
        return RunResult(results, compute, len(bounds))

    def _run_round(self, func, items, bounds, keys, first_index, placement, gathered: Gathered) -> list:
        """Submit ``bounds``' chunks and gather them; the bounds whose futures were cancelled.
        A chunk that failed cancels the chunks after it.

        Chunks are gathered as they finish, except the last wave (no more chunks than the
        plan's worker threads): those finish together and are gathered in one trip."""
        workers = placement.workers
        shipped = shipped_function(self.client, func, len(bounds), workers)
        with items_in_the_graph():
            futures = self.client.map(
                run_packed_chunk, [shipped] * len(bounds),
                [transport.items_for_task(items[lo:hi], first_index + lo) for lo, hi in bounds],
                [first_index + lo for lo, _ in bounds], key=keys, pure=False, **placed_on(workers),
            )
        index = {fut.key: b for fut, b in zip(futures, bounds)}
        lost: list = []
        try:
            pending = set(futures)
            while pending:
                done, pending = self._some_done(pending, workers, last_wave=len(pending) <= placement.slots)
                if done is None:  # nothing finished for a while and the scheduler is gone
                    lost += [index[f.key] for f in pending]
                    break
                lost += [index[f.key] for f in done if f.status in ("cancelled", "lost")]
                finished = [f for f in done if f.status == "finished"]
                # Done when waited for, pending again now: its worker died with its result in
                # memory, and the scheduler computes it again (a clean-clone CI run dropped
                # such a chunk: KeyError in assemble, test_killed_worker_loses_no_items).
                pending |= {f for f in done if f.status == "pending"}
                for fut in done:
                    if fut.status == "error":
                        fut.result()  # raises the task's error (not func's: run_packed_chunk caught those)
                # Cancelled meanwhile (a restart): skipped, their result None, lost like the others.
                got = self._gather(finished)
                for fut in finished:
                    out = got.get(fut.key)
                    if out is None:
                        lost.append(index[fut.key])
                        continue
                    out = ChunkResult.from_task_result(out)
                    # Gathered: its result and items no longer pinned on the worker (kept to the
                    # round's end, a worker that died had them all computed again, and paused
                    # workers held every finished chunk's inputs).
                    fut.release()
                    if not gathered.take(index[fut.key][0], out, remote=True):
                        later = gathered.unneeded((f, index[f.key][0]) for f in pending)
                        self.client.cancel(later)
                        pending -= set(later)
        except BaseException:
            self.client.cancel(futures)
            raise
        finally:
            for fut in futures:
                fut.release()
            if shipped is not func:
                shipped.release()
        return sorted(lost)

    def _gather(self, finished: list) -> dict:
        """``{key: ChunkResult}`` of finished futures; those cancelled meanwhile, or all of
        them if the scheduler went away while they travelled, are missing (then lost)."""
        from concurrent.futures import CancelledError

        try:
            return self.client.gather({f.key: f for f in finished}, errors="skip")
        except (OSError, CancelledError):  # CommClosedError is an OSError
            return {}
        except TypeError:  # distributed could not pickle a result (logging why)
            return {f.key: travelled(self.client, f) for f in finished}

    def _some_done(self, pending: set, workers: list | None, last_wave: bool):
        """``(done, not done)`` once some futures are done (all of them, ``last_wave``: one
        gather instead of one per chunk, ~3 ms each on loopback); ``(None, pending)`` if none is
        done for ``WATCH_SECONDS`` and the scheduler no longer answers (its futures may
        never be cancelled then), or a worker they are restricted to has left (they would
        wait for it forever): the caller submits them again."""
        from concurrent.futures import CancelledError

        while True:
            try:
                return wait_for(self.client, list(pending), timeout=WATCH_SECONDS,
                                return_when="ALL_COMPLETED" if last_wave else "FIRST_COMPLETED")
            except CancelledError:  # wait() raises for cancelled futures: sort them out here
                done = {f for f in pending if f.status in ("finished", "error", "cancelled")}
                return done, pending - done
            except TimeoutError:
                if not _reachable(self.client) or (workers and not _all_present(self.client, workers)):
                    return None, pending


def travelled(client, future, pack=dump_task_result):
    """The ChunkResult of a finished ``future`` whose value could not travel from its worker
    (a result that does not pickle), as ``pack`` pickles it there (its results that do not
    pickle left out and named, :func:`.chunks.dump_chunk_result`): failed at the first."""
    packed = client.submit(pack, future, pure=False)
    try:
        return transport.first_untravelled(transport.load_outcome(packed.result()), dask=True)
    finally:
        packed.release()


def result_or_travelled(client, future, pack=dump_task_result):
    """``future.result()``; if its value could not travel back (distributed's TypeError on a
    finished task), :func:`travelled`: a stream's chunk (or a sample) whose result was a lock
    said ``Could not serialize object of type ChunkResult``, naming no item."""
    try:
        with off_the_worker_pool():  # called in a task: its thread may be the one the task needs
            return future.result()
    except TypeError:
        if future.status != "finished":
            raise  # the task's own error
        return travelled(client, future, pack)


@contextlib.contextmanager
def items_in_the_graph():
    """Submitting tasks that carry their items (and a function under 1 MiB) in the graph,
    on purpose: one trip, no scatter round trip. distributed's "Sending large graph"
    warning would tell the user to scatter what this package chose to send."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Sending large graph", category=UserWarning)
        yield


def wait_for(client, futures: list, **kwargs):
    """``distributed.wait`` on ``client``'s futures, whether or not it is the default client
    (``wait`` itself asks ``default_client()``: "No clients found" for a client made with
    ``set_as_default=False``); off the worker's thread pool when called in a task.

    ``kwargs``: ``wait``'s ``timeout`` and ``return_when``."""
    from distributed import wait

    with client.as_current(), off_the_worker_pool():
        return wait(futures, **kwargs)


def shipped_function(client, func, n_tasks: int, workers: list | None = None):
    """``func``, or, when its pickle is large, a future of it on each of ``workers`` (on
    every worker when None; the caller releases it): each task would otherwise carry it (a
    script's function and the 30 MB table it reads: 0.7-1.5 s for 2,000 items of 23 us;
    ``Client.map``, one task per item, filled its workers' memory)."""
    if n_tasks < 2 or not pickles_large(func):
        return func
    return client.scatter(func, broadcast=True, hash=False, workers=workers)


def _all_present(client, workers: list) -> bool:
    try:
        return set(workers) <= set(client.nthreads())
    except Exception:
        return False


def _reachable(client) -> bool:
    """Whether ``client``'s scheduler answers now (after a restart: yes; when lost: no)."""
    if getattr(client, "status", "running") != "running":
        return False
    try:
        client.sync(client.scheduler.identity, callback_timeout=REACHABLE_TIMEOUT)
    except Exception:
        return False
    return getattr(client, "status", "running") == "running"


def placed_on(workers: list | None) -> dict:
    """``Client.submit``'s keywords that run a task on ``workers`` while one of them is
    there, and on any other worker once none is (a loose restriction): chunks pinned to a
    worker that left waited for it, and a stream hung."""
    return {} if workers is None else {"workers": workers, "allow_other_workers": True}


def restricted_workers(client, n_threads: int | None, nthreads: dict | None = None) -> list[str] | None:
    """Worker addresses whose threads add up to ``n_threads`` (fewest workers, most threads
    first), or None for no restriction (every worker is needed, or the shape is unknown).

    ``n_workers`` of a dask plan counts worker threads (the cluster's cores), so with one
    thread per worker it is the number of workers. ``nthreads``: ``client.nthreads()`` as
    the caller knows it (asked when None: one scheduler RPC).
    """
    if not n_threads:
        return None
    if nthreads is None:
        try:
            nthreads = client.nthreads()
        except Exception:
            return None
    if sum(nthreads.values()) <= n_threads:
        return None
    chosen, total = [], 0
    for address, threads in sorted(nthreads.items(), key=lambda kv: (-kv[1], kv[0])):
        if total >= n_threads:
            break
        chosen.append(address)
        total += threads
    return chosen

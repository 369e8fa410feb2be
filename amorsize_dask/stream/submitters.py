"""Where a stream's chunks run: one submitter per engine, each with the same five verbs.

``submit(chunk, first)`` starts a chunk and returns a handle; ``result(handle, chunk,
first)`` waits for its :class:`~amorsize_dask.engines.chunks.ChunkResult`;
``first_done(handles)`` is the position of a finished one (waiting for one if none is);
``cancel(handles)`` drops work not yet started; ``close()`` ends the submitter's use.

>>> s = SerialSubmitter(abs)
>>> s.result(s.submit([-1, -2], 0), [-1, -2], 0).results
[1, 2]
"""

from __future__ import annotations

import concurrent.futures
import uuid
from concurrent.futures.process import BrokenProcessPool

from ..engines import get_engine, shared_engine
from ..engines import exit_hooks, transport
from ..engines.function_parcel import FunctionParcel
from ..engines.chunks import ChunkResult, run_chunk, run_packed_chunk
from ..engines.dask import (items_in_the_graph, placed_on, restricted_workers, result_or_travelled, shipped_function,
                            wait_for)
from ..errors import WorkerLostError
from ..target.workload import function_name

__all__ = ["SerialSubmitter", "ThreadSubmitter", "ProcessSubmitter", "DaskSubmitter", "submitter_for"]


class SerialSubmitter:
    """Runs each chunk here when it is submitted (one in flight: nothing runs ahead)."""

    remote = False

    def __init__(self, call):
        self.call = call

    def submit(self, chunk, first):
        return run_chunk(self.call, chunk, first, portable_only=False)

    def result(self, handle, chunk, first):
        return handle

    def first_done(self, handles) -> int:
        return 0

    def cancel(self, handles) -> None:
        pass

    def close(self) -> None:
        pass


class _FuturesSubmitter:
    """What a submitter whose handles are ``concurrent.futures`` futures does alike."""

    def first_done(self, handles) -> int:
        return _first_done(handles)

    def here_if_refused(self, submit, chunk, first):
        """``submit()``'s future, or the chunk run here at exit (:func:`.exit_hooks.submit_or_run_here`)."""
        return exit_hooks.submit_or_run_here(submit, lambda: run_chunk(self.call, chunk, first, portable_only=False))

    def cancel(self, handles) -> None:
        for fut in handles:
            fut.cancel()

    def close(self) -> None:
        """The stream is done with this submitter."""


class ThreadSubmitter(_FuturesSubmitter):
    """Chunks on this process's pool of ``n_workers`` threads."""

    remote = False

    def __init__(self, call, n_workers: int):
        self.call = call
        self.pool = get_engine("threads").pool(n_workers)

    def submit(self, chunk, first):
        # portable_only=False: a thread is this process, so func's exception is raised as it is.
        return self.here_if_refused(lambda: self.pool.submit(run_chunk, self.call, chunk, first, portable_only=False),
                                    chunk, first)

    def result(self, handle, chunk, first):
        return handle.result()



class ProcessSubmitter(_FuturesSubmitter):
    """Chunks on the shared process pool of ``n_workers`` workers."""

    remote = True

    def __init__(self, func, call, n_workers: int):
        self.func = func
        self.call = call
        self.n_workers = n_workers
        self.engine = shared_engine()
        # The function as it is now, for the whole stream: inherited by a pool forked for
        # it, else pickled once (with each chunk, a script's 30 MB table ran a stream at
        # 2.6x its serial time).
        self.parcel = FunctionParcel.open(self.engine, call, n_workers)

    def submit(self, chunk, first):
        return self.here_if_refused(lambda: self.engine.submit_parcel(self.parcel, chunk, first, self.n_workers),
                                    chunk, first)

    def close(self) -> None:
        self.parcel.__exit__()

    def result(self, handle, chunk, first):
        if getattr(handle, "ran_here", False):
            return handle.result()
        try:
            return self.engine.finish(handle)
        except BrokenProcessPool:  # a worker died: this chunk runs again alone, its death its own
            return self.engine.run_again(self.parcel, chunk, first, self.n_workers)



class DaskSubmitter:
    """Chunks as tasks on the client's cluster, under the function's own key prefix."""

    remote = True

    def __init__(self, func, call, client, n_workers: int):
        self.func = func
        self.call = call
        self.client = client
        self.n_workers = n_workers
        self._workers = restricted_workers(client, n_workers)  # None: any worker
        name = "".join(ch if ch.isalnum() else "_" for ch in function_name(func).rsplit(".", 1)[-1])
        self._prefix = f"amorsize-imap-{name}-{uuid.uuid4().hex[:8]}"
        self._count = 0
        self._shipped = None  # the function, or a future of it on every worker: see submit

    def submit(self, chunk, first):
        if self._shipped is None:  # a large function goes to each worker once, not with every chunk
            self._shipped = shipped_function(self.client, self.call, n_tasks=2, workers=self._workers)
        self._count += 1
        with items_in_the_graph():
            return self.client.submit(run_packed_chunk, self._shipped, transport.items_for_task(chunk, first), first,
                                      key=f"{self._prefix}-{self._count}", pure=False, **placed_on(self._workers))

    def result(self, handle, chunk, first):
        from distributed.client import FutureCancelledError

        try:
            return ChunkResult.from_task_result(result_or_travelled(self.client, handle))
        except FutureCancelledError:
            raise WorkerLostError(
                f"the cluster lost items {first}..{first + len(chunk) - 1} of {function_name(self.func)} "
                "(its scheduler restarted or the task was cancelled); run the stream again"
            ) from None
        finally:
            handle.release()

    def first_done(self, handles) -> int:
        done = [i for i, fut in enumerate(handles) if fut.done()]
        if done:
            return done[0]
        finished = wait_for(self.client, handles, return_when="FIRST_COMPLETED").done
        return next(i for i, fut in enumerate(handles) if fut in finished)

    def cancel(self, handles) -> None:
        if handles:
            self.client.cancel(list(handles))

    def close(self) -> None:
        shipped, self._shipped = self._shipped, None
        if shipped is not None and shipped is not self.call:
            shipped.release()


def _first_done(futures) -> int:
    """Position of a finished future in ``futures``, waiting for the first if none is."""
    for i, fut in enumerate(futures):
        if fut.done():
            return i
    done, _ = concurrent.futures.wait(futures, return_when=concurrent.futures.FIRST_COMPLETED)
    return next(i for i, fut in enumerate(futures) if fut in done)


def submitter_for(planner):
    """The submitter of the planner's current engine."""
    engine = planner.engine
    if engine == "serial":
        return SerialSubmitter(planner.call)
    if engine == "threads":
        return ThreadSubmitter(planner.call, planner.n_workers)
    if engine == "processes":
        return ProcessSubmitter(planner.func, planner.call, planner.n_workers)
    return DaskSubmitter(planner.func, planner.call, planner.client, planner.n_workers)

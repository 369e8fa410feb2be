"""Dask engine: chunks of items as tasks on a ``distributed`` cluster.

Task keys are ``amorsize-<run id>-<chunk index>`` so that the scheduler plugin can tell
amorsize's tasks apart and add up the compute time the workers measured. Each task runs
:func:`~amorsize_dask.engines.chunks.run_chunk` on its worker, which measures its own
compute seconds there. A worker that dies mid-run costs nothing: the scheduler runs its
tasks again elsewhere (``distributed.scheduler.allowed-failures``).
"""

from __future__ import annotations

import uuid
import warnings

from .base import Engine, RunResult, assemble, chunk_bounds, raise_failure
from .chunks import run_chunk

KEY_PREFIX = "amorsize-"


def new_run_id() -> str:
    """A random 16-hex id naming one run's tasks."""
    return uuid.uuid4().hex[:16]


def task_key(run_id: str, index: int) -> str:
    """The key of chunk ``index`` of run ``run_id``.

    >>> task_key("0123456789abcdef", 3)
    'amorsize-0123456789abcdef-3'
    """
    return f"{KEY_PREFIX}{run_id}-{index}"


def parse_task_key(key) -> tuple[str, int] | None:
    """``(run id, chunk index)`` of an amorsize task key, None for any other key.

    >>> parse_task_key("amorsize-0123456789abcdef-3"), parse_task_key(("x", 1))
    (('0123456789abcdef', 3), None)
    """
    if not isinstance(key, str) or not key.startswith(KEY_PREFIX):
        return None
    run_id, _, index = key[len(KEY_PREFIX) :].partition("-")
    if len(run_id) != 16 or not index.isdigit():
        return None
    return run_id, int(index)


class DaskEngine(Engine):
    name = "dask"

    def __init__(self, client):
        if client is None:
            raise ValueError(
                "engine='dask' needs a distributed Client: pass client=..., or create one "
                "first (distributed.Client()), or use engine='processes' on this machine"
            )
        self.client = client

    def run(self, func, items, *, n_workers, chunksize, first_index=0, progress=None, run_id=None):
        from distributed import as_completed

        run_id = run_id or new_run_id()
        bounds = chunk_bounds(len(items), chunksize)
        with warnings.catch_warnings():
            # Items travel inside the graph on purpose: one trip, no scatter round trip.
            warnings.filterwarnings("ignore", message="Sending large graph", category=UserWarning)
            futures = self._submit(func, items, bounds, first_index, run_id)
        index = {fut.key: lo for fut, (lo, _) in zip(futures, bounds)}
        done_chunks = {}
        try:
            for fut, out in as_completed(futures, with_results=True, loop=self.client.loop):
                raise_failure(out.failure, func, remote=True)
                done_chunks[index[fut.key]] = out
                if progress is not None:
                    progress.advance(len(out.results))
        except BaseException:
            self.client.cancel(futures)
            raise
        finally:
            for fut in futures:
                fut.release()
        results, compute = assemble(done_chunks, bounds)
        return RunResult(results, compute, len(bounds))

    def _submit(self, func, items, bounds, first_index, run_id):
        return self.client.map(
            run_chunk,
            [func] * len(bounds),
            [items[lo:hi] for lo, hi in bounds],
            [first_index + lo for lo, _ in bounds],
            key=[task_key(run_id, i) for i in range(len(bounds))],
            pure=False,
        )

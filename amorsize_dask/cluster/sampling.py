"""Sampling on a worker: on a cluster, the first items are timed where ``func`` runs.

As ``Client.map`` does, ``func`` never runs in the client unless the user opts in
(``amorsize.cluster.allow-local`` or ``map(..., allow_local=True)``). The cold planner's
sample is then the first task of the run: it carries the first items to one worker,
which times them with :func:`~amorsize_dask.planning.sampling.sample_items` (the same
budget as in-process) and sends back the profile and the results, which are kept.

>>> head_size([b"x" * 10] * 100, max_items=50, max_bytes=1 << 20)
50
>>> head_size([b"x" * 1000] * 100, max_items=100, max_bytes=4000)
3
"""

from __future__ import annotations

from ..settings import Settings
from ..engines.chunks import ChunkResult, dump_chunk_result, make_failure, portable_failure, without_unpicklable
from ..engines.transport import first_untravelled
from ..planning import pickled
from ..planning.sampling import Sample, sample_items


def sample_on_worker(client, func, items, n_total: int, *, parallelism: tuple[int, int], key: str) -> Sample:
    """Time ``func`` on the first items of ``items`` in one task on a worker (results kept)."""
    from ..engines.base import raise_failure
    from ..engines.dask import items_in_the_graph, result_or_travelled

    settings = Settings.from_config()  # the client's settings: the worker's config may differ
    n = head_size(items, max_items=settings.sample_items, max_bytes=settings.sample_bytes)
    with items_in_the_graph():
        future = client.submit(_sample_task, func, items[:n], n_total, settings, parallelism, key=key, pure=False)
    try:
        answer = result_or_travelled(client, future, pack=_packed_results)
    finally:
        future.release()
    if isinstance(answer, ChunkResult):  # a result the sample's check missed could not travel back
        raise_failure(answer.failure, func, remote=True)
        raise TypeError(f"the sampled results of {n} items could not be returned from a Dask worker")
    sample, failure = answer
    raise_failure(failure, func, remote=True)
    return sample


def _packed_results(answer):
    """On the worker: the sample's results as :func:`.engines.chunks.dump_chunk_result`
    packs them (what does not pickle left out and named)."""
    sample, _ = answer
    return dump_chunk_result(ChunkResult(0, sample.results, 0.0))


def head_size(items, *, max_items: int, max_bytes: int) -> int:
    """Items to send: at most ``max_items``, and about ``max_bytes`` pickled (1 at least)."""
    n = min(len(items), max_items)
    if n <= 1:
        return n
    per_item = max(1, _pickled_size(items[0]))
    return max(1, min(n, max_bytes // per_item))


def _pickled_size(obj) -> int:
    try:
        return max(1, pickled.size(obj))
    except Exception:
        return 1  # it will fail to travel anyway, with dask's own error


def _sample_task(func, head, n_total: int, settings: Settings, parallelism):
    """On the worker: ``(Sample, None)``, or ``(None, Failure)`` when ``func`` raised or
    a result cannot be pickled to travel back (then the first such item is named)."""
    try:
        sample = sample_items(func, head, n_total, probe=False, settings=settings, parallelism=tuple(parallelism))
    except Exception as exc:
        return None, portable_failure(make_failure(exc, _failed_index(exc)))
    if not sample.profile.picklable:
        out = first_untravelled(without_unpicklable(ChunkResult(0, sample.results, 0.0)), dask=True)
        if out.failure is not None:
            return None, out.failure
    return sample, None


def _failed_index(exc: BaseException) -> int:
    """The item index sample_items noted on ``exc`` ("... on item N"), else 0."""
    notes = getattr(exc, "__notes__", [])
    for note in list(notes):
        head, _, tail = note.rpartition(" on item ")
        if head.startswith("amorsize_dask: raised by") and tail.isdigit():
            notes.remove(note)  # the client names the item again when it re-raises
            return int(tail)
    return 0

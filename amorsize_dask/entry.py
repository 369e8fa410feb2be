"""``ad.map``: light to import, so that a short job in a fresh script returns before the
planner and numpy load (:mod:`.planning.head`); the rest is :func:`.mapping.run_map`.

>>> import amorsize_dask as ad
>>> ad.map(lambda x: x * 2, range(5))
[0, 2, 4, 6, 8]
>>> ad.map(str.upper, iter(["a", "b"]))
['A', 'B']
>>> ad.map(pow, [2, 3, 4], [5, 2])
[32, 9]
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

from . import validation
from .planning import head as planning_head

__all__ = ["map"]


def map(
    func: Callable,
    *iterables: Iterable,
    client=None,
    engine: str = "auto",
    n_workers: int | None = None,
    chunksize: int | None = None,
    training_dir=None,
    learn: bool = True,
    progress=False,
    allow_local: bool | None = None,
) -> list:
    """``list(map(func, *iterables))``, run the fastest way this machine or cluster knows.

    Parameters
    ----------
    func : callable of as many arguments as there are iterables.
    *iterables : lists, tuples, ranges, numpy arrays, pandas objects, or any iterables
        (each read once, as ``iter`` reads it); several are zipped, stopping at the shortest.
    client : a ``distributed.Client`` to run on; default: the active one, if any.
    engine : "auto" (choose), "serial", "threads", "processes" or "dask".
    n_workers, chunksize : fix the number of workers / items per task (default: planned).
    training_dir : where measured runs are recorded (default: ``amorsize.training-dir``).
    learn : record this run's measurements (default True; a short job its head finished,
        before the planner loaded, records nothing: :mod:`.planning.head`).
    progress : show a progress bar on a terminal (True), or always on the given stream.
    allow_local : on a cluster, may ``func`` run in this process (sampling, tiny jobs)?
        Default ``amorsize.cluster.allow-local`` (False: only on the workers, as ``Client.map``).

    Returns
    -------
    list : the results, in the order of the items.

    >>> map(abs, [-3, 4, -5], engine="threads")
    [3, 4, 5]
    """
    head = None
    validation.check_progress(progress)
    if planning_head.allowed(engine, client, n_workers, chunksize, progress):  # what run_map checks, but settings
        validation.check_arguments(func, iterables, client=client, engine=engine, n_workers=n_workers,
                                   chunksize=chunksize, training_dir=training_dir)
        validation.check_bool("learn", learn)
        if allow_local is not None:
            validation.check_bool("allow_local", allow_local)
        head = planning_head.run_head(func, iterables)
        if head.done:
            head.close()
            return head.results
    from .mapping import run_map

    try:
        return run_map(func, *iterables, client=client, engine=engine, n_workers=n_workers, chunksize=chunksize,
                       training_dir=training_dir, learn=learn, progress=progress, allow_local=allow_local,
                       head=head).results
    finally:
        if head is not None:
            head.close()  # its clock, had the call failed before its sample took it (hunt 18)

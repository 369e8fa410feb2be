"""What crosses to and from the process engine's workers, and what to say when it cannot.

The function, the items, the results and the exceptions all travel as cloudpickle
bytes: it pickles classes of the caller's ``__main__`` (a script, a notebook) by value,
and a class sent from here comes back as the same class object, so ``isinstance`` and
``except MyError`` behave as with ``builtins.map``. Workers that inherited the run's
function by fork (:mod:`.function_parcel`) get ``__main__``'s classes by name instead
(:mod:`.pickling`).

>>> load_outcome(dump_items([1, 2], 0)) == [1, 2]
True
>>> import cloudpickle
>>> cloudpickle.loads(dump_function(lambda x: x + 1))(1)
2
"""

from __future__ import annotations

import pickle
from dataclasses import replace

import cloudpickle

from ..target.workload import function_name
from .by_value import items_by_value, modules_by_value, registered
from .chunks import ChunkResult, make_failure
from .module_state import with_state
from .pickling import dumps, dumps_function

__all__ = ["dump_function", "dump_items", "items_for_task", "PACK_MAX_BYTES", "load_outcome",
           "unpicklable_items", "unpicklable_result", "first_untravelled", "items_label", "WholeList"]

_REMEDY = "use engine='threads' or engine='serial'"


def dump_function(func) -> bytes:
    """``func`` as cloudpickle bytes (a module's function with the module-level values it
    reads: :mod:`.module_state`; by value when its module was edited since this process
    imported it, or cannot be imported by name: :mod:`.by_value`), or a TypeError that
    names it and the way out."""
    try:
        modules = modules_by_value(func)
        if not modules:
            return dumps_function(with_state(func))
        with registered(modules):
            return dumps_function(func)
    except Exception as exc:
        raise TypeError(
            f"{function_name(func)} cannot be sent to worker processes: {type(exc).__name__}: {exc}; "
            f"{_REMEDY} (or make it picklable)"
        ) from exc


class WholeList(list):
    """A list that ``distributed`` sends as one pickle and that arrives as a plain list.

    distributed serializes a task's result that is exactly a ``list`` element by element
    (``serialize(..., iterate_collection=True)`` for every piece of data it sends): 80,000
    small dicts took 1.9 s to serialize that way and 0.08 s as one pickle (distributed
    2026.8; bench --cluster family bag-read-text). Pickle still sends large buffers of its
    elements (numpy arrays) out of band.

    >>> import pickle
    >>> back = pickle.loads(pickle.dumps(WholeList([1, {"a": 2}])))
    >>> back, type(back) is list
    ([1, {'a': 2}], True)
    """

    __slots__ = ()

    def __reduce__(self):
        return list, (list(self),)


def dump_items(chunk, first_index: int, *, by_name: bool = False) -> bytes:
    """The items of a chunk as cloudpickle bytes, or a TypeError naming the first that
    fails. ``by_name``: for workers that inherited the function (:mod:`.pickling`)."""
    try:
        with registered(items_by_value(chunk)):
            return dumps(chunk, by_name=by_name)
    except Exception as cause:
        raise unpicklable_items(chunk, first_index, cause) from cause


# A Dask task carries its chunk's items as one cloudpickle bytes object when that is at
# most this big: distributed walks a list argument item by item (25,000 ints: 25 ms as a
# list, 11 ms as bytes), but sends large buffers such as numpy arrays out of band, which a
# bytes object is not (bench --cluster payload, 99 arrays of 1 MB: 0.20 s as a list, 1.10 s
# as bytes).
PACK_MAX_BYTES = 1 << 20


def items_for_task(chunk, first_index: int):
    """A chunk's items as a Dask task's argument: cloudpickle bytes, or the list itself
    when its items are large (see :data:`PACK_MAX_BYTES`).

    >>> type(items_for_task([1, 2], 0)).__name__, type(items_for_task([b"x" * PACK_MAX_BYTES], 0)).__name__
    ('bytes', 'list')
    """
    chunk = list(chunk)
    if chunk and _approx_bytes(chunk[0]) * len(chunk) > PACK_MAX_BYTES:
        return chunk
    packed = dump_items(chunk, first_index)
    return packed if len(packed) <= PACK_MAX_BYTES else chunk


def _approx_bytes(item) -> int:
    nbytes = getattr(item, "nbytes", None)
    if isinstance(nbytes, int):
        return nbytes
    try:
        return len(cloudpickle.dumps(item, protocol=pickle.HIGHEST_PROTOCOL))
    except Exception:
        return 0  # dump_items names it


def load_outcome(payload: bytes):
    """A worker's answer (a ``ChunkResult``), as the caller's own objects."""
    return cloudpickle.loads(payload)


def unpicklable_items(chunk, first_index: int, cause: BaseException) -> TypeError:
    """A TypeError naming the first item of ``chunk`` that cannot be pickled."""
    for offset, item in enumerate(chunk):
        try:
            cloudpickle.dumps(item, protocol=pickle.HIGHEST_PROTOCOL)
        except Exception as exc:
            return TypeError(
                f"item {first_index + offset} ({type(item).__name__}) cannot be pickled to send it to a "
                f"worker process: {type(exc).__name__}: {exc}; {_REMEDY}"
            )
    return TypeError(f"items {first_index}..{first_index + len(chunk) - 1} could not be sent to a worker: {cause}")


def unpicklable_result(index: int, reason: str, *, dask: bool = False) -> TypeError:
    """The TypeError for a result that could not be pickled in its worker (a worker
    process, or a Dask worker: ``dask``)."""
    if dask:
        return TypeError(f"the result of item {index} ({reason}) cannot be pickled to return it from a Dask "
                         "worker; return plain data")
    return TypeError(
        f"the result of item {index} ({reason}) cannot be pickled to return it from a worker "
        f"process; return plain data, or {_REMEDY}"
    )


def first_untravelled(out: ChunkResult, *, dask: bool = False) -> ChunkResult:
    """``out`` failed at its first result that could not be pickled in the worker
    (:func:`~.chunks.dump_chunk_result`), if any: its results before that item, and the
    TypeError naming it.

    >>> out = first_untravelled(ChunkResult(4, [1, None, None], 0.0, untravelled=[(5, "lock")]))
    >>> out.results, out.failure.index, type(out.failure.exception).__name__
    ([1], 5, 'TypeError')
    """
    if not out.untravelled:
        return out
    index, reason = min(out.untravelled)
    if out.failure is not None and out.failure.index < index:
        return out
    error = unpicklable_result(index, reason, dask=dask)
    return replace(out, results=out.results[:index - out.first_index], failure=make_failure(error, index),
                   untravelled=[])


def items_label(lo: int, hi: int) -> str:
    """``item 3`` or ``items 3..7`` (``hi`` exclusive).

    >>> items_label(3, 4), items_label(3, 8)
    ('item 3', 'items 3..7')
    """
    return f"item {lo}" if hi - lo == 1 else f"items {lo}..{hi - 1}"

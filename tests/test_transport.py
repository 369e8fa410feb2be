"""``engines.transport``: what crosses to the process engine's workers, and the errors when it cannot."""

import threading

import cloudpickle
import pytest

from amorsize_dask.engines import transport


def test_dump_function_names_the_function_and_the_remedy():
    lock = threading.Lock()
    with pytest.raises(TypeError) as info:
        transport.dump_function(lock.acquire)
    assert "cannot be sent to worker processes" in str(info.value) and "engine='threads'" in str(info.value)
    assert cloudpickle.loads(transport.dump_function(lambda x: x + 1))(1) == 2


def test_dump_items_names_the_first_item_that_cannot_be_pickled():
    with pytest.raises(TypeError) as info:
        transport.dump_items([1, 2, threading.Lock(), threading.Lock()], first_index=20)
    assert str(info.value).startswith("item 22 (lock) cannot be pickled")
    assert transport.load_outcome(transport.dump_items([1, "a"], 0)) == [1, "a"]


def test_unpicklable_result_and_item_labels():
    err = transport.unpicklable_result(4, "generator: TypeError: cannot pickle")
    assert isinstance(err, TypeError) and "item 4" in str(err) and "return plain data" in str(err)
    assert transport.items_label(0, 1) == "item 0" and transport.items_label(5, 9) == "items 5..8"


def test_a_dask_task_carries_small_items_as_bytes_and_large_ones_as_they_are():
    import numpy as np

    from amorsize_dask.engines.chunks import ChunkResult
    from amorsize_dask.engines.chunks import run_packed_chunk as run_task
    from amorsize_dask.engines.transport import PACK_MAX_BYTES, items_for_task

    def run_packed_chunk(func, packed, first):
        return ChunkResult.from_task_result(run_task(func, packed, first))

    small = list(range(25_000))
    sent = items_for_task(small, 0)
    assert isinstance(sent, bytes) and run_packed_chunk(abs, sent, 0).results == small
    arrays = [np.full(131_072, float(i)) for i in range(9)]  # 9 MB: numpy's buffers go out of band
    sent = items_for_task(arrays, 0)
    assert isinstance(sent, list) and len(sent) == 9
    assert run_packed_chunk(float.__abs__, items_for_task([-1.5] * 3, 0), 0).results == [1.5] * 3
    strings = ["x" * 1000] * (PACK_MAX_BYTES // 900)  # many small items, large in all
    assert isinstance(items_for_task(strings, 0), list)


def test_a_whole_list_leaves_a_worker_as_one_pickle_and_arrives_as_a_plain_list():
    from distributed.protocol import deserialize, serialize
    from distributed.protocol.serialize import Serialize

    from amorsize_dask.engines.transport import WholeList

    data = [{"id": i, "tags": ["a", "b"]} for i in range(1000)]
    header, frames = serialize(Serialize(data))  # what a worker does with a task's result
    assert header.get("is-collection")           # a plain list: item by item (why WholeList exists)
    header, frames = serialize(Serialize(WholeList(data)))
    assert not header.get("is-collection")
    back = deserialize(header, frames)
    assert back == data and type(back) is list

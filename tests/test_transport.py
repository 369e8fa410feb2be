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
    assert not transport.function_travels(lock.acquire)
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

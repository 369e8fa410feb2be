"""``engines.chunks``: what every engine's task runs, and what of it crosses back from a worker."""

import pickle
import threading

import cloudpickle

from amorsize_dask.engines.chunks import ChunkResult, dump_chunk_result, identity, make_failure, run_chunk


class NeedsTwoArgs(Exception):
    """Unpickles only by state: its ``__init__`` takes other arguments than its ``args``."""

    def __init__(self, a, b):
        super().__init__(f"{a}-{b}")
        self.b = b


class HoldsALock(Exception):
    """Cannot travel at all: an attribute that does not pickle."""

    def __init__(self, message):
        super().__init__(message)
        self.lock = threading.Lock()


def fail_at_three(x):
    if x == 3:
        raise ValueError(f"no {x}")
    return x * 2


def lock_at_three(x):
    if x == 3:
        raise HoldsALock("1-2")
    return x


def two_args_at_three(x):
    if x == 3:
        raise NeedsTwoArgs(1, 2)
    return x


def test_run_chunk_stops_at_the_first_failure_and_names_its_index():
    out = run_chunk(fail_at_three, [1, 2, 3, 4], first_index=10)
    assert out.first_index == 10 and out.results == [2, 4]
    assert (out.failure.index, out.failure.type_name, out.failure.message) == (12, "ValueError", "no 3")
    assert isinstance(out.failure.exception, ValueError)
    assert "fail_at_three" in out.failure.traceback_text and "raise ValueError" in out.failure.traceback_text


def test_an_exception_that_cannot_travel_is_dropped_only_when_asked():
    portable = run_chunk(lock_at_three, [3], 0)                      # transports using plain pickle
    assert portable.failure.exception is None and portable.failure.message == "1-2"
    kept = run_chunk(lock_at_three, [3], 0, portable_only=False)     # in-process engines
    assert isinstance(kept.failure.exception, HoldsALock)
    assert isinstance(make_failure(NeedsTwoArgs(1, 2), 5).exception, NeedsTwoArgs)


def test_an_exception_whose_init_takes_other_arguments_travels_by_state():
    """``pickle`` rebuilds an exception by calling its class with ``args``: a class whose
    ``__init__`` takes ``(a, b)`` then fails; by state it comes back as itself."""
    portable = run_chunk(two_args_at_three, [3], 0)
    back = pickle.loads(pickle.dumps(portable.failure.exception))
    assert type(back) is NeedsTwoArgs and back.args == ("1-2",) and back.b == 2
    failed = run_chunk(two_args_at_three, [0, 3], 0, portable_only=False)
    back = cloudpickle.loads(dump_chunk_result(failed)).failure.exception
    assert type(back) is NeedsTwoArgs and back.b == 2


def test_dump_chunk_result_keeps_what_travels_and_says_what_does_not():
    back = cloudpickle.loads(dump_chunk_result(ChunkResult(7, [1, threading.Lock(), "x"], 0.5)))
    assert back.results == [1, None, "x"] and back.compute_seconds == 0.5
    assert [index for index, _ in back.untravelled] == [8] and "lock" in back.untravelled[0][1]
    failed = run_chunk(lock_at_three, [0, 3], 0, portable_only=False)
    back = cloudpickle.loads(dump_chunk_result(failed))
    assert back.results == [0] and back.failure.exception is None and back.failure.index == 1


def test_identity_is_the_no_op():
    marker = object()
    assert identity(marker) is marker


def test_a_chunk_result_survives_plain_pickle():
    out = run_chunk(fail_at_three, [1, 3], 0)
    back = pickle.loads(pickle.dumps(out))
    assert back.results == [2] and back.failure.index == 1 and isinstance(back.failure.exception, ValueError)

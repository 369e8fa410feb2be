"""``imap`` over inputs that misbehave as real ones do: a generator that raises partway,
an input that arrives slowly. As ``builtins.map`` (and ``Pool.imap``): the results of the
items read before an input error are delivered, then the error; results flow while a
slow input is still arriving."""

import itertools
import os
import time

import pytest

import amorsize_dask as ad


class InputBroke(Exception):
    pass


def items_then_error(n):
    yield from range(n)
    raise InputBroke(f"after {n}")


def double(x):
    return 2 * x


def spin_double(x):
    t0 = time.perf_counter()
    while time.perf_counter() - t0 < 1e-4:
        pass
    return 2 * x


def _consume(iterator):
    got = []
    try:
        for value in iterator:
            got.append(value)
    except InputBroke as exc:
        return got, exc
    return got, None


@pytest.mark.parametrize("engine", ["auto", "serial", "threads", "processes"])
def test_an_input_error_comes_after_the_results_of_the_items_before_it(engine, tmp_path):
    got, error = _consume(ad.imap(double, items_then_error(5), engine=engine, training_dir=tmp_path))
    assert got == [0, 2, 4, 6, 8] and str(error) == "after 5"


@pytest.mark.parametrize("engine", ["auto", "serial", "threads", "processes"])
def test_several_iterables_read_the_longer_ones_as_far_as_builtins_map(engine, tmp_path):
    """``map(add, gen, range(5))`` reads ``gen``'s sixth item and stops; the stream read a
    seventh (its zip was asked again after it ended), which a caller reading on lost."""
    for short in (range(5), range(0)):
        expected_gen, gen = iter(range(100)), iter(range(100))
        expected = list(map(int.__add__, expected_gen, short))
        assert list(ad.imap(int.__add__, gen, short, engine=engine, training_dir=tmp_path)) == expected
        assert next(gen) == next(expected_gen)


@pytest.mark.parametrize("ordered", [True, False])
@pytest.mark.parametrize("engine", ["serial", "processes"])
def test_an_input_error_after_the_sample_loses_no_result(engine, ordered, tmp_path):
    """The error comes while chunks are in flight (past the ~0.05 s sample of 0.1 ms items)."""
    got, error = _consume(ad.imap(spin_double, items_then_error(3000), engine=engine, ordered=ordered,
                                  training_dir=tmp_path))
    assert sorted(got) == [2 * x for x in range(3000)] and str(error) == "after 3000"


def slowly_arriving(seconds):
    for i in itertools.count():
        time.sleep(seconds)
        yield i


def test_results_flow_while_a_slow_input_arrives(tmp_path):
    """1 us items arriving every 10 ms: before, the stream read 1,484 items in 15 s and
    yielded none (its sample waited for 0.05 s of the function's own work)."""
    stream = ad.imap(double, slowly_arriving(0.01), training_dir=tmp_path)
    t0 = time.perf_counter()
    first = list(itertools.islice(stream, 20))
    elapsed = time.perf_counter() - t0
    stream.close()
    assert first == [2 * i for i in range(20)]
    assert elapsed < 5.0, elapsed  # 20 items arrive in ~0.2 s; the stall never ended


DAEMON_HEAD = """
import itertools, json, threading, time
import amorsize_dask as ad

def slowish(x):
    s = 0
    for i in range(20000):
        s += i
    return s
"""

DAEMON_MAIN = """
def consume():
    for _ in ad.imap(slowish, itertools.count(), engine="processes"):
        pass

threading.Thread(target=consume, daemon=True).start()
time.sleep(2.0)
stream = ad.imap(slowish, itertools.count(), engine="processes")  # and one abandoned here
for _ in range(500):
    next(stream)
print(json.dumps({"main": "ends"}))
"""


def test_a_stream_still_running_at_exit_is_not_reported_as_a_dead_worker(tmp_path):
    """A daemon thread's endless stream on processes when the script ends: its pool is
    stopped by the exit, which is not a worker dying (``WorkerLostError`` said the function
    may crash the interpreter)."""
    from .test_user_scripts import run_script

    out, proc = run_script(tmp_path, DAEMON_HEAD, DAEMON_MAIN)
    assert out == {"main": "ends"}
    assert "WorkerLostError" not in proc.stderr, proc.stderr[-2000:]


EXCEPTIONS_ON_THREADS = """
import json, socket, time
import amorsize_dask as ad

class APIError(Exception):  # as requests.HTTPError: it holds a live connection
    def __init__(self, msg, conn):
        super().__init__(msg)
        self.conn = conn

def make_fetch():
    class Throttled(Exception):  # a class of the factory's own
        pass
    def fetch(x):
        time.sleep(0.001)
        if x == 150:
            raise Throttled(f"rate limited on {x}")
        return x
    return fetch, Throttled

def fetch_api(x):
    time.sleep(0.001)
    if x == 150:
        raise APIError(f"HTTP 503 for item {x}", socket.socket())
    return x
"""

EXCEPTIONS_ON_THREADS_MAIN = """
fetch, Throttled = make_fetch()
caught = {}
for name, func, expected in [("local class", fetch, Throttled), ("unpicklable", fetch_api, APIError)]:
    try:
        list(ad.imap(func, range(300), engine="threads"))
    except expected as exc:
        caught[name] = str(exc)
    except Exception as exc:
        caught[name] = f"not caught: {type(exc).__name__}: {exc}"
print(json.dumps(caught))
"""


def test_imap_on_threads_raises_the_functions_own_exception(tmp_path):
    """A thread runs in this process: ``imap`` raises what ``func`` raised, as ``map`` does,
    even when it cannot be pickled (a class made in a function, one holding a socket): it
    came back as the library's ItemError, which ``except Throttled`` missed."""
    from .test_user_scripts import run_script

    env = {**os.environ, "DASK_AMORSIZE__TRAINING_DIR": str(tmp_path / "training")}
    out, _ = run_script(tmp_path, EXCEPTIONS_ON_THREADS, EXCEPTIONS_ON_THREADS_MAIN, env=env)
    assert out == {"local class": "rate limited on 150", "unpicklable": "HTTP 503 for item 150"}

"""A script's function that reads module-level data (a lookup table, a loaded model).

cloudpickle sends a function of ``__main__`` by value, with every global it reads: a
30 MB table travelled with the function to every chunk, and the first call of such a
script took 7x its serial time where ``Pool().map`` (fork: the workers read their own
copy) took 0.7x. A pool forked for the call holds the function as the caller has it
then, so nothing of it is pickled; a pool that was already running gets it by value, as
it is now (the table may have changed since the workers forked).

Each script counts how often its table is pickled (its ``__reduce__``).
"""

import os
import time

import pytest

from tests.test_user_scripts import run_script

HEAD = """
import json, sys
import amorsize_dask as ad
from amorsize_dask.mapping import run_map

ENGINE = sys.argv[1]
SIZE = int(sys.argv[2]) if len(sys.argv) > 2 else 1000  # entries of the table (pickled ~11 B each)
PICKLED = []

class Table(dict):
    '''A lookup table that counts how often it is pickled.'''
    def __reduce__(self):
        PICKLED.append(1)
        return (Table, (dict(self),))

TABLE = Table((i, i * i) for i in range(SIZE))

def lookup(x):
    acc = 0
    for i in range(2000):
        acc += i
    return TABLE[x % 1000] + acc

def run(func, items):
    fixed = {} if ENGINE == "auto" else {"n_workers": 2, "chunksize": 10}
    return run_map(func, items, engine=ENGINE, learn=False, **fixed)
"""

MAIN = """
from amorsize_dask.planning import overheads
items = list(range(300))
acc = sum(range(2000))
out = {}
first = run(lookup, items)
overheads.join_background()  # a first calibration of this machine uses the pool meanwhile
out["first"] = [first.plan.engine, first.results == [x % 1000 * (x % 1000) + acc for x in items], len(PICKLED)]
TABLE[7] = -acc  # the caller's data changes after the pool forked ...
def lookup(x):  # ... and so does the function (a notebook cell run again)
    acc = 1
    for i in range(2000):
        acc += i
    return TABLE[x % 1000] + acc
del PICKLED[:]
again = run(lookup, items)
overheads.join_background()
expected = [(-acc if x % 1000 == 7 else x % 1000 * (x % 1000)) + acc + 1 for x in items]
out["again"] = [again.plan.engine, again.results == expected, len(PICKLED)]
TABLE[8] = 0
del PICKLED[:]
third = run(lookup, items)
expected = [acc + 1 if x % 1000 == 8 else e for x, e in zip(items, expected)]
out["third"] = [third.plan.engine, third.results == expected, len(PICKLED)]
print(json.dumps(out))
"""


@pytest.mark.parametrize("engine", ["processes", "auto"])
def test_a_pool_forked_for_the_call_reads_the_script_s_data_unpickled(tmp_path, engine):
    out, _ = run_script(tmp_path, HEAD, MAIN, force_processes=engine == "auto", args=[engine])
    assert out["first"] == ["processes", True, 0], out  # planner and engine pickled nothing of it


@pytest.mark.parametrize("engine", ["processes", "auto"])
def test_a_running_pool_gets_the_function_and_its_data_as_they_are_now(tmp_path, engine):
    out, _ = run_script(tmp_path, HEAD, MAIN, force_processes=engine == "auto", args=[engine])
    engine_used, correct, pickled = out["again"]
    assert (engine_used, correct) == ("processes", True), out
    assert pickled == 1, out  # once for the whole call, not once per chunk or per check


def test_a_medium_table_whose_copying_is_costed_is_still_pickled_once_per_call(tmp_path):
    # 30k entries: ~1.7 MB of objects (the plan costs the workers' copying), a ~0.3 MB pickle.
    out, _ = run_script(tmp_path, HEAD, MAIN, force_processes=True, args=["auto", 30_000])
    assert out["again"] == ["processes", True, 1], out  # not pickled again to learn it is not large
    assert out["third"] == ["processes", True, 1], out


@pytest.mark.parametrize("engine", ["processes", "auto"])
def test_a_large_function_is_inherited_by_a_pool_forked_again_unpickled(tmp_path, engine):
    out, _ = run_script(tmp_path, HEAD, MAIN, force_processes=engine == "auto",
                        args=[engine, 200_000])  # a table of ~11 MB of entries, pickled > 1 MiB
    assert out["first"] == ["processes", True, 0], out
    # Estimated large (a notebook cell run again: its new function is never pickled to find
    # out, 76-138 ms of planning for a 30 MB table): the idle pool forks again.
    assert out["again"] == ["processes", True, 0], out
    assert out["third"] == ["processes", True, 0], out


BUFFERS_HEAD = HEAD.replace("TABLE = Table((i, i * i) for i in range(SIZE))",
                            "TABLE = Table((i, bytes(100_000)) for i in range(20))  # read, never copied")
BUFFERS_MAIN = """
items = list(range(300))
out = {}
for call in ("first", "again", "third"):
    del PICKLED[:]
    def lookup(x):  # a new function each time: a notebook cell run again
        return len(TABLE[x % 20]) + x
    done = run(lookup, items)
    out[call] = [done.plan.engine, done.results == [100_000 + x for x in items], len(PICKLED)]
print(json.dumps(out))
"""


def test_a_function_estimated_small_but_pickled_large_is_pickled_once_to_find_out(tmp_path):
    out, _ = run_script(tmp_path, BUFFERS_HEAD, BUFFERS_MAIN, args=["processes"])  # 2 MB of buffers
    assert out["first"] == ["processes", True, 0], out  # a pool forked for the call
    assert out["again"] == ["processes", True, 1], out  # pickled, found large: the idle pool forks again
    assert out["third"] == ["processes", True, 1], out  # each new function once


def test_the_forkserver_gets_the_function_by_value(tmp_path):
    env = dict(os.environ, DASK_AMORSIZE__START_METHOD="forkserver")
    out, _ = run_script(tmp_path, HEAD, MAIN, args=["processes"], env=env)
    assert out["first"] == ["processes", True, 1], out
    assert out["again"] == ["processes", True, 1], out
    assert out["third"] == ["processes", True, 1], out


LOCKED = """
import json, sys, threading
import amorsize_dask as ad
from amorsize_dask.mapping import run_map
from amorsize_dask.engines import shared_engine

LOCK = threading.Lock()  # cannot be pickled: neither can a function that reads it

def locked(x):
    acc = 0
    for i in range(2000):
        acc += i
    with LOCK:
        return x * 2

def run(items):
    return run_map(locked, items, engine="processes", n_workers=2, chunksize=10, learn=False)

out = {"first": run(list(range(100))).results == [2 * x for x in range(100)]}
pool = shared_engine().pool(2)
out["again"] = run(list(range(50))).results == [2 * x for x in range(50)]  # the running pool forks again
out["forked_again"] = shared_engine().pool(2) is not pool
print(json.dumps(out))
"""


def test_a_function_that_cannot_be_pickled_runs_on_forked_workers_as_pool_map_runs_it(tmp_path):
    out, _ = run_script(tmp_path, LOCKED, "", guard=False)
    assert out == {"first": True, "again": True, "forked_again": True}


# --- on a Dask cluster: the function travels by value, once to each worker ---------------
CLIENT_PICKLES: list = []


class CountedTable(dict):
    """A table that counts how often this process pickles it."""

    def __reduce__(self):
        CLIENT_PICKLES.append(1)
        return (CountedTable, (dict(self),))


def test_a_large_function_travels_to_each_cluster_worker_once(client):
    import amorsize_dask as ad

    table = CountedTable((i, i * i) for i in range(200_000))  # pickled: > 1 MiB

    def lookup(x):  # a closure: cloudpickle sends it, and the table, by value
        return table[x % 1000] + 1

    del CLIENT_PICKLES[:]
    out = ad.map(lookup, range(300), client=client, engine="dask", n_workers=2, chunksize=10, learn=False)
    assert out == [x % 1000 * (x % 1000) + 1 for x in range(300)]
    assert len(CLIENT_PICKLES) <= 2, len(CLIENT_PICKLES)  # not once per task (30 tasks)


STREAM_MAIN = """
import os
from amorsize_dask.planning import overheads
from amorsize_dask.engines import shared_engine
items = list(range(3000))
acc = sum(range(2000))

def where(x):
    return lookup(x), os.getpid()

def stream():
    out = list(ad.imap(where, items, engine="processes", n_workers=2, chunksize=10, learn=False))
    return [value for value, _ in out], len({pid for _, pid in out} - {os.getpid()})

values, workers = stream()
out = {"first": [values == [x % 1000 * (x % 1000) + acc for x in items], workers, len(PICKLED)]}
overheads.join_background()
TABLE[7] = -acc
shared_engine().pool(2)  # running before the stream starts
del PICKLED[:]
values, workers = stream()
out["again"] = [values == [(-acc if x % 1000 == 7 else x % 1000 * (x % 1000)) + acc for x in items], workers,
                len(PICKLED)]
print(json.dumps(out))
"""


def test_a_stream_sends_its_function_once_not_with_every_chunk(tmp_path):
    out, _ = run_script(tmp_path, HEAD, STREAM_MAIN, args=["processes"])
    assert out["first"] == [True, 2, 0], out  # chunks on a pool forked for the stream: inherited
    # A running pool: pickled for the stream planner's check and once for its chunks.
    correct, workers, pickled = out["again"]
    assert correct and workers == 2 and pickled <= 2, out


def test_a_large_function_streams_to_each_cluster_worker_once(client):
    import amorsize_dask as ad

    table = CountedTable((i, i * i) for i in range(200_000))  # pickled: > 1 MiB

    def lookup(x):
        return table[x % 1000] + 1

    del CLIENT_PICKLES[:]
    out = list(ad.imap(lookup, range(300), client=client, engine="dask", n_workers=2, chunksize=10, learn=False))
    assert out == [x % 1000 * (x % 1000) + 1 for x in range(300)]
    # The stream planner's check and its sample task, the size check, then once for every
    # worker (a scatter): not with each of 30 chunks (63 pickles before).
    assert len(CLIENT_PICKLES) <= 4, len(CLIENT_PICKLES)
    deadline = time.monotonic() + 10  # releases reach the scheduler asynchronously
    while any("lookup" in key or key.startswith("function-") for key in client.who_has()):
        assert time.monotonic() < deadline, client.who_has()  # nothing of the stream stays on the cluster
        time.sleep(0.05)

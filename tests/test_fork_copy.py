"""A forked worker copies the pages of the caller's objects its function reads.

Reading a Python object writes its reference count, so each worker of a forked pool
copies every page of the caller's objects it touches: a script whose function reads a
30 MB module-level table (bench --fresh big-global) spent 20-30 ms per worker on that,
which the sample, timed in the caller, cannot see. The planner counts it with the pool's
start; :func:`copied_bytes` estimates it from what the function refers to.
"""

import functools
import os
import sys
import time

import numpy as np
import pandas as pd
import pytest

from amorsize_dask.engines.fork_copy import SAMPLED_ELEMENTS, copied_bytes
from tests.test_user_scripts import run_script

TABLE = {i: str(i) * 3 for i in range(50_000)}
EXACT = sum(sys.getsizeof(k) + sys.getsizeof(v) for k, v in TABLE.items())


def reads_table(x):
    return len(TABLE[x])


def calls_a_reader(x):
    return reads_table(x) + 1


def test_a_module_table_is_estimated_from_its_entries():
    assert 0.7 * EXACT < copied_bytes(reads_table) < 1.3 * EXACT
    assert 0.7 * EXACT < copied_bytes(calls_a_reader) < 1.3 * EXACT  # through the function it calls


class Index:
    def __init__(self, table):
        self.table = table

    def score(self, x):
        return len(self.table[x])

    def __call__(self, x):
        return self.score(x)


def _with_default(x, table=TABLE):
    return table[x]


def _closure():
    table = TABLE
    return lambda x: table[x]


@pytest.mark.parametrize("make", [
    lambda: Index(TABLE).score,                      # a bound method of an instance holding it
    lambda: Index(TABLE),                            # a callable instance
    lambda: functools.partial(dict.get, TABLE),      # a partial's argument
    lambda: _with_default,                           # a default
    _closure,                                        # a closure cell
])
def test_every_way_a_function_holds_data_is_followed(make):
    assert 0.7 * EXACT < copied_bytes(make()) < 1.3 * EXACT


ARRAY = np.ones(10_000_000)  # 80 MB of data that reading never writes
FRAME = pd.DataFrame({"n": np.arange(200_000), "f": np.ones(200_000)})
TEXT = pd.DataFrame({"n": np.arange(200_000), "s": [str(i) for i in range(200_000)]})
OBJECTS = np.array([str(i) for i in range(200_000)], dtype=object)
STRINGS = sum(sys.getsizeof(str(i)) for i in range(200_000))


def reads_arrays(x):
    return ARRAY[x] + FRAME.n[x]


def test_numbers_in_arrays_count_a_header_only():
    assert copied_bytes(reads_arrays) <= 2 * 4096
    long_text = "x" * 10_000_000
    assert copied_bytes(lambda x: long_text[x]) <= 4096


@pytest.mark.parametrize("make", [lambda: TEXT, lambda: TEXT["s"], lambda: OBJECTS])
def test_python_objects_in_arrays_and_frames_count(make):
    data = make()
    t0 = time.perf_counter()
    estimate = copied_bytes(lambda x: data[x])
    assert time.perf_counter() - t0 < 0.05  # sampled (~1 ms): TEXT.__sizeof__ walks its 200k strings (~55 ms)
    assert 0.7 * STRINGS < estimate < 1.3 * STRINGS + 3 * 4096


def test_functions_reading_nothing_of_the_caller_copy_nothing():
    assert copied_bytes(len) == 0
    assert copied_bytes(lambda x: x * 2) == 0
    assert copied_bytes(np.sqrt) == 0


class Hostile:
    def __getattr__(self, name):
        raise RuntimeError("no attributes here")

    def __sizeof__(self):
        raise RuntimeError("no size either")


def test_cycles_and_hostile_objects_end_the_walk_without_raising():
    loop = []
    loop.append(loop)
    assert copied_bytes(lambda x: loop[x]) > 0
    hostile = Hostile()
    assert copied_bytes(lambda x: hostile) == 0  # an estimate: never fails the user's map


class Sized:
    """An element that counts how often its size is asked."""

    asked = 0

    def __sizeof__(self):
        Sized.asked += 1
        return 64


def test_a_long_container_is_sampled():
    """A long container's elements are sampled, not all read (it was timed: < 50 ms, which
    a clean-clone CI run read at 188 ms); the estimate still scales to the whole."""
    big = [[float(j) for j in range(50)] for _ in range(20_000)]
    estimate = copied_bytes(lambda x: big[x])
    exact = sum(sys.getsizeof(v) for row in big for v in row) + sum(min(sys.getsizeof(r), 4096) for r in big)
    assert 0.7 * exact < estimate < 1.3 * exact
    many = [Sized() for _ in range(20_000)]
    Sized.asked = 0
    copied_bytes(lambda x: many[x])
    assert 0 < Sized.asked <= 2 * SAMPLED_ELEMENTS


# --- a script, as users run it ------------------------------------------------------------
SCRIPT_HEAD = """
import json, sys
import amorsize_dask as ad
from amorsize_dask.mapping import run_map

SIZE = int(sys.argv[1])
TABLE = {i: str(i) * 3 for i in range(SIZE)}

def lookup(x):
    acc = 0
    for i in range(50):
        acc += len(TABLE[(x * 31 + i) % SIZE])
    return acc
"""

SCRIPT_MAIN = """
from amorsize_dask.planning import overheads
items = list(range(int(sys.argv[3])))
first = run_map(lookup, items, engine=sys.argv[2], learn=False)
overheads.join_background()  # a first calibration of this machine: the next pool may fork again
again = run_map(lookup, items, engine=sys.argv[2], learn=False)
expected = [lookup(x) for x in items]
print(json.dumps({"ok": first.results == expected == again.results,
                  "reasons": [list(first.plan.reasons), list(again.plan.reasons)]}))
"""


def _copy_reasons(reasons):
    return [r for r in reasons if "forked worker copies" in r]


def test_a_script_reading_a_large_table_is_planned_with_the_workers_copy(tmp_path):
    out, _ = run_script(tmp_path, SCRIPT_HEAD, SCRIPT_MAIN, args=[300_000, "auto", 60_000])
    assert out["ok"]
    first, again = (_copy_reasons(r) for r in out["reasons"])
    assert first and "MiB" in first[0], out["reasons"][0]
    # The second call: the function is known to be large, so an idle pool forks again for it.
    assert again and "MiB" in again[0], out["reasons"][1]


def test_a_script_reading_a_small_table_is_not(tmp_path):
    out, _ = run_script(tmp_path, SCRIPT_HEAD, SCRIPT_MAIN, args=[100, "auto", 60_000])
    assert out["ok"]
    assert not any(_copy_reasons(r) for r in out["reasons"]), out["reasons"]


MODEL_MAIN = """
from amorsize_dask.engines import get_engine, shared_engine
from amorsize_dask.planning import overheads
from amorsize_dask.target.target import Target
here = Target.local(lookup)  # this machine's overheads measured (once), and no pool left running
overheads.get(here.fingerprint.id, lambda: overheads.measure_local(shared_engine(), get_engine("threads"), here.cores))
shared_engine().shutdown()
out = run_map(lookup, list(range(int(sys.argv[2]))), engine="auto")
print(json.dumps({"ok": out.results == [lookup(x) for x in range(int(sys.argv[2]))],
                  "plan": [out.plan.engine, out.plan.source, list(out.plan.reasons)]}))
"""


def test_the_model_does_not_explore_a_pool_whose_workers_would_copy_more_than_it_saves(tmp_path):
    # ~80 MB of the caller's objects: ~80 ms of copying per worker, for ~100 ms of work.
    env = {**os.environ, "DASK_AMORSIZE__TRAINING_DIR": str(tmp_path / "training")}
    plans = []
    for _ in range(5):  # a script run again and again, each time a fresh process
        out, _ = run_script(tmp_path, SCRIPT_HEAD, MODEL_MAIN, args=[1_000_000, 15_000], env=env)
        assert out["ok"]
        plans.append(out["plan"])
    assert all(plan[0] != "processes" for plan in plans), plans


def test_a_wide_deep_object_graph_is_walked_within_a_budget():
    from amorsize_dask.engines import fork_copy

    # 32 x 32 x 32 small lists of 8 floats: 32k containers, none long enough to be sampled.
    tree = [[[[float(i * j * k + m) for m in range(8)] for k in range(32)] for j in range(32)] for i in range(32)]
    walk = fork_copy._Walk()
    estimate = walk.callable(lambda x: tree[x], 0)
    assert walk.visits <= fork_copy.MAX_VISITS
    assert estimate > 0


def test_what_a_pickle_carries_leaves_out_functions_pickled_by_name():
    # reads_table lives in an importable module: cloudpickle sends its name, not TABLE.
    assert copied_bytes(reads_table, pickled_only=True) == 0 < copied_bytes(reads_table)
    script = {"TABLE": TABLE, "__name__": "__main__"}  # the same function in a script
    exec("def reads(x):\n    return len(TABLE[x])\n", script)
    assert copied_bytes(script["reads"], pickled_only=True) == copied_bytes(script["reads"]) > 0.7 * EXACT
    assert copied_bytes(Index(TABLE).score, pickled_only=True) > 0.7 * EXACT  # the instance travels by value

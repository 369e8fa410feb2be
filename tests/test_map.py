"""``map`` behaves like ``list(builtins.map(func, items))`` on every engine and input kind."""

import builtins
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import amorsize_dask as ad
from tests.helpers.funcs import CallLog, DieOnce, fail_on_seven, read_calls, square, worker_pid

ENGINES = ["serial", "threads", "processes"]


@pytest.mark.parametrize("engine", ENGINES + ["auto"])
def test_same_results_as_builtin_map(engine):
    items = list(range(-50, 50))
    assert ad.map(square, items, engine=engine) == [x * x for x in items]


@settings(max_examples=25, deadline=None)
@given(
    items=st.lists(st.integers(-(10**6), 10**6), max_size=60),
    engine=st.sampled_from(ENGINES + ["auto"]),
    chunksize=st.one_of(st.none(), st.integers(1, 8)),
)
def test_equivalence_property(items, engine, chunksize):
    kwargs = {"chunksize": chunksize, "n_workers": 2} if chunksize and engine != "auto" else {}
    assert ad.map(square, items, engine=engine, **kwargs) == list(builtins.map(square, items))


def test_lambdas_and_closures_travel_to_processes():
    k = 3
    assert ad.map(lambda x: x * k, range(10), engine="processes", n_workers=2, chunksize=3) == [
        x * 3 for x in range(10)
    ]


@pytest.mark.parametrize(
    "make_items",
    [
        lambda: [1, 2, 3],
        lambda: (1, 2, 3),
        lambda: range(1, 4),
        lambda: np.arange(1, 4),
        lambda: iter([1, 2, 3]),
        lambda: (x for x in [1, 2, 3]),
        lambda: {1: "a", 2: "b", 3: "c"},
    ],
    ids=["list", "tuple", "range", "ndarray", "iterator", "generator", "dict"],
)
@pytest.mark.parametrize("engine", ENGINES)
def test_input_kinds(make_items, engine):
    expected = list(builtins.map(square, make_items()))
    assert ad.map(square, make_items(), engine=engine) == expected


def test_two_dimensional_array_maps_rows():
    a = np.arange(12).reshape(4, 3)
    out = ad.map(np.sum, a, engine="processes", n_workers=2, chunksize=1)
    assert out == [np.sum(row) for row in a]


def test_string_maps_characters():
    assert ad.map(str.upper, "abc") == ["A", "B", "C"]


def test_generator_consumed_once(tmp_path):
    consumed = []

    def gen():
        for i in range(20):
            consumed.append(i)
            yield i

    assert ad.map(square, gen()) == [i * i for i in range(20)]
    assert consumed == list(range(20))


def test_generator_that_raises_halfway():
    def gen():
        yield 1
        yield 2
        raise RuntimeError("source broke")

    with pytest.raises(RuntimeError, match="source broke"):
        ad.map(square, gen())


def test_empty_input_starts_nothing():
    code = textwrap.dedent(
        """
        import multiprocessing, amorsize_dask as ad
        from amorsize_dask.engines import processes
        assert ad.map(abs, []) == []
        assert ad.map(abs, iter([])) == []
        assert processes._ENGINE is None or not processes._ENGINE._pools
        assert multiprocessing.active_children() == []
        print("ok")
        """
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=os.getcwd())
    assert out.stdout.strip() == "ok", out.stderr


@pytest.mark.parametrize("engine", ENGINES + ["auto"])
def test_no_item_computed_twice(tmp_path, engine):
    log = tmp_path / "calls.txt"
    items = list(range(300))
    assert ad.map(CallLog(log), items, engine=engine) == [x * x for x in items]
    assert sorted(read_calls(log)) == items


@pytest.mark.parametrize("engine", ENGINES)
def test_exception_names_item_and_keeps_type(engine):
    with pytest.raises(ValueError, match="seven is bad") as info:
        ad.map(fail_on_seven, range(20), engine=engine, n_workers=2, chunksize=3)
    notes = "\n".join(getattr(info.value, "__notes__", []))
    assert "item 7" in notes and "fail_on_seven" in notes
    assert ("original traceback" in notes) == (engine == "processes")   # only a worker's is shown


def _pool_pids():
    from amorsize_dask.engines import shared_engine

    return set(shared_engine().pool(2)._processes)


def test_pool_reused_across_calls_and_after_an_error():
    first = set(ad.map(worker_pid, range(8), engine="processes", n_workers=2, chunksize=1))
    pool_pids = _pool_pids()
    with pytest.raises(ValueError):
        ad.map(fail_on_seven, range(20), engine="processes", n_workers=2, chunksize=1)
    second = set(ad.map(worker_pid, range(8), engine="processes", n_workers=2, chunksize=1))
    assert os.getpid() not in first
    assert first | second <= pool_pids == _pool_pids()  # no new worker processes were started


def test_unpicklable_result_names_the_item():
    import threading

    def make_lock(x):
        return threading.Lock() if x == 3 else x

    with pytest.raises(TypeError, match="item 3"):
        ad.map(make_lock, range(6), engine="processes", n_workers=2, chunksize=2)


def test_dead_worker_loses_no_items(tmp_path):
    func = DieOnce(tmp_path / "died", item=13)
    items = list(range(40))
    assert ad.map(func, items, engine="processes", n_workers=2, chunksize=4) == [x * 10 for x in items]
    assert (tmp_path / "died").exists()

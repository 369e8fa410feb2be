"""``ad.map`` iterates and zips exactly as ``builtins.map`` does (issue 10, cases 5 and 8).

Inputs are real pandas and numpy objects; user code runs as a script under ``__main__``.
"""

import builtins
import json
import operator
import os
import subprocess
import sys
import textwrap

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import amorsize_dask as ad
from tests.helpers.funcs import square

ENGINES = ["serial", "threads", "processes", "auto"]


def ident(x):
    return x


def add3(a, b, c=0):
    return a + b + c


# -- case 5: iterate as iter(obj) does --------------------------------------------------------
INPUTS = {
    "series-int-index": lambda: pd.Series([10, 20, 30, 40, 50], index=[4, 3, 2, 1, 0]),
    "series-dup-index": lambda: pd.Series([1.5, 2.5, 3.5], index=[1, 1, 0]),
    "series-str-index": lambda: pd.Series([1, 2, 3], index=["a", "b", "c"]),
    "dataframe": lambda: pd.DataFrame({"x": [1, 2], "y": [3, 4], "z": [5, 6]}),
    "index": lambda: pd.Index([7, 8, 9], name="n"),
    "ndarray-2d": lambda: np.arange(12).reshape(4, 3),
    "dict": lambda: {"b": 1, "a": 2, "c": 3},
    "set": lambda: {3, 1, 2},
    "str": lambda: "hello",
    "bytes": lambda: b"abc",
    "list-subclass": lambda: _Reversed([1, 2, 3]),
}


class _Reversed(list):
    """A list whose iteration is not its indexing."""

    def __iter__(self):
        return reversed(list(super().__iter__()))


def _same(a, b):
    return [np.asarray(x).tolist() for x in a] == [np.asarray(x).tolist() for x in b]


@pytest.mark.parametrize("name", sorted(INPUTS))
@pytest.mark.parametrize("engine", ENGINES)
def test_inputs_iterate_as_iter_does(name, engine, tmp_path):
    make = INPUTS[name]
    expected = list(builtins.map(ident, make()))
    got = ad.map(ident, make(), engine=engine, training_dir=tmp_path)
    assert _same(got, expected), (got, expected)


class Drain:
    """An iterable that hands its items over once per ``__iter__`` (a queue drained, a
    cursor's query, a paginated API client): ``builtins.map`` calls ``iter`` once."""

    def __init__(self, items):
        self.items, self.calls = list(items), 0

    def __iter__(self):
        self.calls += 1
        items, self.items = self.items, []
        return iter(items)


@pytest.mark.parametrize("engine", ENGINES)
def test_an_iterable_is_iterated_once_as_builtins_map_does(engine, tmp_path):
    """Validation called ``iter`` and threw the iterator away: ``ad.map`` and ``ad.imap``
    returned [] for a draining iterable, on every engine."""
    for mapper in (ad.map, lambda *a, **k: list(ad.imap(*a, **k))):
        drain = Drain(range(5))
        assert mapper(square, drain, engine=engine, training_dir=tmp_path) == [0, 1, 4, 9, 16]
        assert drain.calls == 1
        drains = Drain(range(5)), Drain(range(3))
        assert mapper(operator.add, *drains, engine=engine, training_dir=tmp_path) == [0, 2, 4]
        assert [d.calls for d in drains] == [1, 1]


def _breaks_at_5():
    for i in range(10):
        if i == 5:
            raise ValueError("input broke at 5")
        yield i


def _fails_on(bad):
    def func(x):
        if x == bad:
            raise KeyError(x)
        return x
    return func


@pytest.mark.parametrize("engine", ENGINES)
def test_an_input_that_raises_fails_as_builtins_map_does(engine, tmp_path):
    """``builtins.map`` calls the function on each item as it reads it: a function failing
    on item 2 raises before the generator breaks at 5; one failing on nothing read yet
    lets the generator's error through. ``ad.map`` read the whole generator first and
    raised its ValueError either way, without calling the function."""
    kw = dict(engine=engine, training_dir=tmp_path)
    with pytest.raises(KeyError):
        ad.map(_fails_on(2), _breaks_at_5(), **kw)
    with pytest.raises(ValueError, match="input broke at 5"):
        ad.map(_fails_on(7), _breaks_at_5(), **kw)
    with pytest.raises(KeyError):
        ad.map(lambda x, y: _fails_on(2)(x), _breaks_at_5(), range(10), **kw)


@pytest.mark.parametrize("engine", ["processes", "threads"])
def test_series_with_fixed_chunks(engine):
    s = pd.Series(range(40), index=range(100, 60, -1))
    got = ad.map(square, s, engine=engine, n_workers=2, chunksize=3, learn=False)
    assert got == [x * x for x in range(40)]


def test_pandas_in_a_script(tmp_path):
    script = tmp_path / "user.py"
    script.write_text(textwrap.dedent("""
        import pandas as pd
        import amorsize_dask as ad

        if __name__ == "__main__":  # unguarded scripts: issue 10 case 2, tested elsewhere
            s = pd.Series([5, 6, 7], index=["x", "y", "z"])
            df = pd.DataFrame({"b": [1], "a": [2]})
            for engine in ("serial", "threads", "processes", "auto"):
                assert ad.map(lambda v: v + 1, s, engine=engine) == [6, 7, 8], engine
                assert ad.map(str.upper, df, engine=engine) == ["B", "A"], engine
            print("ok")
    """))
    out = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=120,
                         cwd=tmp_path)
    assert out.returncode == 0 and out.stdout.strip() == "ok", out.stderr


GROWING_LIST = """
import json, sys, time
import amorsize_dask as ad

items = list(range(3000))

def grow(x):  # appends to the list being mapped, as some users' functions do
    if x % 1000 == 1:
        items.append(-x)
    end = time.perf_counter() + float(sys.argv[2])
    while time.perf_counter() < end:
        pass
    return x

if __name__ == "__main__":
    out = ad.map(grow, items, engine=sys.argv[1])
    print(json.dumps({"same": out == list(range(3000)), "n": len(out)}))
"""


@pytest.mark.parametrize("engine,seconds", [("auto", 0), ("auto", 2e-4), ("serial", 0), ("threads", 0),
                                            ("processes", 0)])
def test_a_list_the_function_appends_to_maps_the_items_it_held_at_the_call(tmp_path, engine, seconds):
    """As ``Pool().map`` and ``Client.map``: a worker process appends to its own copy. It
    mapped the items the caller's appends added while the call ran in this process (its
    head; threads), not the workers' (3,001 results of 3,003 in one run), and its record
    was refused ("plan.chunksize ... got -5": hunt 18)."""
    script = tmp_path / "user.py"
    script.write_text(GROWING_LIST)
    env = {**os.environ, "DASK_AMORSIZE__TRAINING_DIR": str(tmp_path / "training")}
    done = subprocess.run([sys.executable, str(script), engine, str(seconds)], capture_output=True, text=True,
                          timeout=120, cwd=tmp_path, env=env)
    assert done.returncode == 0, done.stderr[-3000:]
    assert json.loads(done.stdout.strip().splitlines()[-1]) == {"same": True, "n": 3000}
    assert "refused" not in done.stderr and "chunksize" not in done.stderr, done.stderr[-3000:]


# -- case 8: several iterables, zero iterables, plan leaves iterators usable ------------------
@pytest.mark.parametrize("engine", ENGINES)
def test_several_iterables_stop_at_the_shortest(engine, tmp_path):
    xs, ys = list(range(2, 30)), [2, 3, 1] * 5
    assert ad.map(pow, xs, ys, engine=engine, training_dir=tmp_path) == list(builtins.map(pow, xs, ys))
    gen = (x for x in range(100))
    assert ad.map(add3, gen, range(5), [1] * 7, engine=engine, learn=False) == [1, 3, 5, 7, 9]
    assert next(gen) == 6  # as builtins.map: the shortest ends the walk after one extra read


def test_several_iterables_errors_name_the_function_and_item():
    with pytest.raises(ZeroDivisionError) as info:
        ad.map(operator.truediv, [1, 2, 3], [1, 0, 1], engine="processes", n_workers=2, chunksize=1)
    assert "operator.truediv on item 1" in "".join(info.value.__notes__)


def test_zero_iterables_is_a_type_error_like_map():
    with pytest.raises(TypeError):
        builtins.map(abs)
    with pytest.raises(TypeError, match="at least one iterable"):
        ad.map(abs)
    with pytest.raises(TypeError, match="at least one iterable"):
        ad.plan(abs)


def test_several_iterables_keep_the_function_workload(tmp_path):
    from amorsize_dask.target.workload import workload_key

    ad.map(pow, [1, 2, 3], [2, 2, 2], training_dir=tmp_path)
    records = ad.TrainingStore(tmp_path).records()
    assert [r["workload"] for r in records] == [workload_key(pow)]
    assert records[0]["function"] == "builtins.pow"


def test_star_wrapper_pickles_by_value():
    import cloudpickle

    from amorsize_dask.inputs import StarCall

    k = 5
    call = cloudpickle.loads(cloudpickle.dumps(StarCall(lambda a, b: a * b + k)))
    assert call((2, 3)) == 11


@pytest.mark.parametrize("make", [lambda: (x for x in range(50)), lambda: iter(range(50)),
                                  lambda: builtins.map(abs, range(50))])
def test_plan_leaves_a_one_shot_iterator_unread(make, tmp_path):
    items = make()
    p = ad.plan(square, items, training_dir=tmp_path)
    assert "unread" in p.explain()
    assert ad.map(square, items, training_dir=tmp_path) == [x * x for x in range(50)]


def test_plan_of_several_sized_iterables_counts_the_shortest(tmp_path):
    p = ad.plan(pow, range(100), [2] * 40, training_dir=tmp_path)
    assert p.n_items == 40


# -- the property: ad.map(f, *its) == list(map(f, *its)) ---------------------------------------
KINDS = ["list", "tuple", "range", "generator", "iterator", "ndarray"]


def _build(kind, values):
    if kind == "range":
        return range(len(values))
    if kind == "tuple":
        return tuple(values)
    if kind == "generator":
        return (v for v in values)
    if kind == "iterator":
        return iter(values)
    if kind == "ndarray":
        return np.array(values, dtype=np.int64)
    return list(values)


def _combine(*args):
    return sum((i + 1) * int(a) for i, a in enumerate(args))


@settings(max_examples=40, deadline=None)
@given(
    specs=st.lists(st.tuples(st.sampled_from(KINDS), st.lists(st.integers(-1000, 1000), max_size=40)),
                   min_size=1, max_size=3),
    engine=st.sampled_from(["serial", "threads", "auto", "processes"]),
)
def test_map_equals_builtin_map(specs, engine):
    kwargs = {"n_workers": 2, "chunksize": 4} if engine == "processes" else {}
    expected = list(builtins.map(_combine, *[_build(k, v) for k, v in specs]))
    got = ad.map(_combine, *[_build(k, v) for k, v in specs], engine=engine, learn=False, **kwargs)
    assert got == expected


def test_several_iterables_on_a_cluster(tmp_path):
    from distributed import Client

    from tests.helpers.cluster import local_cluster

    with local_cluster() as cluster, Client(cluster) as client:
        xs, ys = list(range(30)), [3, 1] * 10
        got = ad.map(pow, xs, ys, client=client, engine="dask", chunksize=4, training_dir=tmp_path)
        assert got == list(builtins.map(pow, xs, ys))
        s = pd.Series([1, 2, 3], index=["a", "b", "c"])
        assert ad.map(square, s, client=client, training_dir=tmp_path) == [1, 4, 9]


SEEDED_RANDOM = """
import json, random, sys
import numpy as np
import amorsize_dask as ad

def draw(x):
    return float(np.random.random()), random.random()

if __name__ == "__main__":
    np.random.seed(42)
    random.seed(42)
    out = ad.map(draw, range(400), engine="processes", n_workers=2, chunksize=50)
    print(json.dumps({"numpy": len({a for a, _ in out}), "random": len({b for _, b in out})}))
"""


def test_worker_processes_draw_different_random_numbers(tmp_path):
    """A forked worker inherits numpy's global random state: after ``np.random.seed(42)``
    the two workers drew the same numbers (204 distinct of 400; ``Pool().map`` too). Each
    worker's is seeded afresh, as Python reseeds ``random`` in a forked child: distinct
    numbers, not the caller's sequence (``builtins.map``'s), which only one process can draw
    (hunt 21)."""
    script = tmp_path / "user.py"
    script.write_text(SEEDED_RANDOM)
    env = {**os.environ, "DASK_AMORSIZE__TRAINING_DIR": str(tmp_path / "training")}
    done = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=120, cwd=tmp_path,
                          env=env)
    assert done.returncode == 0, done.stderr[-3000:]
    assert json.loads(done.stdout.strip().splitlines()[-1]) == {"numpy": 400, "random": 400}

"""``inputs``: the items of a call are what ``iter`` yields, as ``builtins.map`` reads them."""

import builtins

import cloudpickle
import numpy as np
import pandas as pd
import pytest

from amorsize_dask.inputs import StarCall, as_sequence, is_one_shot, length_hint, prepare


class MyList(list):
    def __getitem__(self, i):   # a subclass whose indexing is not its iteration
        return "indexed"


def add3(a, b, c):
    return a + b + c


def test_positional_sequences_are_used_as_they_are():
    for seq in ([1, 2], (1, 2), range(5), "abc", b"ab", np.arange(4), np.ones((3, 2))):
        assert as_sequence(seq) is seq


def test_everything_else_is_read_once_in_iteration_order():
    s = pd.Series([10, 20, 30], index=[2, 0, 1])
    assert as_sequence(s) == [10, 20, 30]                        # values, not s[0] by label
    assert as_sequence(pd.DataFrame({"a": [1], "b": [2]})) == ["a", "b"]   # column labels
    assert as_sequence({"x": 1, "y": 2}) == ["x", "y"]
    assert as_sequence(MyList([1, 2])) == [1, 2] and type(as_sequence(MyList([1, 2]))) is list
    assert as_sequence({3}) == [3]
    gen = (x * x for x in range(3))
    assert as_sequence(gen) == [0, 1, 4] and list(gen) == []


def test_a_zero_dimensional_array_is_not_iterable_as_for_builtins_map():
    with pytest.raises(TypeError, match="0-d array"):
        list(builtins.map(abs, np.array(5)))
    with pytest.raises(TypeError, match="0-d array"):
        as_sequence(np.array(5))


def test_one_shot_iterators_are_told_from_reusable_iterables():
    assert is_one_shot(iter([1])) and is_one_shot(x for x in []) and is_one_shot(builtins.map(abs, [1]))
    assert not is_one_shot([1]) and not is_one_shot(pd.Series([1])) and not is_one_shot(range(2))


def test_length_hint_is_the_shortest_or_zero_when_unknown():
    assert length_hint(([1, 2, 3], range(10))) == 3
    assert length_hint(([1, 2, 3], (x for x in range(10)))) == 0
    assert length_hint(()) == 0


def test_several_iterables_stop_at_the_shortest_as_builtins_map():
    xs, ys, zs = [1, 2, 3, 4], iter([10, 20, 30]), range(100, 102)
    call, items, _ = prepare(add3, (xs, ys, zs))
    assert [call(args) for args in items] == list(builtins.map(add3, [1, 2, 3, 4], [10, 20, 30], range(100, 102)))
    one, seq, _ = prepare(abs, ([-1, -2],))
    assert one is abs and seq == [-1, -2]


def test_star_call_reads_and_travels_as_its_function():
    call = StarCall(add3)
    assert (call.__module__, call.__qualname__, call.__name__) == (__name__, "add3", "add3")
    back = cloudpickle.loads(cloudpickle.dumps(call))
    assert back((1, 2, 3)) == 6 and back.__qualname__ == "add3" and repr(back).startswith("StarCall(<function add3")
    lam = StarCall(lambda a, b: a * b)
    assert cloudpickle.loads(cloudpickle.dumps(lam))((3, 4)) == 12 and lam.__name__ == "<lambda>"

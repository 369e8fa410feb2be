"""``cluster.keys``: task keys the plugin parses back, one Dask prefix per function."""

import functools

from dask.utils import key_split
from hypothesis import given, settings
from hypothesis import strategies as st

from amorsize_dask.cluster import keys


def transform_v2_final(x):
    return x


class Callable3D:
    def __call__(self, x):
        return x


@settings(max_examples=100, deadline=None)
@given(index=st.integers(0, 10**9), name=st.text(min_size=1, max_size=40))
def test_a_task_key_parses_back_to_its_run_and_chunk(index, name):
    def func(x):
        return x

    func.__name__ = name
    run_id = keys.new_run_id()
    key = keys.task_key(run_id, index, func)
    assert keys.parse_task_key(key) == (run_id, index)
    assert key_split(key) == "amorsize-" + keys.key_name(func)   # Dask's per-prefix statistics


def test_run_ids_are_sixteen_hex_digits_never_all_letters():
    ids = {keys.new_run_id() for _ in range(2000)}
    assert len(ids) == 2000
    assert all(len(i) == 16 and set(i) <= set("0123456789abcdef") and not i.isalpha() for i in ids)


def test_key_names_keep_the_letters_of_the_functions_name():
    assert keys.key_name(transform_v2_final) == "transform-v-final"
    # "callable": 8 letters from a-f on, which Dask's key_split would drop as a hash
    assert keys.key_name(Callable3D()) == "callablex-d"
    assert key_split(keys.task_key(keys.new_run_id(), 0, Callable3D())) == "amorsize-callablex-d"
    assert keys.key_name(functools.partial(transform_v2_final)) == "partial"
    assert keys.key_name(None) == "func"


def test_other_keys_are_not_amorsizes():
    run_id = keys.new_run_id()
    for key in [("amorsize-f", 1), f"square-{run_id}-3", f"amorsize-f-{run_id}-x", "amorsize-f-abc-3",
                keys.sample_key(abs), b"amorsize-f-0123456789abcdef-1"]:
        assert keys.parse_task_key(key) is None, key
    assert keys.sample_key(abs).startswith("amorsize-abs-") and keys.sample_key(abs).endswith("-sample")

"""``validation``: each check passes good values through and names the bad value and the remedy."""

import io
import pathlib

import pytest

import amorsize_dask as ad
from amorsize_dask import validation as v


@pytest.mark.parametrize("engine", v.ENGINE_CHOICES)
def test_known_engines_pass(engine):
    assert v.check_engine(engine) == engine


@pytest.mark.parametrize("bad,error,words", [
    (lambda: v.check_func(42), TypeError, ["func must be callable", "int 42", "amorsize_dask.map(abs"]),
    (lambda: v.check_engine("GPU"), ValueError, ["engine='GPU'", "'processes'"]),
    (lambda: v.check_positive_int("n_workers", 2.5, "or None"), TypeError, ["n_workers=2.5", "float", "or None"]),
    (lambda: v.check_positive_int("chunksize", True, "or None"), TypeError, ["chunksize=True", "bool"]),
    (lambda: v.check_positive_int("chunksize", -3, "or None"), ValueError, ["chunksize=-3", ">= 1"]),
    (lambda: v.check_iterable(5), TypeError, ["items must be iterable", "int 5", "generator"]),
    (lambda: v.check_iterables(([1], 3)), TypeError, ["items must be iterable", "int 3"]),
    (lambda: v.check_progress("yes"), TypeError, ["progress='yes'", "sys.stderr"]),
    (lambda: v.check_training_dir(3.0), TypeError, ["training_dir=3.0", "os.PathLike", "amorsize.training-dir"]),
    (lambda: v.check_client("tcp://host:8786"), TypeError, ["client='tcp://host:8786'", "Client(address)"]),
    (lambda: v.check_bool("learn", 1), TypeError, ["learn=1", "True or False"]),
])
def test_bad_values_are_named_with_the_remedy(bad, error, words):
    with pytest.raises(error) as info:
        bad()
    for word in words:
        assert word in str(info.value)


def test_good_values_pass_through_unchanged(tmp_path):
    stream = io.StringIO()
    assert v.check_func(abs) is abs
    assert v.check_positive_int("n_workers", None, "") is None
    assert v.check_positive_int("n_workers", 3, "") == 3
    assert v.check_iterable("ab") == "ab"            # a string is iterable, as for builtins.map
    assert v.check_progress(stream) is stream and v.check_progress(None) is None and v.check_progress(True)
    assert v.check_training_dir(tmp_path) == tmp_path and v.check_training_dir(str(tmp_path)) == str(tmp_path)
    assert v.check_training_dir(pathlib.PurePath("x")) == pathlib.PurePath("x")
    assert v.check_client(None) is None and v.check_bool("learn", False) is False


def test_a_long_value_is_shortened_in_the_message():
    with pytest.raises(TypeError) as info:
        v.check_func("x" * 10_000)
    assert len(str(info.value)) < 300 and "..." in str(info.value)


def test_check_call_returns_the_checked_sizes_and_stops_at_the_first_bad_argument():
    assert v.check_call(abs, ([1], [2]), client=None, engine="threads", n_workers=2, chunksize=None,
                        training_dir=None) == (2, None)
    with pytest.raises(ValueError, match="n_workers=0"):
        v.check_call(abs, ([1],), client=None, engine="auto", n_workers=0, chunksize=None, training_dir=None)


def test_the_public_entry_points_check_before_reading_any_item(tmp_path):
    read = []

    def items():
        read.append(1)
        yield 1

    for call in (ad.map, ad.plan, ad.imap):
        with pytest.raises(ValueError, match="chunksize=0"):
            out = call(abs, items(), chunksize=0, training_dir=tmp_path)
            list(out)
    assert read == []

"""The record schema: what validate_record accepts, rejects and returns."""

import copy
import importlib.util
import json
import math
import pathlib
import sys
import time

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

ROOT = pathlib.Path(__file__).resolve().parents[1]
if importlib.util.find_spec("amorsize_dask") is None:  # not installed: test this checkout
    sys.path.insert(0, str(ROOT))

from amorsize_dask.learning import records, schema
from amorsize_dask.learning.records import (ENGINES, SCHEMA_VERSION, SOURCES, FutureSchemaError,
                                   RecordError, make_record, validate_record)


def good(**overrides):
    rec = {
        "schema": 1, "time": 1764139678.2, "fingerprint": "a1b2c3d4e5f6a7b8",
        "fingerprint_fields": {"cores": 2, "cpu_model": "AMD EPYC", "mem": 8e9, "gil": True},
        "workload": "0123456789abcdef", "function": "mymodule.work",
        "features": {"n_items": 2000, "item_seconds": 0.001, "item_cv": 0.1,
                     "bytes_in": 28.0, "bytes_out": 28.0, "cpu_ratio": 0.98,
                     "thread_speedup": 1.0},
        "plan": {"engine": "processes", "n_workers": 2, "chunksize": 50, "source": "sample"},
        "wall_seconds": 1.23, "compute_seconds": 2.3, "predicted_seconds": 1.1,
    }
    rec.update(overrides)
    return rec


def test_valid_record_round_trips_unchanged():
    rec = good()
    assert validate_record(rec) == rec
    assert validate_record(rec) is not rec
    assert json.loads(json.dumps(validate_record(rec))) == rec


def test_constants():
    assert SCHEMA_VERSION == 1
    assert ENGINES == {"serial", "threads", "processes", "dask"}
    assert SOURCES == {"model", "sample", "default", "explore"}  # what the planner produces
    assert issubclass(FutureSchemaError, RecordError) and issubclass(RecordError, ValueError)


def test_make_record_defaults_time_to_now_and_is_valid():
    before = time.time()
    rec = make_record(fingerprint="0" * 16, fingerprint_fields={}, workload="f" * 16,
                      function="f", features={"n_items": 0}, engine="serial", n_workers=1,
                      chunksize=1, source="default", wall_seconds=0.1, compute_seconds=0)
    assert rec["predicted_seconds"] is None
    assert isinstance(rec["time"], float) and before <= rec["time"] <= time.time()
    assert validate_record(rec) == rec


def test_unknown_top_level_keys_dropped_and_id_kept():
    rec = validate_record(good(extra={"x": 1}, id="00112233aabbccdd"))
    assert "extra" not in rec
    assert rec["id"] == "00112233aabbccdd"


@pytest.mark.parametrize("field, value", [
    ("schema", 0), ("schema", True), ("schema", "1"), ("schema", 1.0),
    ("time", float("nan")), ("time", float("inf")), ("time", "now"), ("time", True),
    ("fingerprint", "A1B2C3D4E5F6A7B8"), ("fingerprint", "a1b2"), ("fingerprint", 12),
    ("workload", "xyz"), ("function", "a\nb"), ("function", "x" * 201), ("function", 3),
    ("fingerprint_fields", []), ("fingerprint_fields", {"k": None}),
    ("fingerprint_fields", {"k": [1]}), ("fingerprint_fields", {"k": "x" * 201}),
    ("fingerprint_fields", {"k" * 65: 1}), ("fingerprint_fields", {str(i): i for i in range(33)}),
    ("fingerprint_fields", {"k": float("inf")}),
    ("features", {"item_seconds": 1.0}), ("features", {"n_items": 1.0}),
    ("features", {"n_items": True}), ("features", {"n_items": -1}),
    ("features", {"n_items": 1, "x": -0.5}), ("features", {"n_items": 1, "x": "a"}),
    ("features", {"n_items": 1, "x": float("nan")}), ("features", {"n_items": 10**30}),
    ("time", -(10**400)),
    ("plan", {"engine": "gpu", "n_workers": 1, "chunksize": 1, "source": "model"}),
    ("plan", {"engine": "serial", "n_workers": 0, "chunksize": 1, "source": "model"}),
    ("plan", {"engine": "serial", "n_workers": True, "chunksize": 1, "source": "model"}),
    ("plan", {"engine": "serial", "n_workers": 1, "chunksize": 2.0, "source": "model"}),
    ("plan", {"engine": "serial", "n_workers": 1, "chunksize": 1, "source": "guess"}),
    ("plan", {"engine": ["serial"], "n_workers": 1, "chunksize": 1, "source": "model"}),
    ("plan", {"engine": "serial", "n_workers": 1, "chunksize": 1}),
    ("wall_seconds", 0), ("wall_seconds", -1.0), ("wall_seconds", None),
    ("compute_seconds", -0.1), ("compute_seconds", float("-inf")),
    ("predicted_seconds", -1), ("predicted_seconds", float("nan")), ("predicted_seconds", "1"),
    ("id", "short"), ("id", "0123456789ABCDEF"),
])
def test_rejects_bad_field_naming_field_and_value(field, value):
    with pytest.raises(RecordError) as info:
        validate_record(good(**{field: value}))
    assert not isinstance(info.value, FutureSchemaError)
    assert field in str(info.value)


def test_rejects_unprintably_huge_ints():
    huge = 10**5000
    for field, value in [("time", huge), ("features", {"n_items": huge}),
                         ("fingerprint_fields", {"k": -huge})]:
        with pytest.raises(RecordError, match="bits"):
            validate_record(good(**{field: value}))


@pytest.mark.parametrize("missing", ["schema", "time", "fingerprint", "fingerprint_fields",
                                     "workload", "function", "features", "plan",
                                     "wall_seconds", "compute_seconds"])
def test_rejects_missing_field(missing):
    rec = good()
    del rec[missing]
    with pytest.raises(RecordError, match=missing):
        validate_record(rec)


@pytest.mark.parametrize("obj", [None, [], "record", 1, float("nan")])
def test_rejects_non_dict(obj):
    with pytest.raises(RecordError):
        validate_record(obj)


def test_future_schema_is_distinct():
    with pytest.raises(FutureSchemaError, match="schema"):
        validate_record(good(schema=2))
    with pytest.raises(FutureSchemaError):
        validate_record({"schema": 99})        # other fields unknown in the future


def test_error_message_shows_bad_value_bounded():
    with pytest.raises(RecordError, match=r"'wall_seconds'.*nan"):
        validate_record(good(wall_seconds=float("nan")))
    with pytest.raises(RecordError) as info:
        validate_record(good(function="x" * 100_000))
    assert len(str(info.value)) < 300
    nested = []
    for _ in range(50_000):
        nested = [nested]
    with pytest.raises(RecordError):
        validate_record(good(function=nested))


def test_numpy_numbers_are_converted_and_uppercase_workload_normalized():
    rec = validate_record(good(
        features={"n_items": np.int64(5), "x": np.float32(0.5)},
        plan={"engine": "dask", "n_workers": np.int64(3), "chunksize": 7, "source": "model"},
        wall_seconds=np.float64(2.0), workload="0123456789ABCDEF"))
    assert type(rec["features"]["n_items"]) is int and type(rec["features"]["x"]) is float
    assert type(rec["plan"]["n_workers"]) is int
    assert rec["workload"] == "0123456789abcdef"
    assert json.loads(json.dumps(rec)) == rec
    with pytest.raises(RecordError):
        validate_record(good(features={"n_items": np.bool_(True)}))


def test_int_time_becomes_float_and_input_not_mutated():
    rec = good(time=5)
    before = copy.deepcopy(rec)
    assert type(validate_record(rec)["time"]) is float
    assert rec == before


# -- the inline fast path must agree with the full path -----------------------------
TRICKY = [True, False, 0, 1, -1, 0.0, -0.0, 1.5, -2.5, float("nan"), float("inf"), None,
          "", "x", "a" * 201, [], {}, 2**63, 2**63 - 1, -(2**63), "0123456789abcdef",
          "0123456789ABCDEF", "serial", "model", {"n_items": 1}, "bad\x00"]
PATHS = [("schema",), ("time",), ("fingerprint",), ("workload",), ("function",), ("id",),
         ("wall_seconds",), ("compute_seconds",), ("predicted_seconds",), ("features",),
         ("features", "n_items"), ("features", "x"), ("fingerprint_fields", "k"),
         ("fingerprint_fields",), ("plan",), ("plan", "engine"), ("plan", "n_workers"),
         ("plan", "chunksize"), ("plan", "source"), ("features", "y" * 65)]


def _mutated(rec: dict, mutations) -> dict:
    """``rec`` with each (path, value) set where the path leads through dicts."""
    for path, value in mutations:
        target = rec
        for key in path[:-1]:
            if not isinstance(target.get(key), dict):
                break
            target = target[key]
        else:
            target[path[-1]] = copy.deepcopy(value)  # TRICKY holds dicts: never share them
    return rec


@settings(max_examples=400, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(PATHS), st.sampled_from(TRICKY)), max_size=3))
def test_fast_path_agrees_with_full_path(mutations):
    rec = _mutated(good(), mutations)
    fast = schema.fast_clean(rec)
    try:
        full = records.full_clean(rec)
    except RecordError:
        full = None
    if fast is not None:
        assert json.dumps(fast) == json.dumps(full)  # same values and same types
    if full is not None:
        assert json.dumps(validate_record(rec)) == json.dumps(full)


def test_fast_path_takes_a_good_record_as_the_full_path_does():
    # the property above asserts only where the fast path answers: here it must answer
    fast = schema.fast_clean(good())
    assert fast is not None and json.dumps(fast) == json.dumps(records.full_clean(good()))


@pytest.mark.parametrize("bad", [math.nan, math.inf, -1.0, True, 2.0**70])
@pytest.mark.parametrize("where", [0, 1])
def test_the_fast_path_never_takes_a_feature_the_full_path_refuses(bad, where):
    """min/max over a NaN depend on its place: the fast path must not be fooled by it."""
    rec = good()
    items = [("x", 1.0), ("n_items", 5)] if where == 0 else [("n_items", 5), ("x", 1.0)]
    rec["features"] = dict(items)
    assert schema.fast_clean(rec) is not None  # these names are remembered as valid now
    rec["features"] = {k: bad if k == "x" else v for k, v in items}
    fast = schema.fast_clean(rec)
    try:
        full = records.full_clean(rec)
    except RecordError:
        full = None
    assert (fast is None or full is not None) and (fast is None or json.dumps(fast) == json.dumps(full))


# -- the shape of a written line must never admit what the full path refuses ---------------
def _written_and_full(line: bytes):
    """(is it clean by its written shape, full_clean's record or None) for one line."""
    try:
        obj = json.loads(line)
    except ValueError:
        return False, None
    if type(obj) is not dict or not isinstance(obj.get("features"), dict) or "wall_seconds" not in obj:
        return False, None
    try:
        full = records.full_clean(obj)
    except RecordError:
        full = None
    return schema.written_shape(line) and schema.written_rest(obj), full


@settings(max_examples=400, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(PATHS), st.sampled_from(TRICKY)), max_size=3))
def test_a_line_of_the_written_shape_is_one_the_full_path_keeps_as_it_is(mutations):
    rec = _mutated(validate_record(good(id="00000000000000ff")), mutations)  # in the order writers write
    line = json.dumps(rec, separators=(",", ":")).encode()  # NaN/Infinity too: a hostile writer
    written, full = _written_and_full(line)
    if written:
        assert full is not None and json.dumps(full) == json.dumps(json.loads(line))


@settings(max_examples=400, deadline=None)
@given(st.integers(0, 10_000), st.binary(max_size=4), st.integers(0, 4))
def test_no_byte_edit_of_a_written_line_sneaks_past_the_shape(at, inserted, removed):
    line = records.encode_line(validate_record(good(id="00000000000000ff")))[:-1]
    at %= len(line)
    edited = line[:at] + inserted + line[at + removed:]
    written, full = _written_and_full(edited)
    if written:
        assert full is not None and json.dumps(full) == json.dumps(json.loads(edited))


def test_what_writers_write_has_the_written_shape():
    """Else reading a directory silently loses its fast path (bench --store)."""
    from amorsize_dask.learning.records import decode_line, encode_line, rounded
    for rec in (good(), good(predicted_seconds=None, time=-3.5e-7), good(fingerprint_fields={}),
                good(features={"n_items": 1, "big": 2.5e80, "small": 1e-9}, id="0123456789abcdef")):
        line = encode_line(rounded(validate_record(rec)))[:-1]
        assert schema.written_shape(line) and schema.written_rest(json.loads(line)), line
        assert decode_line(line) == validate_record(json.loads(line))


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 3), st.integers(0, 10_000), st.binary(max_size=3)), max_size=8))
def test_lines_decoded_together_are_the_records_decode_line_finds_alone(edits):
    """Each line either comes back as decode_line's record or as None (left to decode_line)."""
    good_line = records.encode_line(validate_record(good(id="00000000000000ff")))[:-1]
    lines = []
    for kind, at, inserted in edits:
        if kind == 0:
            lines.append(good_line)
        elif kind == 1:
            at %= len(good_line)
            lines.append(good_line[:at] + inserted + good_line[at + 1:])
        elif kind == 2:
            lines.append(good_line.replace(b'"n_items":2000', b'"n_items":02000'))  # the shape, not JSON
        else:
            lines.append(inserted)
    for line, got in zip(lines, records.decode_written(lines)):
        try:
            alone = records.decode_line(line)
        except RecordError:
            alone = None
        if got is not None:
            assert alone is not None and json.dumps(got) == json.dumps(alone)


def test_a_bad_line_among_written_ones_costs_only_itself(tmp_path):
    from amorsize_dask.learning.segments import Segment
    good_line = records.encode_line(validate_record(good(id="00000000000000ff")))
    zero = good_line.replace(b'"n_items":2000', b'"n_items":02000')   # the written shape, not JSON
    seg = Segment(0)
    seg.read_lines(good_line + zero + good_line + b"not json\n", 65536)
    assert len(seg.records) == 2 and seg.skipped["not-json"] == 2


def test_more_lines_than_are_parsed_together_are_all_read_in_order():
    from amorsize_dask.learning import segments
    lines = [records.encode_line(validate_record(good(id=f"{i:016x}"))) for i in range(segments._PARSED_TOGETHER + 3)]
    seg = segments.Segment(0)
    seg.read_lines(b"".join(lines[:10]) + b"{bad\n" + b"".join(lines[10:]), 65536)
    assert [r["id"] for r in seg.records] == [f"{i:016x}" for i in range(len(lines))]
    assert seg.skipped["not-json"] == 1

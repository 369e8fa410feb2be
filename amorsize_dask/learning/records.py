"""The schema of a training record and its validation (pure functions, no I/O).

A record is one measured run: where it ran (fingerprint), what ran (workload,
features), how (plan) and how long it took. Every record read from or written to
the training directory passes through :func:`validate_record`.

>>> rec = make_record(fingerprint="a1b2c3d4e5f6a7b8", fingerprint_fields={"cores": 2},
...                   workload="0123456789abcdef", function="mymodule.work",
...                   features={"n_items": 2000}, engine="processes", n_workers=2,
...                   chunksize=50, source="sample", wall_seconds=1.23,
...                   compute_seconds=2.3, time=1764139678.2)
>>> rec["plan"]
{'engine': 'processes', 'n_workers': 2, 'chunksize': 50, 'source': 'sample'}
>>> validate_record(dict(rec, wall_seconds=float("nan")))
Traceback (most recent call last):
...
amorsize_dask.learning.records.RecordError: record field 'wall_seconds' must be a finite number > 0, got nan
"""

from __future__ import annotations

import json
import json.scanner
import math
import numbers
import re
import reprlib
import time as _time
from dataclasses import dataclass
from typing import Any

from .schema import (ENGINES, HEX16, MAX_FIELDS, MAX_INT, MAX_KEY_CHARS, MAX_STR_CHARS,  # noqa: F401 (re-exported)
                     SCHEMA_VERSION, SOURCES, fast_clean, written_rest, written_shape)

__all__ = ["SCHEMA_VERSION", "ENGINES", "SOURCES", "MAX_INT", "RecordError", "FutureSchemaError",
           "NotJSONError", "encode_line", "decode_line", "decode_written", "validate_record", "full_clean",
           "MeasuredRun", "make_record", "SIGNIFICANT_DIGITS", "rounded"]

_REPR = reprlib.Repr()
_REPR.maxstring = _REPR.maxother = 80
_HEX16_ANY_CASE = re.compile(r"[0-9a-fA-F]{16}")


class RecordError(ValueError):
    """A record does not follow the schema; the message names the field and value."""


class FutureSchemaError(RecordError):
    """A record written by a newer amorsize_dask (``schema`` > :data:`SCHEMA_VERSION`)."""


class NotJSONError(RecordError):
    """A line that is not one JSON value: bad UTF-8, NaN/Infinity, huge int, deep nesting."""


def _reject_constant(name: str) -> Any:
    raise ValueError(f"non-finite number {name} is not JSON")


_DECODER = json.JSONDecoder(parse_constant=_reject_constant)
# The decoder's scanner, called directly: a line that is exactly one value (what writers
# write) is parsed without decode()'s two whitespace matches and three Python calls
# (~1.5 us of the ~6 us a record line costs, bench --store); anything else takes decode().
_SCAN = json.scanner.make_scanner(_DECODER)


def encode_line(record: dict) -> bytes:
    """``record`` as one compact ASCII JSON line ending in a newline (no NaN/Infinity)."""
    return json.dumps(record, allow_nan=False, separators=(",", ":")).encode("ascii") + b"\n"


def decode_line(line: bytes) -> dict:
    """Parse (JSON only, nothing is ever executed) and validate one line, without its newline.

    >>> decode_line(b'[1]')
    Traceback (most recent call last):
    ...
    amorsize_dask.learning.records.RecordError: record field '<record>' must be an object (dict), got [1]

    Raises
    ------
    NotJSONError, FutureSchemaError, RecordError
    """
    try:
        text = line.decode("utf-8")
        try:
            obj, end = _SCAN(text, 0)
        except StopIteration:                # no value at 0 (e.g. leading whitespace)
            end = -1
        if end != len(text):
            obj = _DECODER.decode(text)      # the full path decides (and explains)
    except (ValueError, RecursionError) as exc:  # RecursionError: [[[[... bombs
        raise NotJSONError(f"not a JSON line: {_show(str(exc))}") from None
    try:
        clean = fast_clean(obj, owned=True) if type(obj) is dict else None  # just decoded: ours
        return clean if clean is not None else full_clean(obj)
    except RecursionError:
        raise RecordError("record nested too deeply") from None


def decode_written(lines: list[bytes]) -> list[dict | None]:
    """The clean records of those ``lines`` that have the shape this version writes, parsed
    together as one JSON array (one C call: ~1 us a line less than :func:`decode_line`'s,
    bench --store); None for every other line (:func:`decode_line` decides it).

    A line of the written shape is one JSON object, so the array's elements are the lines'.

    >>> line = encode_line(make_record(fingerprint="0" * 16, fingerprint_fields={}, workload="1" * 16,
    ...     function="f", features={"n_items": 1}, engine="serial", n_workers=1, chunksize=1,
    ...     source="default", wall_seconds=0.5, compute_seconds=0.4, time=1.5))[:-1]
    >>> [r and r["time"] for r in decode_written([line, b"[1]", line])]
    [1.5, None, 1.5]
    """
    shaped = [written_shape(line) for line in lines]
    found = iter(_parse_together([line for line, ok in zip(lines, shaped) if ok]))
    out = []
    for ok in shaped:
        rec = next(found) if ok else None
        out.append(rec if rec is not None and written_rest(rec) else None)
    return out


def _parse_together(lines: list[bytes]) -> list:
    """The objects of ``lines`` (each one JSON object by its shape) as one JSON array; all
    None when the array is not JSON (a leading zero the shape allows: decode_line then
    decides each line, as it decides the lines of any other shape)."""
    if not lines:
        return []
    try:
        parsed, _ = _SCAN((b"[" + b",".join(lines) + b"]").decode("ascii"), 0)
    except (ValueError, StopIteration, RecursionError):
        return [None] * len(lines)
    return parsed if len(parsed) == len(lines) else [None] * len(lines)


def _show(value: Any) -> str:
    try:
        text = _REPR.repr(value)  # bounded: a hostile value may be huge or deeply nested
    except ValueError:            # an int too long to print
        text = f"<int of {value.bit_length()} bits>"
    if isinstance(value, bool):
        text += " (bool)"
    return text


def _fail(field: str, expected: str, value: Any) -> RecordError:
    return RecordError(f"record field {field!r} must be {expected}, got {_show(value)}")


def _missing(field: str) -> RecordError:
    return RecordError(f"record field {field!r} is missing")


_PLAIN = frozenset({bool, float, str, type(None), dict, list})


def _is_int(value: Any) -> bool:
    """An int, not a bool; numpy integers count (numbers.Integral). Fast for JSON types."""
    kind = type(value)
    if kind is int:
        return True
    return kind not in _PLAIN and isinstance(value, numbers.Integral)


def _int(value: Any, field: str, minimum: int) -> int:
    if not _is_int(value) or not minimum <= value <= MAX_INT:
        raise _fail(field, f"an int >= {minimum}", value)
    return int(value)


def _number(value: Any, field: str, *, minimum: float | None = None,
            strict: bool = False) -> float:
    """A finite int or float (never bool), returned as float."""
    kind = type(value)
    value_f = math.nan
    if kind is float:
        value_f = value
    elif _is_int(value):
        if -MAX_INT <= value <= MAX_INT:
            value_f = float(value)
    elif kind not in _PLAIN and isinstance(value, numbers.Real):  # numpy floats
        value_f = float(value)
    if not (math.isfinite(value_f) and (
            minimum is None or (value_f > minimum if strict else value_f >= minimum))):
        bound = "" if minimum is None else f" {'>' if strict else '>='} {minimum:g}"
        raise _fail(field, f"a finite number{bound}", value)
    return value_f


def _str(value: Any, field: str, max_chars: int, *, printable: bool = False) -> str:
    if not isinstance(value, str) or len(value) > max_chars or (
            printable and not value.isprintable()):
        kind = "a printable str" if printable else "a str"
        raise _fail(field, f"{kind} of at most {max_chars} chars", value)
    return str(value)


def _hex16(value: Any, field: str, *, any_case: bool = False) -> str:
    pattern = _HEX16_ANY_CASE if any_case else HEX16
    if not isinstance(value, str) or not pattern.fullmatch(value):
        case = "" if any_case else " lowercase"
        raise _fail(field, f"16{case} hex chars", value)
    return value.lower()


def _mapping(value: Any, field: str) -> dict:
    if not isinstance(value, dict):
        raise _fail(field, "an object (dict)", value)
    if len(value) > MAX_FIELDS:
        raise _fail(field, f"a dict of at most {MAX_FIELDS} entries", f"{len(value)} entries")
    for key in value:
        if type(key) is not str or len(key) > MAX_KEY_CHARS or not key.isprintable():
            _str(key, f"{field} key", MAX_KEY_CHARS, printable=True)  # raises, naming the key
    return value


def _fingerprint_fields(value: Any) -> dict:
    out = {}
    for key, item in _mapping(value, "fingerprint_fields").items():
        name = f"fingerprint_fields.{key}"
        if type(item) is bool:
            out[key] = item
        elif type(item) is str:
            out[key] = _str(item, name, MAX_STR_CHARS, printable=True)
        elif _is_int(item):
            out[key] = _int(item, name, -MAX_INT)
        elif type(item) is float or isinstance(item, numbers.Real):
            out[key] = _number(item, name)
        else:
            raise _fail(name, "a str, int, finite float or bool", item)
    return out


def _features(value: Any) -> dict:
    out = {}
    for key, item in _mapping(value, "features").items():
        name = f"features.{key}"
        out[key] = _int(item, name, 0) if _is_int(item) else _number(item, name, minimum=0)
    if "n_items" not in out:
        raise _missing("features.n_items")
    if not _is_int(out["n_items"]):
        raise _fail("features.n_items", "an int >= 0", value["n_items"])
    return out


def _plan(value: Any) -> dict:
    if not isinstance(value, dict):
        raise _fail("plan", "an object (dict)", value)
    for key in ("engine", "n_workers", "chunksize", "source"):
        if key not in value:
            raise _missing(f"plan.{key}")
    engine, source = value["engine"], value["source"]
    if not isinstance(engine, str) or engine not in ENGINES:
        raise _fail("plan.engine", f"one of {sorted(ENGINES)}", engine)
    if not isinstance(source, str) or source not in SOURCES:
        raise _fail("plan.source", f"one of {sorted(SOURCES)}", source)
    return {"engine": str(engine),
            "n_workers": _int(value["n_workers"], "plan.n_workers", 1),
            "chunksize": _int(value["chunksize"], "plan.chunksize", 1),
            "source": str(source)}


_REQUIRED = ("schema", "time", "fingerprint", "fingerprint_fields", "workload", "function",
             "features", "plan", "wall_seconds", "compute_seconds")


def validate_record(obj: Any) -> dict:
    """Return a clean, validated copy of ``obj``; unknown top-level keys are dropped.

    Raises
    ------
    FutureSchemaError
        ``obj["schema"]`` is newer than :data:`SCHEMA_VERSION`.
    RecordError
        Any other violation; the message names the field and the bad value.
    """
    clean = fast_clean(obj) if type(obj) is dict else None
    return clean if clean is not None else full_clean(obj)


def full_clean(obj: Any) -> dict:
    """Every check, with conversions (numpy numbers, upper-case workload) and messages."""
    if not isinstance(obj, dict):
        raise _fail("<record>", "an object (dict)", obj)
    schema = obj.get("schema")
    if _is_int(schema) and schema > SCHEMA_VERSION:
        raise FutureSchemaError(
            f"record field 'schema' is {_show(schema)}, newer than {SCHEMA_VERSION}: "
            "written by a newer amorsize_dask; upgrade to use it")
    if not _is_int(schema) or schema != SCHEMA_VERSION:
        raise _fail("schema", f"the int {SCHEMA_VERSION}", schema)
    for key in _REQUIRED:
        if key not in obj:
            raise _missing(key)
    predicted = obj.get("predicted_seconds")
    clean = {
        "schema": SCHEMA_VERSION,
        "time": _number(obj["time"], "time"),
        "fingerprint": _hex16(obj["fingerprint"], "fingerprint"),
        "fingerprint_fields": _fingerprint_fields(obj["fingerprint_fields"]),
        "workload": _hex16(obj["workload"], "workload", any_case=True),
        "function": _str(obj["function"], "function", MAX_STR_CHARS, printable=True),
        "features": _features(obj["features"]),
        "plan": _plan(obj["plan"]),
        "wall_seconds": _number(obj["wall_seconds"], "wall_seconds", minimum=0, strict=True),
        "compute_seconds": _number(obj["compute_seconds"], "compute_seconds", minimum=0),
        "predicted_seconds": None if predicted is None else _number(
            predicted, "predicted_seconds", minimum=0),
    }
    if obj.get("id") is not None:
        clean["id"] = _hex16(obj["id"], "id")
    return clean


@dataclass(frozen=True, kw_only=True)
class MeasuredRun:
    """One measured run, field by field: where it ran (``fingerprint``, its fields), what
    ran (``workload``, ``function``, ``features``), how (the plan: ``engine``,
    ``n_workers``, ``chunksize``, ``source``) and how long it took. ``time`` defaults to
    now when the record is built.
    """

    fingerprint: str
    fingerprint_fields: dict
    workload: str
    function: str
    features: dict
    engine: str
    n_workers: int
    chunksize: int
    source: str
    wall_seconds: float
    compute_seconds: float
    predicted_seconds: float | None = None
    time: float | None = None

    def record(self) -> dict:
        """The validated record of the current schema (:func:`validate_record`), its
        measurements rounded (:func:`rounded`)."""
        return rounded(validate_record({
            "schema": SCHEMA_VERSION,
            "time": _time.time() if self.time is None else self.time,
            "fingerprint": self.fingerprint,
            "fingerprint_fields": self.fingerprint_fields,
            "workload": self.workload,
            "function": self.function,
            "features": self.features,
            "plan": {"engine": self.engine, "n_workers": self.n_workers, "chunksize": self.chunksize,
                     "source": self.source},
            "wall_seconds": self.wall_seconds,
            "compute_seconds": self.compute_seconds,
            "predicted_seconds": self.predicted_seconds,
        }))


# Significant digits a record keeps of each measurement (not of its time): timings vary by
# percents from run to run, so 6 digits lose nothing the model uses, and a line of 17-digit
# floats parses ~20% slower (5.5 vs 4.5 ms per 1,000 lines of bench --store's records).
SIGNIFICANT_DIGITS = 6


def _significant(value):
    return float(f"{value:.{SIGNIFICANT_DIGITS}g}") if type(value) is float else value


def rounded(record: dict) -> dict:
    """``record`` with its features and seconds at :data:`SIGNIFICANT_DIGITS` (a new dict;
    the time of the run and every other field as they were).

    >>> rounded({"features": {"item_seconds": 0.0021201704712207996, "n_items": 7},
    ...          "wall_seconds": 1.23456789, "time": 1700000000.123456})
    {'features': {'item_seconds': 0.00212017, 'n_items': 7}, 'wall_seconds': 1.23457, 'time': 1700000000.123456}
    """
    out = dict(record)
    for key in ("wall_seconds", "compute_seconds", "predicted_seconds"):
        if key in out:
            out[key] = _significant(out[key])
    if "features" in out:
        out["features"] = {k: _significant(v) for k, v in out["features"].items()}
    return out


def make_record(**fields) -> dict:
    """Build a validated record of the current schema from the fields of :class:`MeasuredRun`
    (keywords only; ``time`` defaults to now).

    >>> make_record(fingerprint="0" * 16, fingerprint_fields={}, workload="1" * 16,
    ...             function="f", features={"n_items": 1}, engine="serial", n_workers=1,
    ...             chunksize=1, source="default", wall_seconds=0.5,
    ...             compute_seconds=0.4)["schema"]
    1
    """
    return MeasuredRun(**fields).record()

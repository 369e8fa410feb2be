"""The record schema's constants, and the fast check of a common record.

:func:`fast_clean` accepts the common case (plain JSON types, current schema) inline,
~5x faster than :func:`amorsize_dask.learning.records.validate_record`'s full path, and
returns None whenever anything is unusual (the full path then decides and explains).

>>> fast_clean({"schema": SCHEMA_VERSION}) is None
True
"""

from __future__ import annotations

import math
import re
from typing import Any

__all__ = ["SCHEMA_VERSION", "ENGINES", "SOURCES", "MAX_FIELDS", "MAX_KEY_CHARS", "MAX_STR_CHARS",
           "MAX_INT", "HEX16", "fast_clean", "written_shape", "written_rest"]

SCHEMA_VERSION = 1
ENGINES = frozenset({"serial", "threads", "processes", "dask"})
SOURCES = frozenset({"model", "sample", "default", "explore"})

# Size bounds: a record is a few hundred bytes; these keep a hostile line small.
MAX_FIELDS = 32
MAX_KEY_CHARS = 64
MAX_STR_CHARS = 200
# Integers are stored as numpy int64 by the model; larger ones cannot be real counts.
MAX_INT = 2**63 - 1

HEX16 = re.compile(r"[0-9a-f]{16}")


def _line_pattern() -> re.Pattern:
    """A clean record's line exactly as this version writes it (``encode_line``): fields in
    order, strings of printable ASCII without escapes, numbers bounded in digits (finite,
    ints within :data:`MAX_INT`), no whitespace. Possessive repeats: it never backtracks."""
    text, key = r'"[ !#-\[\]-~]{0,%d}+"' % MAX_STR_CHARS, r'"[ !#-\[\]-~]{0,%d}+"' % MAX_KEY_CHARS
    exp = r"e[+-]?\d{1,2}+"
    unsigned_float = rf"\d{{1,20}}+(?:\.\d{{1,20}}+(?:{exp})?|{exp})"  # repr(float): a point or an exponent
    unsigned = rf"(?:{unsigned_float}|\d{{1,18}}+)"
    scalar = rf"(?:{text}|-?{unsigned}|true|false)"
    positive, hex16 = r"[1-9]\d{0,17}+", r'"[0-9a-f]{16}"'

    def flat(value: str) -> str:
        return rf"\{{(?:{key}:{value}(?:,{key}:{value}){{0,{MAX_FIELDS - 1}}})?\}}"

    return re.compile((
        rf'\{{"schema":{SCHEMA_VERSION},"time":-?{unsigned_float},"fingerprint":{hex16},'
        rf'"fingerprint_fields":{flat(scalar)},"workload":{hex16},"function":{text},"features":{flat(unsigned)},'
        rf'"plan":\{{"engine":"(?:{"|".join(ENGINES)})","n_workers":{positive},"chunksize":{positive},'
        rf'"source":"(?:{"|".join(SOURCES)})"\}},"wall_seconds":{unsigned_float},"compute_seconds":{unsigned_float},'
        rf'"predicted_seconds":(?:{unsigned_float}|null)(?:,"id":{hex16})?\}}').encode("ascii"))


# Checking a line's shape in C costs ~2 us where fast_clean's checks of its decoded record
# cost ~4 us (bench --store, ~650-byte lines); only two checks are beyond a pattern.
_WRITTEN_LINE = _line_pattern()


def written_shape(line: bytes) -> bool:
    """Has ``line`` the exact shape of a record this version writes (:func:`_line_pattern`)?
    Such a line is one JSON object; decoded, it is clean if :func:`written_rest` says so.

    >>> written_shape(b'{"schema":1}')
    False
    """
    return _WRITTEN_LINE.fullmatch(line) is not None


def written_rest(record: dict) -> bool:
    """The checks beyond a written line's shape: ``n_items`` an int, a wall time above 0."""
    return type(record["features"].get("n_items")) is int and record["wall_seconds"] > 0


_INF = math.inf


def _fast_flat(value: Any, numbers_only: bool) -> bool:
    """True if ``value`` is a small dict of plain JSON scalars within bounds."""
    if type(value) is not dict or len(value) > MAX_FIELDS:
        return False
    for key, item in value.items():
        if type(key) is not str or len(key) > MAX_KEY_CHARS or not key.isprintable():
            return False
        kind = type(item)
        if kind is float:
            if not (0 <= item < _INF if numbers_only else -_INF < item < _INF):
                return False
        elif kind is int:
            if not (0 if numbers_only else -MAX_INT) <= item <= MAX_INT:
                return False
        elif numbers_only or not (kind is bool or (kind is str and len(item) <= MAX_STR_CHARS
                                                   and item.isprintable())):
            return False
    return True


# What recurs in every record of a directory is checked once and remembered (bench --store:
# a record's checks cost ~6.5 us, ~4 us with these): fingerprint_fields by fingerprint (an
# equal dict is as valid: _fast_flat admits any mix of the JSON scalars), the fingerprint and
# workload ids, and the features' names.
_VALID_FIELDS: dict[str, dict] = {}
_VALID_IDS: set = set()
_VALID_FEATURE_NAMES: set = set()
_MAX_REMEMBERED = 1024
_NUMBERS = frozenset({int, float})
_HEX_DIGITS = "0123456789abcdef"
# A clean record's keys, in order: a line decoded with exactly these is kept as it is.
_ORDER = ["schema", "time", "fingerprint", "fingerprint_fields", "workload", "function", "features", "plan",
          "wall_seconds", "compute_seconds", "predicted_seconds"]
_ORDER_ID = _ORDER + ["id"]
_PLAN_ORDER = ["engine", "n_workers", "chunksize", "source"]


def _remember(memory, key, value=True) -> None:
    if len(memory) >= _MAX_REMEMBERED:
        memory.clear()
    if isinstance(memory, set):
        memory.add(key)
    else:
        memory[key] = value


def _hex16(value: Any) -> bool:
    return type(value) is str and len(value) == 16 and not value.strip(_HEX_DIGITS)


def _fast_id(value: Any) -> bool:
    """A fingerprint or workload id (16 lowercase hex digits), remembered."""
    if type(value) is not str:
        return False
    if value in _VALID_IDS:
        return True
    if not _hex16(value):
        return False
    _remember(_VALID_IDS, value)
    return True


def _fast_fields(fingerprint: str, value: Any) -> bool:
    """``_fast_flat(value, False)``, remembered per fingerprint."""
    if type(value) is not dict:
        return False
    if _VALID_FIELDS.get(fingerprint) == value:
        return True
    if not _fast_flat(value, False):
        return False
    _remember(_VALID_FIELDS, fingerprint, value)
    return True


def _fast_features(value: Any) -> bool:
    """``_fast_flat(value, True)``: numbers >= 0 under names seen valid before."""
    if type(value) is not dict or len(value) > MAX_FIELDS:
        return False
    numbers = value.values()
    if not (set(map(type, numbers)) <= _NUMBERS and (not numbers or (
            0 <= min(numbers) and max(numbers) <= MAX_INT and sum(numbers) == sum(numbers)))):  # NaN != NaN
        return _fast_flat(value, True)  # a float beyond MAX_INT is valid too: the slow check
    names = tuple(value)
    if names in _VALID_FEATURE_NAMES:
        return True
    if not _fast_flat(value, True):
        return False
    _remember(_VALID_FEATURE_NAMES, names)
    return True


def fast_clean(obj: dict, owned: bool = False) -> dict | None:
    """The common case (plain JSON types, current schema) checked inline, ~5x faster
    than the full path; None when anything is unusual (the full path then decides).
    ``owned``: ``obj`` was just decoded and nothing else refers to it (it is returned
    itself when already clean, or its inner dicts kept)."""
    get = obj.get
    times = (get("time"), get("wall_seconds"), get("compute_seconds"), get("predicted_seconds"))
    plan, features = get("plan"), get("features")
    fp, workload, function, rid = get("fingerprint"), get("workload"), get("function"), get("id")
    if not (get("schema") == SCHEMA_VERSION and type(get("schema")) is int
            and type(plan) is dict and _fast_features(features)
            and type(features.get("n_items")) is int
            and _fast_id(fp) and _fast_id(workload) and _fast_fields(fp, get("fingerprint_fields"))
            and (rid is None or _hex16(rid))
            and type(function) is str and len(function) <= MAX_STR_CHARS
            and function.isprintable()
            and type(plan.get("engine")) is str and plan["engine"] in ENGINES
            and type(plan.get("source")) is str and plan["source"] in SOURCES
            and type(plan.get("n_workers")) is int and type(plan.get("chunksize")) is int
            and 1 <= plan["n_workers"] <= MAX_INT and 1 <= plan["chunksize"] <= MAX_INT):
        return None
    time, wall, compute, predicted = times
    floats = type(time) is float and type(wall) is float and type(compute) is float
    if floats and (predicted is None or type(predicted) is float):  # as writers write them
        if not (-_INF < time < _INF and 0 < wall < _INF and 0 <= compute < _INF
                and (predicted is None or 0 <= predicted < _INF)):
            return None
        if owned and list(obj) == (_ORDER if rid is None else _ORDER_ID) and list(plan) == _PLAN_ORDER:
            return obj  # what a writer of this version wrote: clean as it is
    else:
        for i, value in enumerate(times):
            kind = type(value)
            if not ((kind is float and -_INF < value < _INF)
                    or (kind is int and -MAX_INT <= value <= MAX_INT)
                    or (value is None and i == 3)):
                return None
        if not (wall > 0 and compute >= 0 and (predicted is None or predicted >= 0)):
            return None
    clean = {"schema": SCHEMA_VERSION, "time": float(time), "fingerprint": fp,
             "fingerprint_fields": obj["fingerprint_fields"] if owned else dict(obj["fingerprint_fields"]),
             "workload": workload, "function": function, "features": features if owned else dict(features),
             "plan": {"engine": plan["engine"], "n_workers": plan["n_workers"],
                      "chunksize": plan["chunksize"], "source": plan["source"]},
             "wall_seconds": float(wall), "compute_seconds": float(compute),
             "predicted_seconds": None if predicted is None else float(predicted)}
    if rid is not None:
        clean["id"] = rid
    return clean

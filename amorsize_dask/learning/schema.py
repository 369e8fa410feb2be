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
           "MAX_INT", "HEX16", "fast_clean"]

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


# fingerprint_fields found valid, by value and type: the same few dicts recur in every
# record of a directory; checking one costs ~3 us, looking it up ~1 us (bench --store).
_VALID_FIELDS: dict[tuple, bool] = {}
_MAX_VALID_FIELDS = 1024


def _fast_fields(value: Any) -> bool:
    """``_fast_flat(value, False)``, remembered for the dicts that recur."""
    if type(value) is not dict:
        return False
    try:
        key = tuple((k, type(v), v) for k, v in value.items())
        if key in _VALID_FIELDS:
            return True
    except TypeError:                 # an unhashable value: not a flat dict anyway
        return False
    if not _fast_flat(value, False):
        return False
    if len(_VALID_FIELDS) >= _MAX_VALID_FIELDS:
        _VALID_FIELDS.clear()
    _VALID_FIELDS[key] = True
    return True


def fast_clean(obj: dict, owned: bool = False) -> dict | None:
    """The common case (plain JSON types, current schema) checked inline, ~5x faster
    than the full path; None when anything is unusual (the full path then decides).
    ``owned``: ``obj`` was just decoded and nothing else refers to it (its inner dicts
    are kept, not copied)."""
    get = obj.get
    times = (get("time"), get("wall_seconds"), get("compute_seconds"), get("predicted_seconds"))
    plan, features = get("plan"), get("features")
    fp, workload, function, rid = get("fingerprint"), get("workload"), get("function"), get("id")
    if not (get("schema") == SCHEMA_VERSION and type(get("schema")) is int
            and type(plan) is dict and _fast_flat(features, True)
            and type(features.get("n_items")) is int
            and _fast_fields(get("fingerprint_fields"))
            and type(fp) is str and HEX16.fullmatch(fp)
            and type(workload) is str and HEX16.fullmatch(workload)
            and (rid is None or (type(rid) is str and HEX16.fullmatch(rid)))
            and type(function) is str and len(function) <= MAX_STR_CHARS
            and function.isprintable()
            and type(plan.get("engine")) is str and plan["engine"] in ENGINES
            and type(plan.get("source")) is str and plan["source"] in SOURCES
            and type(plan.get("n_workers")) is int and type(plan.get("chunksize")) is int
            and 1 <= plan["n_workers"] <= MAX_INT and 1 <= plan["chunksize"] <= MAX_INT):
        return None
    for i, value in enumerate(times):
        kind = type(value)
        if not ((kind is float and -_INF < value < _INF)
                or (kind is int and -MAX_INT <= value <= MAX_INT)
                or (value is None and i == 3)):
            return None
    time, wall, compute, predicted = times
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

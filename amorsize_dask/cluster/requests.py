"""Checks on the requests clients send the scheduler plugin (:mod:`amorsize_dask.cluster.plugin`):
a wrong type raises TypeError, a wrong value ValueError, naming the field and the value."""

from __future__ import annotations

import math
import re
import reprlib

from ..learning.records import MAX_INT, SOURCES
from ..target.fingerprint import Fingerprint

# Finished tasks are kept as one bit each: at most 125 KB per run.
__all__ = ["MAX_TASKS_PER_RUN", "MAX_STR_CHARS", "bad_value", "checked_int", "checked_text", "checked_hex16",
           "checked_run_id", "checked_seconds", "check_run"]

MAX_TASKS_PER_RUN = 1_000_000
MAX_STR_CHARS = 200
_HEX16 = re.compile(r"[0-9a-fA-F]{16}")
_RUN_ID = re.compile(r"[0-9a-f]{16}")
_RUN_KEYS = frozenset({"run_id", "n_tasks", "workload", "function", "features", "plan",
                       "predicted_seconds", "planning_seconds", "fingerprint_fields"})
_OPTIONAL_RUN_KEYS = {"predicted_seconds", "planning_seconds", "fingerprint_fields"}
_PLAN_KEYS = ("engine", "n_workers", "chunksize", "source")
_REPR = reprlib.Repr()
_REPR.maxstring = _REPR.maxother = 60


def _show(value) -> str:
    if isinstance(value, int) and value.bit_length() > 256:
        return f"<int of {value.bit_length()} bits>"
    text = _REPR.repr(value)
    if isinstance(value, (str, bytes, list, dict, tuple)) and len(value) > 40:
        text += f" ({len(value)} long)"
    return text


def bad_value(field: str, expected: str, value, kind=ValueError) -> Exception:
    return kind(f"amorsize plugin: {field} must be {expected}, got {_show(value)}")


def checked_int(field: str, value, minimum: int, maximum: int) -> int:
    if type(value) is not int:
        raise bad_value(field, "an int", value, TypeError)
    if not minimum <= value <= maximum:
        raise bad_value(field, f"an int in [{minimum}, {maximum}]", value)
    return value


def checked_text(field: str, value, max_chars: int = MAX_STR_CHARS) -> str:
    if type(value) is not str:
        raise bad_value(field, "a str", value, TypeError)
    if len(value) > max_chars or not value.isprintable():
        raise bad_value(field, f"a printable str of at most {max_chars} chars", value)
    return value


def checked_hex16(field: str, value) -> str:
    if type(value) is not str:
        raise bad_value(field, "a str of 16 hex chars", value, TypeError)
    if not _HEX16.fullmatch(value):
        raise bad_value(field, "16 hex chars", value)
    return value.lower()


def checked_run_id(field: str, value) -> str:
    if type(value) is not str:
        raise bad_value(field, "a str of 16 lowercase hex chars", value, TypeError)
    if not _RUN_ID.fullmatch(value):
        raise bad_value(field, "16 lowercase hex chars", value)
    return value


def _number(field: str, value, *, allow_none: bool = False):
    if value is None and allow_none:
        return None
    if type(value) not in (int, float):
        raise bad_value(field, "a number" + (" or None" if allow_none else ""), value, TypeError)
    if not (math.isfinite(value) and 0 <= value <= MAX_INT):
        raise bad_value(field, "a finite number >= 0", value)
    return float(value)


def checked_seconds(field: str, value) -> float:
    if type(value) is str and len(value) <= 40:
        from dask.utils import parse_timedelta

        try:
            value = parse_timedelta(value)
        except (ValueError, KeyError, TypeError):
            raise bad_value(field, "seconds (a number or e.g. '5s')", value) from None
    seconds = _number(field, value)
    if seconds <= 0:
        raise bad_value(field, "seconds > 0", value)
    return seconds


def check_run(run) -> dict:
    if type(run) is not dict:
        raise bad_value("run", "a dict", run, TypeError)
    unknown = sorted(map(str, set(run) - _RUN_KEYS))
    if unknown:
        raise ValueError(f"amorsize plugin: run has unknown fields {_show(unknown)}; "
                         f"expected {sorted(_RUN_KEYS)}")
    missing = sorted(_RUN_KEYS - set(run) - _OPTIONAL_RUN_KEYS)
    if missing:
        raise ValueError(f"amorsize plugin: run is missing {missing}")
    run_id = checked_run_id("run.run_id", run["run_id"])
    plan = run["plan"]
    if type(plan) is not dict:
        raise bad_value("run.plan", "a dict", plan, TypeError)
    if sorted(plan) != sorted(_PLAN_KEYS):
        raise bad_value("run.plan", f"a dict of exactly {list(_PLAN_KEYS)}", plan)
    if plan["engine"] != "dask":
        kind = TypeError if type(plan["engine"]) is not str else ValueError
        raise bad_value("run.plan.engine", "'dask' (only dask tasks reach the scheduler)", plan["engine"], kind)
    if plan["source"] not in SOURCES:
        raise bad_value("run.plan.source", f"one of {sorted(SOURCES)}", plan["source"],
                   ValueError if type(plan["source"]) is str else TypeError)
    features = run["features"]
    if type(features) is not dict:
        raise bad_value("run.features", "a dict", features, TypeError)
    n_items = checked_int("run.features.n_items", features.get("n_items"), 1, MAX_INT)
    clean = {
        "run_id": run_id,
        "n_tasks": checked_int("run.n_tasks", run["n_tasks"], 1, min(MAX_TASKS_PER_RUN, n_items)),
        "workload": checked_hex16("run.workload", run["workload"]),
        "function": checked_text("run.function", run["function"]),
        "features": dict(features),
        "plan": {"engine": "dask", "n_workers": checked_int("run.plan.n_workers", plan["n_workers"], 1, MAX_INT),
                 "chunksize": checked_int("run.plan.chunksize", plan["chunksize"], 1, MAX_INT),
                 "source": plan["source"]},
        "predicted_seconds": _number("run.predicted_seconds", run.get("predicted_seconds"), allow_none=True),
        "planning_seconds": _number("run.planning_seconds", run.get("planning_seconds", 0.0)),
    }
    if "sample_seconds" in features:
        _number("run.features.sample_seconds", features["sample_seconds"])
    if run.get("fingerprint_fields") is not None:
        clean["fingerprint_fields"] = _cluster_fields(run["fingerprint_fields"])
    return clean


def _cluster_fields(fields) -> dict:
    """The fields of the cluster fingerprint a run was planned for (it is recorded there)."""
    if type(fields) is not dict:
        raise bad_value("run.fingerprint_fields", "a dict", fields, TypeError)
    try:
        Fingerprint.from_fields(fields)
    except TypeError as exc:
        raise ValueError(f"amorsize plugin: run.fingerprint_fields: {exc}") from None
    if fields.get("kind") != "cluster":
        raise bad_value("run.fingerprint_fields", "a cluster fingerprint's fields (kind 'cluster')", fields)
    return dict(fields)

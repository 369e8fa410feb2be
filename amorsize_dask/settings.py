"""Every ``amorsize.*`` setting the planner, sampler, cost model, model and store read,
loaded from dask.config once per call into one frozen value (mpire's ``params.py`` style).

Read at call time, never at import; the defaults live in ``amorsize.yaml`` only:

>>> import dask
>>> with dask.config.set({"amorsize.planner.max-threads": 8}):
...     s = Settings.from_config()
>>> s.max_threads, s.k == dask.config.get("amorsize.model.k")
(8, True)
>>> s.replace(explore_probability=1.0).explore_probability
1.0
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from . import config

__all__ = ["Settings", "RULES", "START_METHODS", "checked_settings"]

# Field name -> key under ``amorsize.`` in dask.config.
_KEYS = {
    "allow_local": "cluster.allow-local",
    "sample_items": "cluster.sample-items",
    "sample_bytes": "cluster.sample-bytes",
    "budget_fraction": "sampling.budget-fraction",
    "max_seconds": "sampling.max-seconds",
    "pickle_items": "sampling.pickle-items",
    "max_threads": "planner.max-threads",
    "min_speedup": "planner.min-speedup",
    "memory_fraction": "planner.memory-fraction",
    "min_tasks_per_worker": "planner.min-tasks-per-worker",
    "k": "model.k",
    "min_confidence": "model.min-confidence",
    "explore_probability": "model.explore-probability",
    "explore_max_slowdown": "model.explore-max-slowdown",
    "explore_budget": "model.explore-budget",
    "max_line_bytes": "store.max-line-bytes",
    "max_segment_bytes": "store.max-segment-bytes",
    "keep_per_workload": "store.keep-per-workload",
    "max_bytes": "store.max-bytes",
    "seal_bytes": "store.seal-bytes",
}


@dataclass(frozen=True)
class Settings:
    """The ``amorsize`` settings of one call (see ``amorsize-schema.yaml`` for each).

    Store sizes are kept as configured (bytes or a string such as ``"64 MiB"``): the
    store parses them, and names a bad one in its error.
    """

    allow_local: bool
    sample_items: int
    sample_bytes: int
    budget_fraction: float
    max_seconds: float
    pickle_items: int
    max_threads: int
    min_speedup: float
    memory_fraction: float
    min_tasks_per_worker: int
    k: int
    min_confidence: float
    explore_probability: float
    explore_max_slowdown: float
    explore_budget: float
    max_line_bytes: int | str
    max_segment_bytes: int | str
    keep_per_workload: int
    max_bytes: int | str | None
    seal_bytes: int | str | None = None

    @classmethod
    def from_config(cls) -> "Settings":
        """The current values of dask.config (YAML defaults, files, env vars, ``set``);
        read once per distinct ``amorsize`` section (20 lookups cost ~57 us, every call)."""
        return _for_section(_section_key())

    def replace(self, **changes) -> "Settings":
        return dataclasses.replace(self, **changes)

    def size(self, name: str) -> int | None:
        """The store size ``name`` (a field) in bytes; None stays None.

        >>> Settings.from_config().replace(max_bytes="1 kiB").size("max_bytes")
        1024
        """
        value = getattr(self, name)
        if value is None:
            return None
        try:
            return int(config.parse_bytes(value) if isinstance(value, str) else value)
        except (TypeError, ValueError) as exc:
            raise ValueError(
                f"dask config amorsize.{_KEYS[name]}={value!r} is not a size in bytes; use an integer or a "
                "string such as '64 MiB' (see amorsize-schema.yaml)") from exc


# What each numeric setting may be, in the words of ``amorsize-schema.yaml`` (a test holds
# the two equal: the schema is not parsed at run time, ~2-13 ms of a first call). Sizes in
# bytes are checked by :meth:`Settings.size` (and None means "no limit" for the store's).
RULES = {
    "sample_items": {"type": "integer", "minimum": 1},
    "pickle_items": {"type": "integer", "minimum": 0},
    "max_threads": {"type": "integer", "minimum": 1},
    "min_tasks_per_worker": {"type": "integer", "minimum": 1},
    "k": {"type": "integer", "minimum": 1},
    "keep_per_workload": {"type": "integer", "minimum": 0},
    "budget_fraction": {"type": "number", "exclusiveMinimum": 0, "maximum": 1},
    "memory_fraction": {"type": "number", "exclusiveMinimum": 0, "maximum": 1},
    "min_confidence": {"type": "number", "minimum": 0, "maximum": 1},
    "explore_probability": {"type": "number", "minimum": 0, "maximum": 1},
    "max_seconds": {"type": "number", "exclusiveMinimum": 0},
    "min_speedup": {"type": "number", "minimum": 1},
    "explore_max_slowdown": {"type": "number", "minimum": 1},
    "explore_budget": {"type": "number", "minimum": 0},
}
_SIZES = ("sample_bytes", "max_line_bytes", "max_segment_bytes", "max_bytes", "seal_bytes")
# amorsize.start-method, which no Settings field holds (the process engine reads it).
START_METHODS = ("auto", "fork", "forkserver", "spawn", None)


def _breaks(value, rule: dict) -> str | None:
    """What ``value`` should be when it breaks ``rule`` (:data:`RULES`), else None.

    >>> _breaks(0, RULES["k"]), _breaks(0.5, RULES["budget_fraction"]), _breaks(0, RULES["max_seconds"])
    ('an integer of at least 1', None, 'a number greater than 0')
    """
    integer = rule["type"] == "integer"
    low, high = rule.get("minimum", rule.get("exclusiveMinimum")), rule.get("maximum")
    bounds = [f"of at least {low}" if "minimum" in rule else f"greater than {low}"]
    if high is not None:
        bounds.append(f"at most {high}")
    what = ("an integer " if integer else "a number ") + " and ".join(bounds)
    if not isinstance(value, (int, float)) or isinstance(value, bool) or (integer and value != int(value)):
        return what
    if value < low or ("exclusiveMinimum" in rule and value == low) or (high is not None and value > high):
        return what
    return None


def checked_settings() -> Settings:
    """The current settings (and ``start-method``), each checked once per distinct section:
    a ValueError names a bad one, its value and what it may be (a string where a number
    belongs failed deep in the planner, or not at all).

    >>> import dask
    >>> with dask.config.set({"amorsize.model.k": "abc"}):
    ...     checked_settings()
    Traceback (most recent call last):
    ...
    ValueError: dask config amorsize.model.k='abc' is not valid: use an integer of at least 1 (see amorsize-schema.yaml)
    """
    key = _section_key()
    settings = _for_section(key)
    if key is not None and key in _CHECKED:
        return settings
    for name, rule in RULES.items():
        value = getattr(settings, name)
        what = _breaks(value, rule)
        if what is not None:
            raise ValueError(f"dask config amorsize.{_KEYS[name]}={value!r} is not valid: use {what} "
                             "(see amorsize-schema.yaml)")
    for name in _SIZES:
        size = settings.size(name)
        if size is not None and size < 1:
            raise ValueError(f"dask config amorsize.{_KEYS[name]}={getattr(settings, name)!r} is not valid: use a "
                             "positive size such as '64 MiB' (see amorsize-schema.yaml)")
    allow_local = config.get("cluster.allow-local")
    if not isinstance(allow_local, bool):  # read with bool(): "false" allowed it (hunt 19)
        raise ValueError(f"dask config amorsize.cluster.allow-local={allow_local!r} is not valid: use true or "
                         "false (see amorsize-schema.yaml)")
    method = config.get("start-method")
    if method not in START_METHODS:
        raise ValueError(f"dask config amorsize.start-method={method!r} is not valid: use one of "
                         "auto, fork, forkserver, spawn, or null for the default")
    config.worker_heap_pad()  # a ValueError naming a bad one: it was found only as a pool started (hunt 19)
    if key is not None:
        _CHECKED.add(key)
    return settings


# Settings read per distinct ``amorsize`` section of dask.config (its repr: the YAML
# scalars it holds), and the sections checked; a handful at most in practice.
_BY_SECTION: dict[str, Settings] = {}
_CHECKED: set[str] = set()
_MAX_SECTIONS = 64


def _section_key() -> str | None:
    """The ``amorsize`` section of dask.config as a string, or None when it is missing
    (then :func:`config.get` registers the defaults again)."""
    cfg = config.dask_config()
    if cfg is None:  # the shipped defaults, and the training directory's variable
        return repr(config.get("training-dir"))
    section = cfg.config.get("amorsize")
    return repr(section) if isinstance(section, dict) else None


def _for_section(key: str | None) -> Settings:
    """The settings of the ``amorsize`` section ``key`` (:func:`_section_key`)."""
    found = _BY_SECTION.get(key) if key is not None else None
    if found is None:
        found = Settings(**{name: config.get(setting) for name, setting in _KEYS.items()})
        if key is not None:
            if len(_BY_SECTION) >= _MAX_SECTIONS:
                _BY_SECTION.clear()
            _BY_SECTION[key] = found
    return found


def current(settings: Settings | None) -> Settings:
    """``settings``, or the current ones read now when None."""
    return Settings.from_config() if settings is None else settings

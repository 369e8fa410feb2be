"""The ``amorsize`` settings: the shipped YAML defaults, and ``dask.config`` where anything
could configure them (:func:`dask_config`).

Settings are read at call time, never frozen at import:

>>> import dask
>>> from amorsize_dask.config import get
>>> with dask.config.set({"amorsize.planner.max-threads": 8}):
...     get("planner.max-threads")
8
"""

from __future__ import annotations

import contextvars
import functools
import importlib
import os
import pathlib
import tempfile
import threading
from typing import Any

# numpy (the training store's arrays) loads first, here where every public function
# first reads a setting: once loaded, OpenBLAS's threads spin on a core for ~40 ms. Loaded
# after dask, as the imports fell before, that spin ran inside a script's first call: 64
# threads started in 26-55 ms instead of 9 ms, and bench --fresh io-wait's thread run took
# 72-82 ms instead of 50-55 ms (/tmp scripts, fresh processes, session 9). Loaded first,
# the spin overlaps the imports that follow (dask's ~0.1 s, when it loads).
import numpy  # noqa: F401
import yaml

from . import dask_sources

__all__ = ["DEFAULTS_FILE", "SCHEMA_FILE", "DEFAULTS", "dask_config", "looked_up_once", "registered_dask_config",
           "get", "get_bytes", "worker_heap_pad", "default_training_dir", "user_cache_dir"]

_HERE = pathlib.Path(__file__).parent
DEFAULTS_FILE = _HERE / "amorsize.yaml"
SCHEMA_FILE = _HERE / "amorsize-schema.yaml"

with open(DEFAULTS_FILE) as _f:
    DEFAULTS = yaml.safe_load(_f)

_registered = threading.Event()  # the defaults are in dask.config


def dask_config():
    """``dask.config``, with the shipped defaults registered, when anything could configure
    the ``amorsize`` settings (:func:`..dask_sources.configured`); None when nothing could:
    then they are :data:`DEFAULTS`, with ``DASK_AMORSIZE__TRAINING_DIR``, and dask is not
    loaded for them (~0.1 s of a script's first call). Within a call
    (:func:`looked_up_once`), what the call's start found."""
    looked = _LOOKED.get()
    return _look() if looked is None else looked[0]


# The answer of dask_config() at the start of the call running (a 1-tuple), if one is.
_LOOKED: contextvars.ContextVar[tuple | None] = contextvars.ContextVar("amorsize_settings_source", default=None)


def looked_up_once(call):
    """Decorate a call so that within it :func:`dask_config` looks for what could configure
    it once, at its start (settings are still read at call time: the next call looks
    again). Without dask each look scans the environment and stats five folders (~18 us),
    and a call read its settings ~13 times: ~0.25 ms of a warm 10-item call's ~1.1 ms
    (session 24, cProfile of a /tmp script)."""

    @functools.wraps(call)
    def looked_up(*args, **kwargs):
        token = _LOOKED.set((_look(),))
        try:
            return call(*args, **kwargs)
        finally:
            _LOOKED.reset(token)

    return looked_up


def _look():
    """:func:`dask_config`, looked up now."""
    return registered_dask_config() if dask_sources.configured() else None


def registered_dask_config():
    """``dask.config`` (loaded now, if it is not), the shipped defaults registered with it
    once. dask_sources' import hook calls it as dask.config loads, whatever the call running
    looked up at its start."""
    # The module itself: loading, dask's package does not hold it yet (dask_sources'
    # import hook registers the defaults from inside dask.config's loading).
    dask_config = importlib.import_module("dask.config")
    if not _registered.is_set():
        dask_config.update_defaults(DEFAULTS)
        _registered.set()
    return dask_config


_look()  # where anything could configure a call, registered now: dask.config.get("amorsize...") finds them

# DASK_AMORSIZE__TRAINING_DIR as it was when this module loaded: dask.config reads the
# environment once, as it loads, and so do the shipped settings (hunt 19: changed between
# calls, it was obeyed until something loaded dask, then frozen).
_TRAINING_DIR_VARIABLE = (dask_sources.TRAINING_DIR_VARIABLE in os.environ, dask_sources.training_dir_variable())

_MISSING = object()


def get(key: str, default: Any = None) -> Any:
    """Value of ``amorsize.<key>``: from dask.config (env vars and YAML files included), or
    the shipped defaults where nothing could configure it (:func:`dask_config`).

    Code that swaps ``dask.config.config`` wholesale (``distributed.utils_test``'s clean-up
    does) can drop the shipped defaults registered at import: they are registered again.
    """
    cfg = dask_config()
    if cfg is None:
        return _shipped(key, default)
    found = cfg.get(f"amorsize.{key}", default=_MISSING)
    if found is _MISSING:
        cfg.update_defaults(DEFAULTS)
        found = cfg.get(f"amorsize.{key}", default=default)
    return found


def _shipped(key: str, default: Any) -> Any:
    """``amorsize.<key>`` of :data:`DEFAULTS`, and the training directory's variable.

    >>> _shipped("model.k", None), _shipped("model.nothing", 5)
    (8, 5)
    """
    if key == "training-dir" and _TRAINING_DIR_VARIABLE[0]:
        return _TRAINING_DIR_VARIABLE[1]
    node: Any = DEFAULTS["amorsize"]
    for part in key.split("."):
        if not isinstance(node, dict) or part not in node:
            return default
        node = node[part]
    return node


def get_bytes(key: str) -> int:
    """``amorsize.<key>`` as a number of bytes (an int, or a string such as ``"64 MiB"``).

    >>> import dask
    >>> with dask.config.set({"amorsize.store.max-line-bytes": "1 kiB"}):
    ...     get_bytes("store.max-line-bytes")
    1024
    """
    value = get(key)
    try:
        return int(parse_bytes(value) if isinstance(value, str) else value)
    except (TypeError, ValueError) as exc:
        raise ValueError(
            f"dask config amorsize.{key}={value!r} is not a size in bytes; use an integer or a "
            f"string such as '64 MiB' (see amorsize-schema.yaml)"
        ) from exc


def parse_bytes(text: str) -> int:
    """``dask.utils.parse_bytes``: a string size is a setting dask.config gave (the shipped
    defaults are numbers), so dask is loaded then."""
    import dask.utils

    return dask.utils.parse_bytes(text)


def worker_heap_pad() -> int:
    """``amorsize.worker-heap-pad`` in bytes (a ValueError naming a negative one)."""
    pad = get_bytes("worker-heap-pad")
    if pad < 0:
        raise ValueError(f"dask config amorsize.worker-heap-pad={get('worker-heap-pad')!r} is negative; "
                         "use 0 (glibc's default) or a size such as '16 MiB'")
    return pad


def default_training_dir() -> pathlib.Path:
    """The training directory: ``amorsize.training-dir`` or the user's cache dir.

    >>> default_training_dir().is_absolute()
    True
    """
    configured = get("training-dir")
    if configured:
        return pathlib.Path(os.path.expanduser(str(configured)))
    return user_cache_dir() / "training"


def user_cache_dir() -> pathlib.Path:
    """``$XDG_CACHE_HOME/amorsize_dask`` (``~/.cache`` by default, and when it is relative,
    as the XDG spec says; ``%LOCALAPPDATA%`` on Windows; ``amorsize_dask-<uid>`` in the
    temporary directory when there is no home to be found)."""
    if os.name == "nt":
        base = os.environ.get("LOCALAPPDATA") or os.path.expanduser("~/AppData/Local")
    else:
        xdg = os.environ.get("XDG_CACHE_HOME", "")
        base = xdg if os.path.isabs(xdg) else os.path.join(_home(), ".cache")
        if not os.path.isabs(base):  # no home at all (HOME unset, a uid without a passwd
            # entry): "~/.cache" made a folder named "~" in each working directory (hunt 19)
            return pathlib.Path(tempfile.gettempdir()) / f"amorsize_dask-{os.getuid()}"
    return pathlib.Path(base) / "amorsize_dask"


def _home() -> str:
    """``~``; with ``HOME`` set but empty (a service's environment), the account's home, as
    with ``HOME`` unset: ``expanduser`` made it "" and the cache ``/.cache``, at the root."""
    home = os.path.expanduser("~")
    if os.environ.get("HOME") == "" and os.name != "nt":
        try:
            import pwd

            home = pwd.getpwuid(os.getuid()).pw_dir
        except (ImportError, KeyError):
            pass
    return home

"""The ``amorsize`` namespace of ``dask.config``: shipped YAML defaults and lookups.

Settings are read at call time, never frozen at import:

>>> import dask
>>> from amorsize_dask.config import get
>>> with dask.config.set({"amorsize.planner.max-threads": 8}):
...     get("planner.max-threads")
8
"""

from __future__ import annotations

import os
import pathlib
from typing import Any

# numpy (the training store's arrays) loads before dask, here where every public function
# first imports dask: once loaded, OpenBLAS's threads spin on a core for ~40 ms. Loaded
# after dask, as the imports fell before, that spin ran inside a script's first call: 64
# threads started in 26-55 ms instead of 9 ms, and bench --fresh io-wait's thread run took
# 72-82 ms instead of 50-55 ms (/tmp scripts, fresh processes, session 9). Before dask's
# import (~140 ms), the spin overlaps it.
import numpy  # noqa: F401

import dask.config
import dask.utils
import yaml

__all__ = ["DEFAULTS_FILE", "SCHEMA_FILE", "DEFAULTS", "get", "get_bytes", "worker_heap_pad", "default_training_dir",
           "user_cache_dir"]

_HERE = pathlib.Path(__file__).parent
DEFAULTS_FILE = _HERE / "amorsize.yaml"
SCHEMA_FILE = _HERE / "amorsize-schema.yaml"


def _load_defaults() -> dict:
    with open(DEFAULTS_FILE) as f:
        defaults = yaml.safe_load(f)
    dask.config.update_defaults(defaults)
    return defaults


DEFAULTS = _load_defaults()


_MISSING = object()


def get(key: str, default: Any = None) -> Any:
    """Value of ``amorsize.<key>`` from dask.config (env vars and YAML files included).

    Code that swaps ``dask.config.config`` wholesale (``distributed.utils_test``'s clean-up
    does) can drop the shipped defaults registered at import: they are registered again.
    """
    found = dask.config.get(f"amorsize.{key}", default=_MISSING)
    if found is _MISSING:
        dask.config.update_defaults(DEFAULTS)
        found = dask.config.get(f"amorsize.{key}", default=default)
    return found


def get_bytes(key: str) -> int:
    """``amorsize.<key>`` as a number of bytes (an int, or a string such as ``"64 MiB"``).

    >>> with dask.config.set({"amorsize.store.max-line-bytes": "1 kiB"}):
    ...     get_bytes("store.max-line-bytes")
    1024
    """
    value = get(key)
    try:
        return int(dask.utils.parse_bytes(value) if isinstance(value, str) else value)
    except (TypeError, ValueError) as exc:
        raise ValueError(
            f"dask config amorsize.{key}={value!r} is not a size in bytes; use an integer or a "
            f"string such as '64 MiB' (see amorsize-schema.yaml)"
        ) from exc


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
    as the XDG spec says; ``%LOCALAPPDATA%`` on Windows)."""
    if os.name == "nt":
        base = os.environ.get("LOCALAPPDATA") or os.path.expanduser("~/AppData/Local")
    else:
        xdg = os.environ.get("XDG_CACHE_HOME", "")
        base = xdg if os.path.isabs(xdg) else os.path.join(_home(), ".cache")
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

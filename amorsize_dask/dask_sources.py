"""Could anything but the shipped defaults configure this process's calls? Told without
loading dask (~0.1 s of a script's first call): dask loaded (code may have set it), a
``DASK_*`` variable, or a folder dask reads YAML files from. When nothing could, the
``amorsize`` settings are ``amorsize.yaml``'s, with the training directory's variable
(:func:`training_dir_variable`), and no client can be active.

>>> isinstance(configured(), bool)
True
"""

from __future__ import annotations

import importlib.machinery
import os
import site
import sys

__all__ = ["TRAINING_DIR_VARIABLE", "configured", "dask_config_paths", "training_dir_variable"]

# The one ``DASK_*`` variable read without dask: where runs are recorded (the benchmarks,
# the tests and a user's service set it to keep directories apart).
TRAINING_DIR_VARIABLE = "DASK_AMORSIZE__TRAINING_DIR"


def configured() -> bool:
    """Is dask loaded, or set by a ``DASK_*`` variable other than
    :data:`TRAINING_DIR_VARIABLE`, or by YAML files in one of :func:`dask_config_paths`?"""
    if "dask" in sys.modules:
        return True
    if any(name.startswith("DASK_") and name != TRAINING_DIR_VARIABLE for name in os.environ):
        return True
    return any(os.path.exists(path) for path in dask_config_paths())


def dask_config_paths() -> list[str]:
    """The folders ``dask.config`` reads YAML files from (its ``paths``; the ``DASK_*``
    variables that add to them make :func:`configured` true before)."""
    return ["/etc/dask", os.path.join(sys.prefix, "etc", "dask"),
            *[os.path.join(prefix, "etc", "dask") for prefix in site.PREFIXES],
            os.path.join(os.path.expanduser("~"), ".config", "dask")]


class _RegisterWhenDaskLoads:
    """A finder on ``sys.meta_path`` that hands the import system ``dask.config``'s usual
    spec, its loader told to register the ``amorsize`` defaults once the module has run
    (:func:`amorsize_dask.config.registered_dask_config`): code that loads dask after, or
    during, a call that did not then finds them, as when dask loaded first (hunt 19:
    ``dask.config.get("amorsize.model.k")`` raised KeyError)."""

    def find_spec(self, name, path, target=None):
        if name != "dask.config" or "dask.config" in sys.modules:
            return None
        spec = importlib.machinery.PathFinder.find_spec(name, path)
        if spec is None or not hasattr(spec.loader, "exec_module"):
            return None
        run = spec.loader.exec_module

        def exec_module(module):
            run(module)
            from . import config

            config.registered_dask_config()

        spec.loader.exec_module = exec_module
        return spec


if "dask.config" not in sys.modules:
    sys.meta_path.insert(0, _RegisterWhenDaskLoads())


def training_dir_variable():
    """:data:`TRAINING_DIR_VARIABLE`'s value as ``dask.config`` reads it (a Python
    literal, else none/null/true/false, else the text), or None when it is not set.

    >>> os.environ[TRAINING_DIR_VARIABLE] = "/data/runs"
    >>> training_dir_variable()
    '/data/runs'
    >>> del os.environ[TRAINING_DIR_VARIABLE]
    """
    text = os.environ.get(TRAINING_DIR_VARIABLE)
    if text is None:
        return None
    import ast  # here: ~1.7 ms of a script's first call otherwise, where it is mostly not set

    try:
        return ast.literal_eval(text)
    except (SyntaxError, ValueError):
        return {"none": None, "null": None, "false": False, "true": True}.get(text.lower(), text)

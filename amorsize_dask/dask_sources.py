"""Could anything but the shipped defaults configure this process's calls? Told without
loading dask (~0.1 s of a script's first call): dask loaded (code may have set it), a
``DASK_*`` variable, or a folder dask reads YAML files from. When nothing could, the
``amorsize`` settings are ``amorsize.yaml``'s, with the training directory's variable
(:func:`training_dir_variable`), and no client can be active.

>>> isinstance(configured(), bool)
True
"""

from __future__ import annotations

import ast
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
    try:
        return ast.literal_eval(text)
    except (SyntaxError, ValueError):
        return {"none": None, "null": None, "false": False, "true": True}.get(text.lower(), text)

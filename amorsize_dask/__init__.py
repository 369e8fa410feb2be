"""amorsize_dask: ``map(func, items)`` made fast without hand-tuning.

>>> import amorsize_dask as ad
>>> ad.map(abs, [-1, -2])
[1, 2]

The public names load on first use, so that importing the package costs nothing: the
process engine's workers import a module of it (:mod:`amorsize_dask.engines.process_worker`)
and must not pay for dask. ``ad.map`` (:mod:`amorsize_dask.entry`) runs a short job of a
fresh script before the planner loads (:mod:`amorsize_dask.planning.head`).
``distributed`` is imported only by what needs it (the dask engine, ``bag``, the plugin),
and dask only where something may configure the ``amorsize`` settings
(:mod:`amorsize_dask.dask_sources`); they are registered with ``dask.config`` then.
"""

import importlib

# concurrent.futures registers its exit hook when imported, which fails once the main
# thread has returned: a map that a non-daemon thread (or an executor's task) starts
# then, as builtins.map and Pool().map run there, failed importing the engines ("can't
# register atexit after shutdown"). Imported with the package, their cost (~22 ms with
# `python -X importtime`, paid by the first map otherwise) is the same.
import concurrent.futures.process  # noqa: F401
import concurrent.futures.thread  # noqa: F401

from .engines import exit_hooks  # noqa: F401  (knows the exit from its start)

__version__ = "0.1.0"

_PUBLIC = {
    "map": ("amorsize_dask.entry", "map"),
    "imap": ("amorsize_dask.stream.imap", "imap"),
    "plan": ("amorsize_dask.mapping", "plan"),
    "Plan": ("amorsize_dask.planning.plan", "Plan"),
    "TrainingStore": ("amorsize_dask.learning.store", "TrainingStore"),
    "bag": ("amorsize_dask.bag", None),
    "AmorsizePlugin": ("amorsize_dask.plugin", "AmorsizePlugin"),
    "AmorsizeAdaptive": ("amorsize_dask.cluster.adaptive", "AmorsizeAdaptive"),
}


def __getattr__(name):
    if name in _PUBLIC:
        module_name, attr = _PUBLIC[name]
        module = importlib.import_module(module_name)
        value = module if attr is None else getattr(module, attr)
        globals()[name] = value  # once: later lookups are plain attribute reads
        return value
    raise AttributeError(f"module 'amorsize_dask' has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | set(_PUBLIC))


__all__ = ["map", "imap", "plan", "Plan", "TrainingStore", "bag", "AmorsizePlugin", "AmorsizeAdaptive",
           "__version__"]

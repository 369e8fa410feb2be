"""amorsize_dask: ``map(func, items)`` made fast without hand-tuning.

>>> import amorsize_dask as ad
>>> ad.map(abs, [-1, -2])
[1, 2]

``distributed`` is imported only by what needs it (the dask engine, ``bag``, the plugin),
so the local engines import fast without a cluster.
"""

import importlib

from . import config as _config  # registers the shipped defaults with dask.config
from .mapping import map, plan
from .stream.imap import imap
from .planning.plan import Plan
from .learning.store import TrainingStore

__version__ = "0.1.0"

_LAZY = {
    "bag": ("amorsize_dask.bag", None),
    "AmorsizePlugin": ("amorsize_dask.plugin", "AmorsizePlugin"),
    "AmorsizeAdaptive": ("amorsize_dask.cluster.adaptive", "AmorsizeAdaptive"),
}


def __getattr__(name):
    if name in _LAZY:
        module_name, attr = _LAZY[name]
        module = importlib.import_module(module_name)
        return module if attr is None else getattr(module, attr)
    raise AttributeError(f"module 'amorsize_dask' has no attribute {name!r}")


__all__ = ["map", "imap", "plan", "Plan", "TrainingStore", "bag", "AmorsizePlugin", "AmorsizeAdaptive", "__version__"]

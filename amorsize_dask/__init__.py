"""amorsize_dask: ``map(func, items)`` made fast without hand-tuning.

>>> import amorsize_dask as ad
>>> ad.map(abs, [-1, -2])
[1, 2]
"""

from . import config as _config  # registers the shipped defaults with dask.config
from .mapping import map, plan
from .plan import Plan

__version__ = "0.1.0"

__all__ = ["map", "plan", "Plan", "__version__"]

"""The scheduler preload: ``dask scheduler --preload amorsize_dask.plugin --amorsize-dir PATH``.

The plugin itself lives in :mod:`amorsize_dask.cluster.plugin`; this module is the stable
name that ``--preload`` and the README give.
"""

from .cluster.plugin import AmorsizePlugin, dask_setup, install

__all__ = ["AmorsizePlugin", "dask_setup", "install"]

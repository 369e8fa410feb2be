"""The scheduler preload: ``dask scheduler --preload amorsize_dask.plugin --amorsize-dir PATH``.

The plugin itself lives in :mod:`amorsize_dask.cluster.plugin`; this module is the stable
name that ``--preload`` and the README give.
"""

import logging

import click

from .cluster.plugin import AmorsizePlugin, install

__all__ = ["AmorsizePlugin", "dask_setup", "install"]

logger = logging.getLogger("amorsize_dask")


@click.command()
@click.option("--amorsize-dir", type=str, default=None,
              help="Training directory shared by the cluster (default: amorsize.training-dir).")
def dask_setup(scheduler, amorsize_dir):
    """``dask scheduler --preload amorsize_dask.plugin --amorsize-dir PATH``."""
    from distributed import Scheduler

    if not isinstance(scheduler, Scheduler):
        logger.warning("amorsize_dask.plugin is a scheduler preload; ignored on %s", type(scheduler).__name__)
        return
    install(scheduler, amorsize_dir)

"""Test isolation: a private cache dir (machine overheads) and training dir per session;
the real cluster most tests run on."""

import os

import dask
import pytest


@pytest.fixture(scope="session", autouse=True)
def _private_dirs(tmp_path_factory):
    cache = tmp_path_factory.mktemp("cache")
    training = tmp_path_factory.mktemp("training")
    old = os.environ.get("XDG_CACHE_HOME")
    os.environ["XDG_CACHE_HOME"] = str(cache)
    with dask.config.set({"amorsize.training-dir": str(training)}):
        yield
    if old is None:
        os.environ.pop("XDG_CACHE_HOME", None)
    else:
        os.environ["XDG_CACHE_HOME"] = old


@pytest.fixture(scope="module")
def cluster_client():
    """A Client of a real LocalCluster: 2 worker processes of 1 thread (one per module)."""
    from distributed import Client, LocalCluster

    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=":0") as lc, \
            Client(lc) as c:
        yield c

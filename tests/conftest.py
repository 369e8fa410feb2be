"""Test isolation: a private cache dir (machine overheads) and training dir per session;
the shared ``client`` fixture (a real two-worker cluster per test module); machines made
busy (``busy_machine``, ``very_busy_machine``)."""

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
def client():
    """A client of a real two-worker ``LocalCluster`` (see tests/helpers/cluster.py), one per module."""
    from distributed import Client  # imported when a test asks for a cluster, not by every test

    from tests.helpers.cluster import local_cluster

    with local_cluster() as cluster, Client(cluster) as c:
        yield c



@pytest.fixture
def busy_machine():
    """One more busy process than there are cores: every thread waits for a core."""
    from tests.helpers.load import busy_processes, cores

    with busy_processes(cores() + 1):
        yield


@pytest.fixture
def very_busy_machine():
    """Four times as many busy processes as cores, plus one: a computing thread gets a
    fifth of a core (calibrating then read a task cost 3-4x the quiet machine's)."""
    from tests.helpers.load import busy_processes, cores

    with busy_processes(4 * cores() + 1):
        yield

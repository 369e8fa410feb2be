"""The real clusters the tests run on (never a mocked Dask)."""

from distributed import LocalCluster

# What DESIGN.md's tests use: two worker processes of one thread each, no fixed port.
TWO_WORKERS = {"n_workers": 2, "threads_per_worker": 1, "processes": True, "dashboard_address": ":0"}
# A scheduler and one worker thread in this process: for tests that reach into the scheduler.
IN_PROCESS = {"n_workers": 1, "threads_per_worker": 1, "processes": False, "dashboard_address": None}


def local_cluster(**changes) -> LocalCluster:
    """A ``LocalCluster`` of two one-thread worker processes, with ``changes`` applied."""
    return LocalCluster(**{**TWO_WORKERS, **changes})


def in_process_cluster(**changes) -> LocalCluster:
    """A ``LocalCluster`` whose scheduler and single worker run in this process."""
    return LocalCluster(**{**IN_PROCESS, **changes})

"""``amorsize_dask.map`` called inside a Dask task: it runs, and never deadlocks.

Two workers of one thread each: two outer tasks take both threads, so inner tasks can
only run if the outer ones leave the worker's pool while they wait (secede/rejoin).
"""

import multiprocessing

import pytest
from distributed import get_client

import amorsize_dask as ad

DEADLINE = 60


def inner(x):
    return x + 1


def outer_with(engine, use_worker_client=False):
    def outer(n):
        client = get_client() if use_worker_client else None
        return ad.map(inner, range(n), engine=engine, client=client, learn=False)
    return outer


def daemonic(_):
    return multiprocessing.current_process().daemon


def test_workers_are_daemonic_processes(client):
    assert all(client.gather(client.map(daemonic, range(2), pure=False)))


@pytest.mark.parametrize("engine", ["processes", "threads", "serial", "auto"])
def test_local_engines_inside_a_task(client, engine):
    futures = client.map(outer_with(engine), [50, 300], pure=False)
    assert client.gather(futures, errors="raise") == [list(range(1, 51)), list(range(1, 301))]


@pytest.mark.parametrize("engine", ["dask", "auto"])
def test_cluster_plan_inside_tasks_that_hold_every_thread(client, engine):
    futures = client.map(outer_with(engine, use_worker_client=True), [20, 400], pure=False)
    done = [f.result(timeout=DEADLINE) for f in futures]
    assert done == [list(range(1, 21)), list(range(1, 401))]

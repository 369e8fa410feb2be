"""Dask's own bookkeeping and the cluster's shape: per-function key prefixes, ``n_workers``
as worker restrictions, the cached shape, adaptive scaling."""

import os
import time

import pytest
from distributed import Client, Event
from distributed.deploy import Adaptive

import amorsize_dask as ad
from amorsize_dask.cluster import client as plugin_client
from amorsize_dask.cluster.adaptive import AmorsizeAdaptive
from amorsize_dask.cluster.plugin import AmorsizePlugin
from tests.helpers.cluster import in_process_cluster, local_cluster
from tests.helpers.funcs import square, worker_pid


def twice(x):
    return 2 * x


class CountingClient(Client):
    """A Client that counts its scheduler_info calls (the full worker details)."""

    n_info = 0

    def scheduler_info(self, *args, **kwargs):
        CountingClient.n_info += 1
        return super().scheduler_info(*args, **kwargs)


@pytest.fixture(scope="module")
def cluster():
    with local_cluster() as lc:
        yield lc


@pytest.fixture(scope="module")
def client(cluster):
    with Client(cluster) as c:
        yield c


def test_each_function_has_its_own_task_prefix(client, tmp_path):
    ad.map(square, range(20), client=client, engine="dask", n_workers=2, chunksize=5, training_dir=tmp_path)
    ad.map(twice, range(20), client=client, engine="dask", n_workers=2, chunksize=5, training_dir=tmp_path)
    prefixes = client.run_on_scheduler(lambda dask_scheduler: sorted(dask_scheduler.task_prefixes))
    assert "amorsize-square" in prefixes and "amorsize-twice" in prefixes
    assert "amorsize" not in prefixes


def test_n_workers_restricts_the_tasks_to_that_many_workers(client, tmp_path):
    pids = ad.map(worker_pid, range(40), client=client, engine="dask", n_workers=1, chunksize=2,
                  training_dir=tmp_path)
    assert len(set(pids)) == 1 and os.getpid() not in pids
    both = ad.map(worker_pid, range(40), client=client, engine="dask", n_workers=2, chunksize=1,
                  training_dir=tmp_path)
    assert set(both) <= set(client.run(os.getpid).values())


def test_cluster_shape_is_cached_until_workers_change(cluster, tmp_path):
    with CountingClient(cluster) as c:
        ad.map(square, range(10), client=c, engine="dask", n_workers=2, chunksize=5, training_dir=tmp_path)
        first = CountingClient.n_info
        ad.map(square, range(10), client=c, engine="dask", n_workers=2, chunksize=5, training_dir=tmp_path)
        assert CountingClient.n_info == first  # unchanged workers: not fetched again
        cluster.scale(3)
        c.wait_for_workers(3)
        try:
            plan = ad.plan(square, range(10), client=c, training_dir=tmp_path, engine="dask")
            assert CountingClient.n_info == first + 1
            assert "3 worker threads" in plan.explain() or plan.source != "sample"
        finally:
            cluster.scale(2)
            c.wait_for_workers(2)


def blocked(i):
    Event("amorsize-test-go").wait()
    return i


def test_adaptive_target_is_the_larger_of_dask_and_amorsize(tmp_path):
    with in_process_cluster() as lc, Client(lc) as c:
        c.register_plugin(AmorsizePlugin(training_dir=str(tmp_path)))
        adaptive = lc.adapt(Adaptive=AmorsizeAdaptive, minimum=1, maximum=8, interval="1h")
        go = Event("amorsize-test-go")
        try:
            busy = c.map(blocked, range(60), pure=False)  # other work: queued, unknown durations
            deadline = time.monotonic() + 30
            while c.run_on_scheduler(lambda dask_scheduler: len(dask_scheduler.tasks)) < 60:
                assert time.monotonic() < deadline, "the tasks never reached the scheduler"
                time.sleep(0.01)  # polling the scheduler, with a deadline
            own = c.sync(Adaptive.target, adaptive)
            assert own > 1, "the cluster's own work must ask for more than 1 worker here"
            run = {"run_id": "0123456789abcdef", "n_tasks": 4, "workload": "0123456789abcdef",
                   "function": "tests.f", "features": {"n_items": 40, "n_sampled": 0, "planning_seconds": 0.0},
                   "plan": {"engine": "dask", "n_workers": 1, "chunksize": 10, "source": "default"},
                   "predicted_seconds": 0.01, "planning_seconds": 0.0}
            plugin_client.register_run(c, run)  # a small amorsize run: needs 1 thread
            assert plugin_client.remote_target(c, 5.0) == 1
            assert c.sync(adaptive.target) == max(own, 1) == own
        finally:
            go.set()
            adaptive.stop()
        assert c.gather(busy) == list(range(60))

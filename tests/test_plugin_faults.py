"""The plugin under faults and load: many clients at once, a client that disconnects
mid-run, a run of 100,000 tasks (memory stays bounded)."""

import concurrent.futures
import time

import pytest
from distributed import Client

import amorsize_dask as ad
from amorsize_dask.cluster import client as plugin_client
from amorsize_dask.engines.dask import new_run_id, task_key
from amorsize_dask.cluster.plugin import AmorsizePlugin
from tests.helpers.cluster import in_process_cluster, local_cluster

DEADLINE = 60


def spin(x):
    return sum(range(300)) + x


def slow(x):
    time.sleep(0.05)
    return x


def on_plugin(client, fn):
    return client.run_on_scheduler(lambda dask_scheduler: fn(dask_scheduler.plugins["amorsize"]))


def run_message(run_id, n_tasks):
    return {"run_id": run_id, "n_tasks": n_tasks, "workload": "0123456789abcdef", "function": "tests.f",
            "features": {"n_items": n_tasks, "n_sampled": 0, "planning_seconds": 0.0},
            "plan": {"engine": "dask", "n_workers": 2, "chunksize": 1, "source": "default"},
            "predicted_seconds": 1.0, "planning_seconds": 0.0}


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    training = tmp_path_factory.mktemp("plugin-faults")
    with local_cluster() as lc, Client(lc) as c:
        c.register_plugin(AmorsizePlugin(training_dir=str(training)))
        yield lc, c, training


def test_ten_clients_planning_at_once(cluster):
    lc, main, training = cluster
    items = list(range(3000))
    ad.map(spin, items, client=main, training_dir=training)  # something for the model to answer

    def plan_from_own_client(i):
        with Client(lc.scheduler_address, set_as_default=False) as c:
            p = ad.plan(spin, items, client=c, training_dir=training)
            out = ad.map(spin, items[: 100 + i], client=c, training_dir=training, learn=False)
            return p, out

    with concurrent.futures.ThreadPoolExecutor(10) as pool:
        outcomes = list(pool.map(plan_from_own_client, range(10)))
    for i, (p, out) in enumerate(outcomes):
        assert p.n_items == 3000 and p.engine in ("serial", "dask")
        assert out == [spin(x) for x in items[: 100 + i]]
    assert on_plugin(main, lambda plugin: plugin.n_plans) >= 10
    assert ad.map(spin, range(50), client=main, training_dir=training) == [spin(x) for x in range(50)]


def test_client_that_disconnects_mid_run_leaves_nothing_pending(cluster):
    lc, main, training = cluster
    before = on_plugin(main, lambda plugin: plugin.pending_runs())
    leaving = Client(lc.scheduler_address, set_as_default=False)
    run_id = new_run_id()
    plugin_client.register_run(leaving, run_message(run_id, 40))
    futures = leaving.map(slow, range(40), key=[task_key(run_id, i) for i in range(40)], pure=False)
    assert futures
    leaving.close()  # mid-run: its tasks are forgotten, so the run is dropped
    deadline = time.monotonic() + DEADLINE
    while on_plugin(main, lambda plugin: plugin.pending_runs()) > before and time.monotonic() < deadline:
        time.sleep(0.05)
    assert on_plugin(main, lambda plugin: plugin.pending_runs()) == before
    assert ad.map(spin, range(20), client=main, training_dir=training) == [spin(x) for x in range(20)]


def test_run_of_100k_tasks_keeps_plugin_memory_bounded(tmp_path):
    with in_process_cluster() as lc, Client(lc) as c:
        c.register_plugin(AmorsizePlugin(training_dir=str(tmp_path)))
        run_id = new_run_id()
        plugin_client.register_run(c, run_message(run_id, 100_000))

        def drive(plugin):
            import tracemalloc

            tracemalloc.start()
            for i in range(100_000):
                plugin.transition(task_key(run_id, i), "processing", "memory", stimulus_id="s", worker="w",
                                  startstops=[{"action": "compute", "start": 0.0, "stop": 1e-4}])
            peak = tracemalloc.get_traced_memory()[1]
            tracemalloc.stop()
            return peak, plugin.pending_runs()

        peak, pending = on_plugin(c, drive)
        assert peak < 2_000_000  # a bit per task while running, nothing per task after
        assert pending == 1  # finished, waiting for the client's confirmation
        assert plugin_client.finish_run(c, run_id) is True
        assert on_plugin(c, lambda plugin: plugin.pending_runs()) == 0


def test_a_run_is_recorded_under_the_shape_it_was_planned_for(tmp_path):
    """Workers that join between a plan and its run's start (a restart's workers coming back,
    adaptive scaling) change the cluster's fingerprint: the plan of one task for the one
    worker present was filed under the three workers that joined, and later plans for
    three workers repeated it (hunt 14: 1x1988 items, 41 s against 14-19 s). The client
    sends the fingerprint it planned for; the plugin files the run there."""
    from amorsize_dask import TrainingStore
    from amorsize_dask.target.fingerprint import Fingerprint

    with in_process_cluster() as lc, Client(lc) as c:
        c.register_plugin(AmorsizePlugin(training_dir=str(tmp_path)))
        now = Fingerprint.from_fields(on_plugin(c, lambda plugin: plugin._fingerprint().as_dict()))
        planned_for = Fingerprint.from_fields(dict(now.as_dict(), n_workers=7, total_threads=7))
        run_id = new_run_id()
        plugin_client.register_run(c, dict(run_message(run_id, 4), fingerprint_fields=planned_for.as_dict()))

        def finish(plugin):
            for i in range(4):
                plugin.transition(task_key(run_id, i), "processing", "memory", stimulus_id="s", worker="w",
                                  startstops=[{"action": "compute", "start": 0.0, "stop": 1e-3}])

        on_plugin(c, finish)
        assert plugin_client.finish_run(c, run_id) is True
        with pytest.raises(ValueError, match="fingerprint_fields"):
            plugin_client.register_run(c, dict(run_message(new_run_id(), 4), fingerprint_fields={"kind": "local"}))
    (record,) = TrainingStore(tmp_path).records()
    assert record["fingerprint"] == planned_for.id != now.id

"""The scheduler plugin never holds the scheduler's event loop: its file I/O (writing a
record, reading and re-indexing the store) runs off the loop, even on a slow filesystem.

A slow filesystem is simulated by a TrainingStore whose reads and writes take
``LATENCY`` seconds; a ticker on the loop measures its longest gap meanwhile.
"""

import asyncio
import inspect
import time

import pytest
from distributed import Client


from amorsize_dask.cluster.plugin import AmorsizePlugin
from amorsize_dask.engines.dask import task_key
from amorsize_dask.learning.store import TrainingStore
from tests.helpers.cluster import in_process_cluster

LATENCY = 1.0  # seconds per slow store operation
TICK = 0.001


class SlowStore(TrainingStore):
    def append(self, record, *args, **kwargs):
        time.sleep(LATENCY)
        return super().append(record, *args, **kwargs)

    def records(self, *args, **kwargs):
        time.sleep(LATENCY)
        return super().records(*args, **kwargs)

    def read_new_columns(self, *args, **kwargs):
        time.sleep(LATENCY)
        return super().read_new_columns(*args, **kwargs)


async def _longest_gap_while(awaitable_or_value):
    """Run the handler's result while a ticker runs on the loop; (result, longest gap)."""
    gaps = []
    stop = asyncio.Event()

    async def ticker():
        while not stop.is_set():
            t0 = time.perf_counter()
            await asyncio.sleep(TICK)
            gaps.append(time.perf_counter() - t0)

    task = asyncio.ensure_future(ticker())
    await asyncio.sleep(0)  # the ticker runs first
    try:
        result = awaitable_or_value()
        if inspect.isawaitable(result):
            result = await result
    finally:
        stop.set()
        await task
    return result, max(gaps, default=0.0)


def _finished_run(plugin, run_id):
    run = {"run_id": run_id, "n_tasks": 2, "workload": "0123456789abcdef", "function": "tests.f",
           "features": {"n_items": 20, "n_sampled": 0, "planning_seconds": 0.0},
           "plan": {"engine": "dask", "n_workers": 2, "chunksize": 10, "source": "default"},
           "predicted_seconds": 1.0, "planning_seconds": 0.0}
    plugin.amorsize_run(run)
    for i in range(2):
        plugin.transition(task_key(run_id, i, None), "processing", "memory", stimulus_id="s",
                          startstops=[{"action": "compute", "start": 1.0, "stop": 1.5}])


@pytest.fixture
def scheduler_and_client(tmp_path):
    """An in-process cluster whose scheduler runs the plugin on a slow store."""
    with in_process_cluster() as lc, Client(lc) as c:
        c.register_plugin(AmorsizePlugin(training_dir=str(tmp_path)))
        plugin = lc.scheduler.plugins["amorsize"]
        plugin.learner.store = SlowStore(plugin.learner.store.path, compact=True)  # as the learner keeps it
        yield plugin, c


def test_recording_a_run_on_a_slow_store_keeps_the_loop_responsive(scheduler_and_client):
    plugin, c = scheduler_and_client
    # Functions sent to the scheduler travel pickled: they find the plugin there.
    c.run_on_scheduler(lambda dask_scheduler: _finished_run(dask_scheduler.plugins["amorsize"], "0123456789abcdef"))

    async def measure(dask_scheduler):
        found = dask_scheduler.plugins["amorsize"]
        return await _longest_gap_while(lambda: found.amorsize_done("0123456789abcdef"))

    written, gap = c.run_on_scheduler(measure)
    assert written is True
    assert gap < LATENCY / 2, f"the loop was held {gap:.3f} s while the record was written"
    assert len(TrainingStore(plugin.learner.store.path).records()) == 1


def test_planning_on_a_slow_store_keeps_the_loop_responsive(scheduler_and_client):
    _, c = scheduler_and_client

    async def measure(dask_scheduler):
        found = dask_scheduler.plugins["amorsize"]
        return await _longest_gap_while(lambda: found.amorsize_plan("0123456789abcdef", "tests.f", 100))

    reply, gap = c.run_on_scheduler(measure)
    assert reply["plan"] is None and reply["cores"] == 1
    assert gap < LATENCY / 2, f"the loop was held {gap:.3f} s while the store was read"

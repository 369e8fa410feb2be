"""``amorsize_dask.map`` on a real cluster without the plugin: same results as ``builtins.map``."""

import builtins
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time

import numpy as np
import pytest
from distributed import Client

import amorsize_dask as ad
from amorsize_dask.cluster import client as plugin_client
from amorsize_dask.learning.store import TrainingStore
from tests.helpers.cluster import local_cluster

DEADLINE = 60


def square(x):
    return x * x


def twice(x):
    return x * 2


def fail_on_seven(x):
    if x == 7:
        raise ValueError(f"seven is bad: {x}")
    return x


class SlowLogged:
    """Sleeps ~50 ms per item and appends the item to a marker file once done."""

    def __init__(self, path):
        self.path = str(path)

    def __call__(self, x):
        time.sleep(0.05)
        with open(self.path, "a") as f:
            f.write(f"{x}\n")
        return x * 3


def test_dask_engine_without_client_says_what_to_do():
    # In a fresh process: no Client exists there (distributed imported, but unused).
    code = textwrap.dedent(
        """
        import distributed, amorsize_dask as ad
        try:
            ad.map(abs, [1, 2], engine="dask")
        except ValueError as exc:
            print(exc)
        """
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=DEADLINE)
    assert "engine='dask' needs a distributed Client" in out.stdout, out.stderr
    assert "client=" in out.stdout and "distributed.Client()" in out.stdout


@pytest.fixture(scope="module")
def client():
    with local_cluster() as lc, Client(lc) as c:
        assert not plugin_client.has_plugin(c)
        yield c


@pytest.mark.parametrize(
    "make_items",
    [
        lambda: list(range(-20, 20)),
        lambda: tuple("abcdefgh"),
        lambda: range(3, 40, 3),
        lambda: np.arange(12.0),
        lambda: (x for x in range(15)),
        lambda: {3: "a", 1: "b", 2: "c"},
        lambda: [],
    ],
    ids=["list", "tuple", "range", "ndarray", "generator", "dict", "empty"],
)
def test_results_in_order(client, make_items):
    expected = list(builtins.map(twice, make_items()))
    assert ad.map(twice, make_items(), client=client, engine="dask", n_workers=2, chunksize=3) == expected
    assert ad.map(twice, make_items(), client=client) == expected


def test_planned_dask_run_in_order(client):
    items = list(range(500))
    assert ad.map(square, items, client=client, engine="dask") == [x * x for x in items]


def test_client_records_each_run_without_plugin(client, tmp_path):
    items = list(range(40))
    assert ad.map(twice, items, client=client, engine="dask", n_workers=2, chunksize=5,
                  training_dir=tmp_path) == [2 * x for x in items]
    ad.map(twice, items, client=client, training_dir=tmp_path)
    records = TrainingStore(tmp_path).records()
    assert len(records) == 2
    first = records[0]
    assert first["plan"] == {"engine": "dask", "n_workers": 2, "chunksize": 5, "source": "default"}
    assert set(first["features"]) == {"n_items", "item_seconds", "n_sampled", "planning_seconds"}
    assert first["fingerprint_fields"]["kind"] == "cluster" and first["compute_seconds"] >= 0


def test_exception_keeps_type_and_names_item(client):
    with pytest.raises(ValueError, match="seven is bad") as info:
        ad.map(fail_on_seven, range(20), client=client, engine="dask", n_workers=2, chunksize=3)
    notes = "\n".join(getattr(info.value, "__notes__", []))
    assert "item 7" in notes and "fail_on_seven" in notes


def test_tiny_job_is_one_task_on_one_worker(client, tmp_path):
    plan = ad.plan(abs, range(50), client=client, training_dir=tmp_path)
    assert plan.engine == "dask" and plan.n_workers == 1 and plan.n_tasks <= 1, plan.explain()
    assert "only on the workers" in plan.explain()
    assert ad.map(abs, range(-25, 25), client=client) == [abs(x) for x in range(-25, 25)]


def test_tiny_job_runs_in_process_when_opted_in(client, tmp_path):
    plan = ad.plan(abs, range(50), client=client, allow_local=True, training_dir=tmp_path)
    assert plan.engine == "serial"
    text = plan.explain()
    assert "serial" in text and ("too little" in text or "every item was computed while sampling" in text
                                 or "no parallel plan beats it" in text), text
    assert ad.map(abs, range(-25, 25), client=client, allow_local=True) == [abs(x) for x in range(-25, 25)]


@pytest.mark.parametrize("n_workers,mapper", [(2, "map"), (1, "map"), (1, "imap")])
def test_killed_worker_loses_no_items(tmp_path, n_workers, mapper):
    """A worker killed mid-run: its chunks run again. With one worker planned, the chunks
    were pinned to the one that died: every round was lost (``LostTasksError``), and a
    stream waited for ever."""
    marker = tmp_path / "done.txt"
    items = list(range(60))
    func = SlowLogged(marker)
    with local_cluster() as lc, Client(lc) as c:
        pids = c.run(os.getpid)
        victim = pids[sorted(pids)[0]]  # the worker a one-worker plan is placed on (restricted_workers)
        outcome = {}
        run_on = ad.map if mapper == "map" else (lambda *a, **k: list(ad.imap(*a, **k)))

        def run():
            try:
                outcome["results"] = run_on(func, items, client=c, engine="dask", n_workers=n_workers, chunksize=2)
            except BaseException as exc:  # re-raised in the test thread below
                outcome["error"] = exc

        runner = threading.Thread(target=run)
        runner.start()
        try:
            deadline = time.monotonic() + DEADLINE
            while not (marker.exists() and len(marker.read_text().split()) >= 6):
                assert runner.is_alive() and time.monotonic() < deadline, "no task completed"
                time.sleep(0.01)  # polling a file the workers write, with a deadline
            os.kill(victim, signal.SIGKILL)
        finally:
            runner.join(DEADLINE)
        assert not runner.is_alive()
        if "error" in outcome:
            raise outcome["error"]
        assert outcome["results"] == [x * 3 for x in items]
        assert victim not in c.run(os.getpid).values()  # the worker really died (and was replaced)
        done = [int(x) for x in marker.read_text().split()]
        assert set(done) == set(items)  # some items ran twice: the dead worker's chunk again


def big_result(x):
    return np.full(6_000_000, x, dtype=np.float64)  # 48 MB


def test_large_results_are_planned_within_the_workers_memory_limit(tmp_path):
    """Workers limited to 300 MB, items whose results are 48 MB: the plan put 7 results in
    one task (334 MB) and the worker's nanny killed it, where ``Client.map`` (a task per
    item) ran. A chunk of results now fits a worker thread's share of its limit. (The run
    itself is not asserted: at this limit the workers' results still pile up faster than
    they are gathered, and the nanny kills them, where ``Client.map`` ran: an open issue.)"""
    with local_cluster(memory_limit="300MB") as lc, Client(lc) as c:
        p = ad.plan(big_result, range(8), client=c, training_dir=tmp_path)
    assert p.engine == "dask" and p.chunksize * 48e6 * 2 <= 300e6 * 0.5, p.explain()


def test_bench_oracle_runs_one_task_on_one_worker(client):
    # The cluster benchmark's oracle entry for a serial loop runs it on a worker: a
    # function that only a marked worker may run (as the worker-only family's) works.
    from amorsize_dask.bench.cluster import one_task_on_one_worker
    from amorsize_dask.bench.cluster_families import MARKER, _mark_workers, worker_only

    _mark_workers(client)
    assert MARKER not in os.environ
    seconds = one_task_on_one_worker(client, worker_only, list(range(20)))
    assert 0 < seconds < float("inf")


def test_bench_times_our_warm_call_in_turn_with_client_map(client, tmp_path):
    from amorsize_dask.bench.cluster import WARM_REPEATS, _warm_beside_client_map

    calls = []
    real = ad.mapping.run_map

    def counted(*args, **kwargs):
        calls.append(1)
        return real(*args, **kwargs)

    import amorsize_dask.bench.cluster as bench_cluster

    bench_cluster.run_map, saved = counted, bench_cluster.run_map
    try:
        ours, client_map, scaled = _warm_beside_client_map(client, abs, [-1, -2, -3], str(tmp_path), cap=30.0)
    finally:
        bench_cluster.run_map = saved
    assert ours.results == [1, 2, 3] and not scaled and 0 < client_map < 30
    assert len(calls) == WARM_REPEATS  # short: the median of several, in turn


def test_a_large_function_sampled_and_streamed_on_a_cluster_warns_of_no_large_graph(client, tmp_path):
    """The sampling task and imap's tasks carry the function and items in the graph on
    purpose, as the dask engine's do: distributed's "Sending large graph" warning (it
    tells users to scatter) was printed for a 32 MB closure."""
    import warnings

    import numpy as np

    big = np.arange(4_000_000, dtype=np.float64)

    def close_big(i):
        return float(big[i * 97 % len(big)])

    items = list(range(500))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert ad.map(close_big, items, client=client, training_dir=tmp_path) == [close_big(i) for i in items]
        assert list(ad.imap(close_big, items, client=client, training_dir=tmp_path / "s")) == [close_big(i) for i in items]
    assert not [w for w in caught if "Sending large graph" in str(w.message)]

"""Users' scripts on a cluster as users build them: a cluster still starting its workers,
a client that is not the default one, map and imap inside Dask tasks. Each runs as
``__main__`` in a fresh process against a real ``LocalCluster`` and is compared with
what ``Client.map`` (or ``builtins.map``) gives."""

import os

from .test_user_scripts import run_script

HEAD = """
import json, os, sys, threading, time
import amorsize_dask as ad
from distributed import Client, LocalCluster, get_worker

def work(x):
    return (x * x, get_worker().address)

def plain(x):
    return x * x
"""

NO_WORKERS_YET = """
out = {}
with LocalCluster(n_workers=0, threads_per_worker=1, dashboard_address=None) as cluster, Client(cluster) as client:
    lazy = ad.bag.map(plain, range(500), client=client)  # built before any worker exists
    threading.Timer(1.0, cluster.scale, [2]).start()     # workers join while map waits, as Client.map would
    got = ad.map(work, range(2000), client=client)
    out["map"] = [r[0] for r in got] == [x * x for x in range(2000)]
    out["imap"] = [r[0] for r in ad.imap(work, range(300), client=client)] == [x * x for x in range(300)]
    out["bag"] = lazy.compute() == [x * x for x in range(500)]
print(json.dumps(out))
"""


def _env(tmp_path):
    return {**os.environ, "DASK_AMORSIZE__TRAINING_DIR": str(tmp_path / "training")}


def test_a_cluster_still_starting_its_workers_is_waited_for(tmp_path):
    """``LocalCluster(n_workers=0)`` then ``scale(2)`` (as jobqueue and kubernetes clusters
    start): ``Client.map`` queues its tasks until workers come; so does ``map``, and a Bag
    built before any worker exists computes once they do."""
    out, _ = run_script(tmp_path, HEAD, NO_WORKERS_YET, env=_env(tmp_path), timeout=180)
    assert out == {"map": True, "imap": True, "bag": True}


NOT_THE_DEFAULT = """
out = {}
with LocalCluster(n_workers=2, threads_per_worker=1, dashboard_address=None) as cluster, \\
        Client(cluster, set_as_default=False) as client:
    mine = set(client.nthreads())
    got = ad.map(work, range(2000), client=client)
    out["map"] = [r[0] for r in got] == [x * x for x in range(2000)] and {r[1] for r in got} <= mine
    streamed = list(ad.imap(work, range(300), client=client, n_workers=1))
    out["imap"] = [r[0] for r in streamed] == [x * x for x in range(300)]
    out["imap workers"] = len({r[1] for r in streamed})
    try:
        bagged = ad.bag.map(work, range(500), client=client).compute()
        out["bag"] = [r[0] for r in bagged] == [x * x for x in range(500)] and {r[1] for r in bagged} <= mine
    except ValueError as exc:  # get_worker() outside a worker: computed off the cluster
        out["bag"] = str(exc)
print(json.dumps(out))
"""


def test_a_client_that_is_not_the_default_one_runs_everything(tmp_path):
    """``Client(..., set_as_default=False)``: map, imap (on the one worker ``n_workers=1``
    asks for) and the Bag's ``compute()`` run on that client's workers, as
    ``client.map`` / ``client.compute`` would."""
    out, _ = run_script(tmp_path, HEAD, NOT_THE_DEFAULT, env=_env(tmp_path), timeout=180)
    assert out == {"map": True, "imap": True, "imap workers": 1, "bag": True}


INSIDE_TASKS = """
from distributed import get_client

def streams(n):
    return sum(ad.imap(plain, range(n), client=get_client()))

def maps(n):
    return sum(ad.map(plain, range(n), client=get_client()))

out = {}
with LocalCluster(n_workers=2, threads_per_worker=1, dashboard_address=None) as cluster, Client(cluster) as client:
    for func in (maps, streams):  # every worker thread runs one outer task
        futures = client.map(func, [200, 300, 400, 500], pure=False)
        out[func.__name__] = client.gather(futures) == [sum(x * x for x in range(n)) for n in (200, 300, 400, 500)]
print(json.dumps(out))
"""


def test_map_and_imap_inside_dask_tasks_leave_their_thread_while_they_wait(tmp_path):
    """Outer tasks on every worker thread each stream an inner map: the inner chunks need
    those threads (imap waited on them from inside the task: no result in 15 s)."""
    out, _ = run_script(tmp_path, HEAD, INSIDE_TASKS, env=_env(tmp_path), timeout=120)
    assert out == {"maps": True, "streams": True}


ADAPTIVE = """
from distributed.deploy import Adaptive

def napping(x):
    time.sleep(0.02)  # I/O-like: 300 items are 6 s on one worker thread
    return (x * x, get_worker().address)

with LocalCluster(n_workers=1, threads_per_worker=1, dashboard_address=None) as cluster, Client(cluster) as client:
    cluster.adapt(Adaptive=Adaptive, minimum=1, maximum=2, interval="100ms", wait_count=1000)
    from amorsize_dask.mapping import run_map
    outcome = run_map(napping, range(300), client=client)
    out = {"same": [r[0] for r in outcome.results] == [x * x for x in range(300)],
           "workers_used": len({r[1] for r in outcome.results}),
           "plan": [outcome.plan.engine, outcome.plan.n_workers, outcome.plan.chunksize, outcome.plan.n_tasks],
           "reasons": outcome.plan.reasons}
print(json.dumps(out))
"""


def test_a_run_on_an_adaptive_cluster_leaves_tasks_for_the_workers_it_adds(tmp_path):
    """``cluster.adapt(maximum=2)`` on one worker: ``Client.map`` (a task per item) is
    shared with the worker adaptive scaling adds; a plan sized to the one worker present
    (one task of 6 s) kept the second worker idle, and dask's ``Adaptive`` never asked
    for it (one task cannot be shared)."""
    out, proc = run_script(tmp_path, HEAD, ADAPTIVE, env=_env(tmp_path), timeout=180)
    assert out["same"], out
    assert out["workers_used"] == 2, out


UNPICKLABLE_RESULT = """
import logging
logging.getLogger("distributed").setLevel(logging.CRITICAL + 1)  # distributed logs the failed pickling

def open_lock(x):
    return threading.Lock() if x == 5 else x  # item 5's result cannot travel back

with LocalCluster(n_workers=2, threads_per_worker=1, dashboard_address=None) as cluster, Client(cluster) as client:
    out = {}
    for name, run in [("map", lambda: ad.map(open_lock, range(10), client=client)),
                      ("map 2000", lambda: ad.map(open_lock, range(2000), client=client)),
                      ("imap", lambda: list(ad.imap(open_lock, range(10), client=client))),
                      ("imap 2000", lambda: list(ad.imap(open_lock, range(2000), client=client)))]:
        try:
            run()
            out[name] = "no error"
        except TypeError as exc:
            out[name] = str(exc)
    out["still works"] = ad.map(plain, range(50), client=client) == [x * x for x in range(50)]
print(json.dumps(out))
"""


def test_a_result_that_cannot_travel_back_from_a_worker_is_named(tmp_path):
    """A result that cannot be pickled (a lock) on item 5: a TypeError naming the item, on
    every path (the sample's first task, the chunks, a stream's head and chunks); the
    sample and the stream said ``Could not serialize object of type Sample`` (or
    ``ChunkResult``): the library's own classes, no item."""
    out, _ = run_script(tmp_path, HEAD, UNPICKLABLE_RESULT, env=_env(tmp_path), timeout=180)
    assert out.pop("still works") is True
    for name, message in out.items():
        assert "item 5 (lock" in message and "cannot be pickled" in message, (name, message)


TIGHT_MEMORY = """
import numpy as np

def big(x):
    return np.full(48 * 2**20 // 8, float(x))  # a 48 MB result

with LocalCluster(n_workers=2, threads_per_worker=1, memory_limit="300MB", dashboard_address=None) as cluster, \\
        Client(cluster) as client:
    before = set(client.scheduler_info()["workers"])
    runs = []
    for _ in range(3):  # the first plan from a sample, the next ones from the model
        got = ad.map(big, range(7), client=client)
        runs.append([float(a[0]) for a in got] == [float(x) for x in range(7)])
    after = set(client.scheduler_info()["workers"])
print(json.dumps({"runs": runs, "workers_kept": before == after}))
"""


def test_results_larger_than_a_workers_share_of_memory_kill_no_worker(tmp_path):
    """7 results of 48 MB on two workers limited to 300 MB: ``Client.map`` ran in ~3 s.
    Chunks came back as ``ChunkResult`` objects, which dask sized at 56 bytes: the workers
    never spilled them, the nanny killed them (45 times in a minute) and a run could wait
    for ever once none came back; chunks gathered already were pinned (and computed again)
    until the round ended."""
    out, _ = run_script(tmp_path, HEAD, TIGHT_MEMORY, env=_env(tmp_path), timeout=240)
    assert out == {"runs": [True, True, True], "workers_kept": True}, out

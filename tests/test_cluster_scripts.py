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

"""Clusters deployed as users deploy them (hunt 16): adaptive from zero workers, a worker
whose environment lacks this package, ``AmorsizeAdaptive`` on a scheduler without the plugin.
Each a script run as ``__main__``, with its own cluster."""

import os

import psutil

from .test_user_scripts import run_script

ADAPT_HEAD = """
import json, sys, time
from distributed import Client, LocalCluster
import amorsize_dask as ad

def work(x):
    return sum(i ^ x for i in range(2000))
"""

ADAPT_MAIN = """
with LocalCluster(n_workers=0, threads_per_worker=1, dashboard_address=None) as cluster, Client(cluster):
    if sys.argv[1] == "amorsize":
        cluster.adapt(Adaptive=ad.AmorsizeAdaptive, minimum=0, maximum=2, interval="200ms")
    else:
        cluster.adapt(minimum=0, maximum=2, interval="200ms")
    items = list(range(300))
    out = {"map": ad.map(work, items) == list(map(work, items)),
           "imap": list(ad.imap(work, items)) == list(map(work, items))}
print(json.dumps(out))
"""


def test_a_map_on_an_adaptive_cluster_at_zero_workers_starts_one(tmp_path):
    """It waited for a worker with nothing queued, for which adaptive scaling starts none:
    for ever (``Client.map``'s tasks are queued, and get one). ``AmorsizeAdaptive`` without
    the plugin too; and it printed the scheduler's "No handler amorsize_target" traceback."""
    env = {**os.environ, "DASK_AMORSIZE__TRAINING_DIR": str(tmp_path / "training")}
    for adaptive in ("distributed", "amorsize"):
        out, proc = run_script(tmp_path, ADAPT_HEAD, ADAPT_MAIN, args=[adaptive], env=env, timeout=120)
        assert out == {"map": True, "imap": True}, (adaptive, out)
        assert "amorsize_target" not in proc.stderr, proc.stderr[-3000:]


MISSING_HEAD = """
import json, os, subprocess, sys, time
from distributed import Client
import amorsize_dask as ad

# A worker whose Python cannot import amorsize_dask (another environment).
WORKER = ("import sys; sys.modules['amorsize_dask'] = None; "
          "from distributed.cli.dask_worker import main; sys.argv[0] = 'dask-worker'; main()")

def work(x):
    return x + 1
"""

MISSING_MAIN = """
common = ["--scheduler-file", "scheduler.json"]
procs = [subprocess.Popen([sys.executable, "-m", "distributed.cli.dask_scheduler", "--host", "127.0.0.1",
                           "--port", "0", "--dashboard-address", ":0", *common])]
try:
    while not os.path.exists("scheduler.json"):
        time.sleep(0.05)
    procs.append(subprocess.Popen([sys.executable, "-c", WORKER, "--nthreads", "1", "--no-nanny",
                                   "--dashboard-address", ":0", *common]))
    with Client(scheduler_file="scheduler.json", timeout="20s") as client:
        client.wait_for_workers(1)
        plain = client.gather(client.map(work, range(50))) == list(range(1, 51))
        try:
            ad.map(work, range(50), client=client)
            raised = None
        except Exception as exc:
            raised = str(exc)
        print(json.dumps({"client_map": plain, "raised": raised, "workers": len(client.nthreads())}))
finally:
    for proc in procs:
        proc.kill()
        proc.wait()
"""


def test_a_worker_without_the_package_is_a_clear_error_not_a_hang(tmp_path):
    """Hunt 16: the first amorsize task the worker could not load broke its connection, the
    worker stopped, and the map waited for ever with no message."""
    env = {**os.environ, "DASK_AMORSIZE__TRAINING_DIR": str(tmp_path / "training")}
    try:
        out, _ = run_script(tmp_path, MISSING_HEAD, MISSING_MAIN, env=env, timeout=120)
    finally:  # a script killed at its timeout leaves its scheduler and worker: nothing left running
        for proc in psutil.process_iter(["cwd"]):
            if proc.info["cwd"] == str(tmp_path):
                proc.kill()
    assert out["client_map"] is True, out
    assert out["raised"] and "cannot import amorsize_dask" in out["raised"] and "install" in out["raised"], out
    assert out["workers"] == 1, out  # the worker is still there

"""dask's own ``scheduler`` setting names the engine of ``engine="auto"``, as ``dask.compute``
obeys it before a default Client: ``dask.config.set(scheduler="synchronous")`` is how a
dask user debugs (pdb) or profiles in this process. Hunt 16: ignored — with a Client
active the items ran on its workers, without one on a process pool."""

import os

from .test_user_scripts import run_script

HEAD = """
import json, os, sys, threading
import dask
from distributed import Client, LocalCluster
import amorsize_dask as ad

def where(x):
    s = 0
    for i in range(20000):
        s += i
    return os.getpid(), threading.get_ident()
"""

MAIN = """
here = (os.getpid(), threading.get_ident())
items = range(400)
out = {}
with dask.config.set(scheduler="synchronous"):
    out["sync"] = set(ad.map(where, items)) == {here} and set(ad.imap(where, items)) == {here}
    out["sync plan"] = ad.plan(where, items).engine
with dask.config.set(scheduler="threads"):
    out["threads"] = {pid for pid, _ in ad.map(where, items)} == {os.getpid()}
with LocalCluster(n_workers=1, threads_per_worker=1, dashboard_address=None) as cluster, Client(cluster):
    with dask.config.set(scheduler="synchronous"):
        out["sync, a client active"] = set(ad.map(where, items)) == {here}
    out["the client"] = os.getpid() not in {pid for pid, _ in ad.map(where, items)}
print(json.dumps(out))
"""


def test_dasks_scheduler_setting_names_the_engine(tmp_path):
    env = {**os.environ, "DASK_AMORSIZE__TRAINING_DIR": str(tmp_path / "training")}
    out, _ = run_script(tmp_path, HEAD, MAIN, env=env, timeout=120)
    assert out == {"sync": True, "sync plan": "serial", "threads": True, "sync, a client active": True,
                   "the client": True}, out

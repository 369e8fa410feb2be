"""A map in a non-daemon thread (or an executor's task) finishes after the main thread
returns, as ``builtins.map`` and ``Pool().map`` do: the interpreter waits for that thread.

It failed on every engine: the package's first import inside the thread raised "can't
register atexit after shutdown" (concurrent.futures hooks the exit when imported), a map
already running had its pool stopped under it ("the interpreter is exiting: its worker
processes were stopped"), or its pool refused the chunks not yet sent ("cannot schedule
new futures after interpreter shutdown"); one run hung for the start barrier's 60 s.
"""

import json
import os

import pytest

from .test_user_scripts import run_script

HEAD = """
import json, sys, threading, time
from concurrent.futures import ThreadPoolExecutor
import amorsize_dask as ad

OUT, ENGINE, HOW, WHEN, CALL = sys.argv[1:6]

def cpu(x):
    s = 0
    for i in range(2000):
        s += i * x
    return s

def job():
    if WHEN == "after":
        time.sleep(0.3)  # the main thread has returned by now
    try:
        if CALL == "imap":
            got = list(ad.imap(cpu, range(20000), engine=ENGINE))
            out = {"ok": got == [cpu(x) for x in range(20000)]}
        else:
            got = ad.map(cpu, range(6000), engine=ENGINE)
            out = {"ok": got == [cpu(x) for x in range(6000)]}
    except Exception as exc:
        out = {"error": f"{type(exc).__name__}: {exc}"}
    with open(OUT, "w") as fh:
        json.dump(out, fh)
"""

MAIN = """
if HOW == "executor":
    ThreadPoolExecutor(1).submit(job)
else:
    threading.Thread(target=job).start()
if WHEN == "during":
    time.sleep(0.3)  # the map has started
print(json.dumps({"main": "returns"}))
"""


@pytest.mark.parametrize("engine,how,when", [
    ("processes", "executor", "during"), ("processes", "thread", "during"), ("processes", "executor", "after"),
    ("auto", "executor", "during"), ("auto", "thread", "after"), ("threads", "executor", "after"),
])
def test_a_map_in_a_non_daemon_thread_finishes_after_the_main_thread_returns(tmp_path, engine, how, when):
    out_file = tmp_path / "out.json"
    env = {**os.environ, "DASK_AMORSIZE__TRAINING_DIR": str(tmp_path / "training")}
    run_script(tmp_path, HEAD, MAIN, args=[out_file, engine, how, when, "map"], env=env, timeout=90)
    assert json.loads(out_file.read_text()) == {"ok": True}


@pytest.mark.parametrize("engine,when", [("processes", "during"), ("auto", "after")])
def test_a_stream_in_a_non_daemon_thread_finishes_after_the_main_thread_returns(tmp_path, engine, when):
    out_file = tmp_path / "out.json"
    env = {**os.environ, "DASK_AMORSIZE__TRAINING_DIR": str(tmp_path / "training")}
    run_script(tmp_path, HEAD, MAIN, args=[out_file, engine, "thread", when, "imap"], env=env, timeout=90)
    assert json.loads(out_file.read_text()) == {"ok": True}

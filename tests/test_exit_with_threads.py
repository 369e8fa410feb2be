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

# Every script's job writes what it got, or the error it met, to the file OUT.
REPORT = """
def report(compute):
    try:
        out = compute()
    except Exception as exc:
        out = {"error": f"{type(exc).__name__}: {exc}"}
    with open(OUT, "w") as fh:
        json.dump(out, fh)
"""

HEAD = REPORT + """
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
    if CALL == "imap":
        report(lambda: {"ok": list(ad.imap(cpu, range(20000), engine=ENGINE)) == [cpu(x) for x in range(20000)]})
    else:
        report(lambda: {"ok": ad.map(cpu, range(6000), engine=ENGINE) == [cpu(x) for x in range(6000)]})
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


WATCHED = REPORT + """
import json, os, sys, threading, time
import amorsize_dask as ad

OUT = sys.argv[1]
MARK = OUT + ".mark"

def cost(x):
    # Cheap items first (the sample plans serial), dear ones from 600 on: the serial run,
    # watched, overruns its prediction and is planned again once the main thread returned.
    if x == 600 and not os.path.exists(MARK):
        open(MARK, "w").close()
        time.sleep(0.2)
    end = time.perf_counter() + (0.003 if x >= 600 else 0.00001)
    while time.perf_counter() < end:
        pass
    return x * x

def job():
    report(lambda: {"ok": ad.map(cost, range(1000)) == [x * x for x in range(1000)]})
"""

WATCHED_MAIN = """
threading.Thread(target=job).start()
for _ in range(3000):  # until the serial run reaches item 600
    if os.path.exists(MARK):
        break
    time.sleep(0.01)
print(json.dumps({"main": "returns"}))
"""


def test_a_serial_run_planned_again_after_the_main_thread_returned_finishes_serially(tmp_path):
    """The watched serial run's new plan (processes) found its pool refusing work: the
    map raised "cannot schedule new futures after interpreter shutdown" (a CI run of the
    executor case above met it by chance)."""
    out_file = tmp_path / "out.json"
    env = {**os.environ, "DASK_AMORSIZE__TRAINING_DIR": str(tmp_path / "training")}
    run_script(tmp_path, WATCHED, WATCHED_MAIN, args=[out_file], env=env, timeout=90)
    assert (tmp_path / "out.json.mark").exists()  # the main thread returned as the serial run went on
    assert json.loads(out_file.read_text()) == {"ok": True}


ENGINE_AT_EXIT = REPORT + """
import json, sys, threading, time
from amorsize_dask.engines.threads import ThreadEngine

OUT = sys.argv[1]

def job():
    while threading.main_thread().is_alive():  # until the interpreter's exit hooks ran
        time.sleep(0.01)
    report(lambda: {"results": ThreadEngine().run(abs, list(range(-40, 0)), n_workers=2, chunksize=5).results})
"""

ENGINE_AT_EXIT_MAIN = """
threading.Thread(target=job).start()
print(json.dumps({"main": "returns"}))
"""


def test_the_thread_engine_runs_its_chunks_here_once_the_pools_take_no_new_work(tmp_path):
    """At exit a thread pool refuses new work, from any chunk on: those chunks run in the
    calling thread (a refusal after the first chunks were sent had left them running on
    the pool beside a serial rerun of every chunk: items run twice)."""
    out_file = tmp_path / "out.json"
    run_script(tmp_path, ENGINE_AT_EXIT, ENGINE_AT_EXIT_MAIN, args=[out_file], timeout=60)
    assert json.loads(out_file.read_text()) == {"results": list(range(40, 0, -1))}


FORKS = """
import json, os, sys
import amorsize_dask as ad

def sq(x):
    s = 0
    for i in range(3000):
        s += i
    return x * x
"""

FORKS_MAIN = """
first = ad.map(sq, range(2000), engine="processes") == [x * x for x in range(2000)]
pid = os.fork()
if pid == 0:  # the user's own child: maps too, on a pool of its own, and exits
    ok = ad.map(sq, range(500), engine="processes") == [x * x for x in range(500)]
    sys.exit(0 if ok else 3)
_, status = os.waitpid(pid, 0)
print(json.dumps({"first": first, "child": os.waitstatus_to_exitcode(status)}))
"""


def test_a_child_the_user_forks_after_a_map_exits_quietly(tmp_path):
    """Hunt 13: its exit printed ``AssertionError: can only join a child process``
    (multiprocessing's exit joined the parent's workers, which it had copied)."""
    env = {**os.environ, "DASK_AMORSIZE__TRAINING_DIR": str(tmp_path / "training")}
    out, proc = run_script(tmp_path, FORKS, FORKS_MAIN, env=env, timeout=90)
    assert out == {"first": True, "child": 0}, out
    assert "Traceback" not in proc.stderr, proc.stderr[-3000:]


DAEMON = """
import json, sys, threading, time
import amorsize_dask as ad

def cpu(x):
    s = 0
    for i in range(20000):
        s += i
    return x

def consume():
    if sys.argv[1] == "imap":
        for _ in ad.imap(cpu, range(100000), engine="processes"):
            pass
    else:
        ad.map(cpu, range(100000), engine="processes")
"""

DAEMON_MAIN = """
threading.Thread(target=consume, daemon=True).start()
time.sleep(1.0)
print(json.dumps({"main": "returns"}))
"""


@pytest.mark.parametrize("call", ["imap", "map"])
def test_a_daemon_threads_map_ends_silently_at_exit(tmp_path, call):
    """As a daemon thread in ``builtins.map`` does. Hunt 13: a stream's thread printed
    ``Exception in thread ...`` and a traceback the exit cut off mid-line (the exit had
    stopped its workers)."""
    env = {**os.environ, "DASK_AMORSIZE__TRAINING_DIR": str(tmp_path / "training")}
    _, proc = run_script(tmp_path, DAEMON, DAEMON_MAIN, args=[call], env=env, timeout=60)
    assert "Traceback" not in proc.stderr and "Exception" not in proc.stderr, proc.stderr[-3000:]

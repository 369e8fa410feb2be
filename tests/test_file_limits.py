"""Where files cannot be written as the library would like: a file size limit
(``ulimit -f``), and a script stopped by SIGTERM while a large function's file is open.

``multiprocessing.Pool().map`` runs in both; so must ``ad.map``, leaving nothing behind.
Scripts run as ``__main__`` in a subprocess (:func:`.test_user_scripts.run_script`).
"""

import os
import signal
import subprocess
import sys
import time

import pytest

from .test_user_scripts import run_script, script_text

SHM = "/dev/shm"

LIMITED_HEAD = """
import json, os, resource, sys
import amorsize_dask as ad

# A 2 KiB file size limit (ulimit -f 2): a multiprocessing Barrier's 4 KiB shared-memory
# arena cannot be sized, nor can a large function's file be written. Python ignores SIGXFSZ:
# the writes fail with EFBIG.
resource.setrlimit(resource.RLIMIT_FSIZE, (2048, 2048))
TABLE = list(range(300_000))  # read by the function: its pickle is ~1.5 MB

def scaled(x):
    return x * 2

def reads_table(x):
    return TABLE[x] + 1
"""

LIMITED_MAIN = """
items = list(range(200))
out = {"small": ad.map(scaled, items, engine="processes", n_workers=2, chunksize=20, learn=False) ==
                [x * 2 for x in items],
       "large": ad.map(reads_table, items, engine="processes", n_workers=2, chunksize=20, learn=False) ==
                [x + 1 for x in items]}
print(json.dumps(out))
"""


def _function_files() -> set:
    return {name for name in os.listdir(SHM) if name.startswith("amorsize-function-")} if os.path.isdir(SHM) else set()


@pytest.mark.parametrize("start_method", ["fork", "forkserver"])
def test_a_file_size_limit_runs_as_pool_does_and_leaves_no_file(tmp_path, start_method):
    """``Pool().map`` runs under ``ulimit -f 2``. ``ad.map`` raised WorkerStartError
    (EFBIG: its start barrier's shared memory), and a large function's file, cut short by
    the limit, was an OSError left behind in /dev/shm."""
    before = _function_files()
    env = {**os.environ, "DASK_AMORSIZE__START_METHOD": start_method}
    out, _ = run_script(tmp_path, LIMITED_HEAD, LIMITED_MAIN, env=env)
    assert out == {"small": True, "large": True}
    assert _function_files() - before == set()


STOPPED_HEAD = """
import json, os, sys, time
import amorsize_dask as ad

TABLE = list(range(300_000))  # its pickle is ~1.5 MB: it goes to the workers in a file

def slow(x):
    time.sleep(0.05)
    return TABLE[x]
"""

STOPPED_MAIN = """
print("mapping", flush=True)
ad.map(slow, range(2000), engine="processes", n_workers=2, chunksize=10, learn=False)
"""


@pytest.mark.skipif(not os.path.isdir(SHM), reason="no /dev/shm on this system")
def test_sigterm_during_a_map_leaves_no_function_file(tmp_path):
    """``docker stop``, systemd, ``timeout``: SIGTERM ends a script without its exit
    handlers; the large function's file in /dev/shm (5 MB for a notebook's model) stayed."""
    before = _function_files()
    path = tmp_path / "stopped.py"
    path.write_text(script_text(STOPPED_HEAD, STOPPED_MAIN, guard=True))
    env = {**os.environ, "DASK_AMORSIZE__START_METHOD": "forkserver"}
    proc = subprocess.Popen([sys.executable, str(path)], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, cwd=tmp_path, env=env)
    try:
        assert proc.stdout.readline().strip() == "mapping"
        deadline = time.monotonic() + 60
        while not (_function_files() - before) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert _function_files() - before, "the function never went to a file: nothing to test"
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=30)
    finally:
        proc.kill()
        proc.communicate()
    deadline = time.monotonic() + 20  # the workers exit with their parent, then the tracker cleans up
    while _function_files() - before and time.monotonic() < deadline:
        time.sleep(0.1)
    assert _function_files() - before == set()

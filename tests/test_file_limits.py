"""Files under a process that the library cannot take for granted: a file size limit
(``ulimit -f``), a script stopped by SIGTERM while a large function's file is open, and
the package's own files replaced under a running process (an upgrade).

``multiprocessing.Pool().map`` runs in each; so must ``ad.map``, leaving nothing behind, or
say what changed and what to do.
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


UPGRADED_HEAD = """
import json, os, sys, warnings
import amorsize_dask as ad
from amorsize_dask.errors import WorkerStartError

def scaled(x):
    return x * 2
"""

UPGRADED_MAIN = """
items = list(range(200))
out = {"before": ad.map(scaled, items, engine="processes", n_workers=2, chunksize=20, learn=False) ==
                 [x * 2 for x in items]}
chunks = os.path.join(os.path.dirname(ad.__file__), "engines", "chunks.py")
with open(chunks, "a") as fh:  # an upgrade installs new files under the running service
    fh.write("\\n# upgraded\\n")
os.environ["SERVICE_LOOP"] = "2"  # a pool for the new environment: its workers import the package afresh
try:
    ad.map(scaled, items, engine="processes", n_workers=2, chunksize=20, learn=False)
    out["processes"] = "ran"
except WorkerStartError as exc:
    out["processes"] = str(exc)
with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    out["auto"] = ad.map(scaled, items, learn=False) == [x * 2 for x in items]
print(json.dumps(out))
"""


@pytest.mark.parametrize("start_method", ["spawn", "forkserver", "fork"])
def test_a_package_upgraded_under_a_running_process_is_named_not_run(tmp_path, start_method):
    """A service mapping in a loop while the package is upgraded in place: workers started
    by spawn imported the new files, the caller ran the old code, and every chunk failed
    (``AttributeError: 'ChunkResult' object has no attribute 'results'``, a field renamed).
    A new pool that would import the package afresh is refused, naming the change and the
    remedy (``engine="auto"`` then runs here); forked workers copy the caller: they run."""
    import shutil

    import amorsize_dask

    site = tmp_path / "site"
    shutil.copytree(os.path.dirname(amorsize_dask.__file__), site / "amorsize_dask",
                    ignore=shutil.ignore_patterns("__pycache__"))
    env = {**os.environ, "PYTHONPATH": str(site), "DASK_AMORSIZE__START_METHOD": start_method}
    out, _ = run_script(tmp_path, UPGRADED_HEAD, UPGRADED_MAIN, env=env)
    assert out["before"] and out["auto"], out
    if start_method == "fork":
        assert out["processes"] == "ran"
    else:
        assert "changed on disk since this process imported it" in out["processes"], out
        assert "amorsize_dask.engines.chunks" in out["processes"] and "restart this process" in out["processes"]

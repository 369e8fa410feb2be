"""A script's ``np.memmap`` global reaches process workers as a map of the same file, as a
forked ``Pool``'s workers hold it: not as a copy of its contents.

Hunt 15: writes to an ``"r+"`` memmap went to the workers' private copies on a running
pool (or the forkserver's) — 0 of 2,000 on disk, where ``builtins.map``, ``Pool().map``
and ``ProcessPoolExecutor().map`` wrote all — and a 400 MB read-only memmap was pickled
whole with the function (10-30x slower than the alternatives, 3x its size in memory).
"""

import os

import numpy as np
import pytest

from amorsize_dask.engines import transport

from .test_user_scripts import run_script

HEAD = """
import json, os, sys
import numpy as np
import amorsize_dask as ad

PATH = sys.argv[1]
N = 2000
np.memmap(PATH, dtype="float64", mode="w+", shape=(N,)).flush()
mm = np.memmap(PATH, dtype="float64", mode="r+", shape=(N,))
tail = mm[N // 2:]  # a view: written at its own place in the file

def write(i):
    s = 0
    for k in range(3000):
        s += k
    if i < N // 2:
        mm[i] = i + 1
    else:
        tail[i - N // 2] = i + 1
    return i
"""

MAIN = """
written = []
for _ in range(2):  # the second call runs on the pool the first started
    mm[:] = 0
    mm.flush()
    ad.map(write, range(N), engine="processes")
    mm.flush()
    written.append(int((np.fromfile(PATH, dtype="float64") == np.arange(1, N + 1)).sum()))
print(json.dumps({"written": written}))
"""


@pytest.mark.parametrize("start_method", ["auto", "forkserver"])
def test_writes_to_a_memmap_global_reach_its_file(tmp_path, start_method):
    env = {**os.environ, "DASK_AMORSIZE__TRAINING_DIR": str(tmp_path / "training"),
           "DASK_AMORSIZE__START_METHOD": start_method}
    out, _ = run_script(tmp_path, HEAD, MAIN, args=[tmp_path / "data.bin"], env=env)
    assert out == {"written": [2000, 2000]}, out


_BIG: np.memmap | None = None


def _reads_the_big_map(i):
    return float(_BIG[i * 1000])


def test_a_read_only_memmap_global_travels_as_its_file_not_its_contents(tmp_path):
    global _BIG
    path = tmp_path / "big.bin"
    np.arange(4_000_000, dtype="float64").tofile(path)  # 32 MB
    _BIG = np.memmap(path, dtype="float64", mode="r")
    try:
        import cloudpickle

        payload = transport.dump_function(_reads_the_big_map)  # with the module values it reads
        assert len(payload) < 100_000, len(payload)
        assert cloudpickle.loads(payload).applied()(7) == 7000.0
    finally:
        _BIG = None


@pytest.mark.parametrize("change", ["replaced", "deleted"])
def test_a_memmap_whose_file_changed_goes_as_its_contents(tmp_path, change):
    """Hunt 17: reopened by name, a file replaced since (``os.replace`` of a new version)
    gave the new file's values, a deleted one FileNotFoundError; ``builtins.map`` and a
    forked ``Pool`` read what the caller maps."""
    global _BIG
    path = tmp_path / "big.bin"
    np.arange(4_000_000, dtype="float64").tofile(path)
    _BIG = np.memmap(path, dtype="float64", mode="r")
    try:
        if change == "replaced":
            (-np.ones(4_000_000)).tofile(tmp_path / "new.bin")
            os.replace(tmp_path / "new.bin", path)
        else:
            os.unlink(path)
        import cloudpickle

        assert cloudpickle.loads(transport.dump_function(_reads_the_big_map)).applied()(7) == 7000.0
    finally:
        _BIG = None

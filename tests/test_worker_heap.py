"""The process engine's workers keep freed memory at the top of their heap
(``amorsize.worker-heap-pad``), so that arrays allocated and freed on every item are not
faulted in again each time; the caller's own allocator is left alone."""

import ctypes
import inspect
import json

import dask
import pytest

from amorsize_dask.engines.process_worker import _glibc, keep_heap_pad
from amorsize_dask.engines.processes import ProcessEngine
from tests.helpers.funcs import heap_top_after_freeing
from tests.helpers.scripts import run_script

MIB = 1 << 20


def _has_mallinfo2() -> bool:
    return _glibc() and hasattr(ctypes.CDLL(None), "mallinfo2")


pytestmark = pytest.mark.skipif(not _has_mallinfo2(), reason="glibc >= 2.33 (mallinfo2) only")


def _heap_top_in_a_worker(pad) -> int:
    engine = ProcessEngine()
    try:
        with dask.config.set({"amorsize.worker-heap-pad": pad}):
            out = engine.run(heap_top_after_freeing, [800_000] * 2, n_workers=2, chunksize=1)
        return min(out.results)
    finally:
        engine.shutdown()


def test_a_worker_keeps_the_configured_pad_at_its_heap_top():
    # (the top chunk's size, less glibc's rounding: a few KiB either way)
    assert _heap_top_in_a_worker(16 * MIB) >= 15 * MIB
    assert _heap_top_in_a_worker("4 MiB") >= 3.5 * MIB


def test_a_negative_pad_is_an_error_naming_it():
    engine = ProcessEngine()
    try:
        with dask.config.set({"amorsize.worker-heap-pad": -5}):
            with pytest.raises(ValueError, match=r"worker-heap-pad=-5 is negative; use 0"):
                engine.run(abs, [-1, -2], n_workers=2, chunksize=1)
    finally:
        engine.shutdown()


# A user's script: the helper's source, defined in its __main__ (it travels by value).
SCRIPT = "import json\n\nimport amorsize_dask as ad\n\n\n" + inspect.getsource(heap_top_after_freeing) + """

if __name__ == "__main__":
    workers = ad.map(heap_top_after_freeing, [800_000] * 2, engine="processes", n_workers=2, chunksize=1)
    print(json.dumps({"workers": workers, "caller": heap_top_after_freeing(800_000)}))
"""


def test_a_user_script_s_workers_get_the_pad_and_the_script_keeps_its_allocator(tmp_path):
    done = run_script(tmp_path, SCRIPT)
    assert done.returncode == 0, done.stderr
    found = json.loads(done.stdout.strip().splitlines()[-1])
    assert min(found["workers"]) >= 15 * MIB  # the function travelled by value from __main__
    assert found["caller"] < 3 * MIB  # glibc's own in the script's process
    assert keep_heap_pad(0) is False


def test_a_pad_of_zero_leaves_the_workers_allocator_alone(tmp_path, monkeypatch):
    monkeypatch.setenv("DASK_AMORSIZE__WORKER_HEAP_PAD", "0")
    done = run_script(tmp_path, SCRIPT)
    assert done.returncode == 0, done.stderr
    assert max(json.loads(done.stdout.strip().splitlines()[-1])["workers"]) < 3 * MIB  # glibc's own

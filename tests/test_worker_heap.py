"""The process engine's workers keep freed memory at the top of their heap
(``amorsize.worker-heap-pad``), so that arrays allocated and freed on every item are not
faulted in again each time; the caller's own allocator is left alone."""

import ctypes
import os

import dask
import pytest

from amorsize_dask.engines.process_worker import keep_heap_pad
from amorsize_dask.engines.processes import ProcessEngine
from tests.helpers.funcs import heap_top_after_freeing

MIB = 1 << 20


def _has_mallinfo2() -> bool:
    try:
        return os.confstr("CS_GNU_LIBC_VERSION").startswith("glibc") and hasattr(ctypes.CDLL(None), "mallinfo2")
    except (ValueError, OSError, AttributeError):
        return False


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


def test_a_pad_of_zero_leaves_the_allocator_alone():
    assert _heap_top_in_a_worker(0) < 3 * MIB  # glibc's own: a few hundred KiB here


def test_the_caller_s_allocator_is_not_changed():
    ProcessEngine().shutdown()
    assert heap_top_after_freeing(800_000) < 3 * MIB
    assert keep_heap_pad(0) is False

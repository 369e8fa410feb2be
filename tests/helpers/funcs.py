"""Module-level functions for tests (picklable by reference in worker processes)."""

import os
import time


def square(x):
    return x * x


def slow_square(x):
    time.sleep(0.001)
    return x * x


def spin(x, units=200):
    acc = 0
    for i in range(units):
        acc += i
    return acc + x


def fail_on_seven(x):
    if x == 7:
        raise ValueError(f"seven is bad: {x}")
    return x


def worker_pid(x):
    return os.getpid()


class CallLog:
    """Appends one line per call to a file, so calls are counted across processes."""

    def __init__(self, path, inner=square):
        self.path = str(path)
        self.inner = inner

    def __call__(self, x):
        with open(self.path, "a") as f:
            f.write(f"{x}\n")
        return self.inner(x)


def read_calls(path):
    with open(path) as f:
        return [int(line) for line in f if line.strip()]


class DieOnce:
    """Kills its worker process the first time it sees ``item`` (marker file)."""

    def __init__(self, marker, item):
        self.marker = str(marker)
        self.item = item

    def __call__(self, x):
        if x == self.item and not os.path.exists(self.marker):
            open(self.marker, "w").close()
            os._exit(1)
        return x * 10


def heap_top_after_freeing(nbytes):
    """Allocate and free ``nbytes`` three times here; then the free bytes glibc keeps at
    the top of this process's heap (``mallinfo2().keepcost``)."""
    import ctypes

    class MallInfo2(ctypes.Structure):
        _fields_ = [(name, ctypes.c_size_t) for name in (
            "arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks", "fordblks",
            "keepcost")]

    libc = ctypes.CDLL(None)
    libc.mallinfo2.restype = MallInfo2
    for _ in range(3):
        block = bytearray(nbytes)
        del block
    return libc.mallinfo2().keepcost


def set_env_item(x):
    """Writes the process's environment (tests/test_process_wide_state.py: a helper of
    another user module that a function calls)."""
    os.environ["AMORSIZE_TEST_ITEM"] = str(x)

"""The benchmark's workload families: one function and one input each.

Functions are module-level so that every engine (and the stdlib ``Pool`` baseline) can
pickle them by reference.

>>> [w.name for w in suite(scale=0.01)][:3]
['tiny', 'cpu-1ms', 'heavy']
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Callable

import numpy as np


def _spin(units: int) -> int:
    """Pure-Python CPU work: ``units`` × ~10 us on this machine (holds the GIL)."""
    acc = 0
    for i in range(units * 250):
        acc = (acc + i * i) % 1_000_003
    return acc


def tiny(x: int) -> int:
    """~1 us: a few integer operations."""
    for _ in range(12):
        x = (x * 31 + 7) % 1_000_003
    return x


def cpu_1ms(x: int) -> int:
    """~1 ms of pure-Python work."""
    return _spin(65) + x


def heavy(x: int) -> int:
    """~80 ms of pure-Python work."""
    return _spin(4000) + x


def skewed(x: int) -> int:
    """~0.25 ms for most items, 40x that for about one item in 50."""
    dear = (x * 7919) % 50 == 3
    return _spin(660 if dear else 16) + x


def payload(a: np.ndarray) -> float:
    """A cheap function of a ~1 MB array."""
    return float(a.sum())


def io_wait(x: int) -> int:
    """Waits ~2 ms (a network call, a disk read)."""
    time.sleep(0.002)
    return x


_SORT_BASE = np.random.default_rng(0).random(100_000)


def numpy_nogil(x: int) -> float:
    """~5 ms in numpy's sort, which releases the GIL."""
    return float(np.sort(_SORT_BASE * (x + 1))[x % 1000])


@dataclass(frozen=True)
class Workload:
    name: str
    func: Callable
    make_items: Callable[[], object]
    description: str

    def items(self):
        return self.make_items()


def suite(scale: float = 1.0) -> list[Workload]:
    """The families of the benchmark; ``scale`` multiplies every item count."""

    def n(count: int) -> int:
        return max(2, int(count * scale))

    return [
        Workload("tiny", tiny, lambda: list(range(n(100_000))), "100k items of ~1 us"),
        Workload("cpu-1ms", cpu_1ms, lambda: list(range(n(2_000))), "2k items of ~1 ms pure Python"),
        Workload("heavy", heavy, lambda: list(range(n(24))), "24 items of ~80 ms"),
        Workload("skewed", skewed, lambda: list(range(n(2_000))), "2k items, 2% are 40x dearer"),
        Workload(
            "payload",
            payload,
            lambda: [np.full(131_072, float(i)) for i in range(n(400))],
            "400 arrays of 1 MB, cheap function",
        ),
        Workload("io-wait", io_wait, lambda: list(range(n(1_000))), "1k items sleeping 2 ms"),
        Workload("numpy-nogil", numpy_nogil, lambda: list(range(n(400))), "400 numpy sorts of 100k (GIL released)"),
    ]

"""Quickstart on one machine: map, look at the plan, map again (now from the model).

Run: python examples/local_quickstart.py
"""

import tempfile
import time

import amorsize_dask as ad


def work(x: int) -> int:
    """~0.5 ms of pure-Python work."""
    acc = 0
    for i in range(8_000):
        acc = (acc + i * x) % 1_000_003
    return acc


if __name__ == "__main__":
    items = range(2_000)
    with tempfile.TemporaryDirectory(prefix="amorsize-example-") as training_dir:
        for attempt in (1, 2):
            t0 = time.perf_counter()
            results = ad.map(work, items, training_dir=training_dir)
            print(f"run {attempt}: {time.perf_counter() - t0:.3f} s, {len(results)} results")
            print(ad.plan(work, items, training_dir=training_dir).explain(), "\n")
    assert results == [work(x) for x in items]

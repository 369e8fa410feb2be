"""Seconds per item from a sample's timed batches: the mean, its spread, and warm-up.

The first calls of a function in a fresh process pay once what later calls do not: lazy
imports and caches (a pandas groupby: 3.4 ms, 1.1 ms, then ~0.4 ms), the allocator and
the garbage collector growing with the heap (a dict of 2,000 lists: 0.8 ms, 2.4 ms, then
~0.3 ms). Counted as typical items, they made the sample predict 3-5x the true work
(bench --fresh pandas-groupby and alloc), and the first call paid for a process pool
that lost to serial. Their results are kept: the warm-up is paid, whatever the plan.

>>> steady([3.4, 1.1, 0.5, 0.4, 0.45])  # leading batches over 1.5x the median: warm-up
[0.5, 0.4, 0.45]
>>> steady([0.5, 0.4, 9.0, 0.45])  # a dear item later on is the items' own spread
[0.5, 0.4, 9.0, 0.45]
>>> warming([3.4, 1.1], [1, 1]), warming([1.0, 1.1, 0.9], [1, 1, 1])
(True, False)
>>> weighted_mean([1.0, 3.0], [1, 3])
2.5
"""

from __future__ import annotations

import math
import statistics

__all__ = ["WARM_UP_RATIO", "NOISE_RATIO", "steady", "warming", "decaying", "weighted_mean",
           "coefficient_of_variation"]

# A leading batch dearer than this multiple of the median batch is warm-up. pandas-groupby's
# second item (1.1 ms, ~1.8x the median of 5) kept at 2.0 read 0.6 ms/item and chose
# processes (1.5x its serial time); pure-Python items' single timings spread ~10-20%.
WARM_UP_RATIO = 1.5
# Single timings of the same pure-Python item spread ~10-20% (above); a batch dearer than
# the one before by more than this is a rise in the items' cost, not noise.
NOISE_RATIO = 1.25


def steady(per_item: list[float]) -> list[float]:
    """Per-item seconds of the batches after the warm-up (leading batches over 1.5x the median)."""
    if len(per_item) < 3:
        return per_item
    limit = WARM_UP_RATIO * statistics.median(per_item)
    first = next((i for i, t in enumerate(per_item) if t <= limit), 0)
    return per_item[first:]


def warming(per_item: list[float], sizes: list[int]) -> bool:
    """Is the function still warming up: its last batch 1.5x under the mean so far?"""
    return len(per_item) >= 2 and per_item[-1] * WARM_UP_RATIO < weighted_mean(per_item, sizes)


def decaying(per_item: list[float], sizes: list[int]) -> bool:
    """Did the sample end warming up: its last batch 1.5x under the mean, and no batch
    dearer than the one before beyond timing noise? (A dear item among cheap ones is a
    rise, then a fall: the items' own spread, not warm-up.)

    >>> decaying([2.0, 0.7, 0.5, 0.45], [1, 1, 1, 1]), decaying([0.1, 0.1, 4.0, 0.1], [1, 1, 1, 1])
    (True, False)
    """
    rises = any(b > NOISE_RATIO * a for a, b in zip(per_item, per_item[1:]))
    return warming(per_item, sizes) and not rises


def weighted_mean(per_item, sizes) -> float:
    total = sum(sizes)
    return sum(t * s for t, s in zip(per_item, sizes)) / total if total else 0.0


def coefficient_of_variation(per_item, sizes, mean) -> float:
    """Spread of per-item time; batches of s items are scaled back by sqrt(s)."""
    if len(per_item) < 2 or mean <= 0:
        return 0.0
    deviations = [((t - mean) ** 2) * s for t, s in zip(per_item, sizes)]
    variance = sum(deviations) / (len(per_item) - 1)
    return math.sqrt(variance) / mean

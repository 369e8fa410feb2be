"""Timing helpers shared by the benchmarks: best-of-N wall time and geometric means.

>>> round(geometric_mean([1.0, 4.0]), 6)
2.0
"""

from __future__ import annotations

import math
import time
from typing import Callable


def best_of(repeat: int, run: Callable[[], object]) -> tuple[float, object]:
    """The smallest wall time of ``repeat`` runs, and the last run's return value."""
    best, value = math.inf, None
    for _ in range(max(1, repeat)):
        t0 = time.perf_counter()
        value = run()
        best = min(best, time.perf_counter() - t0)
    return best, value


def geometric_mean(values) -> float:
    values = [v for v in values if v > 0 and math.isfinite(v)]
    if not values:
        return math.nan
    return math.exp(sum(math.log(v) for v in values) / len(values))


def format_table(headers: list[str], rows: list[list[str]]) -> str:
    """A plain-text table, columns padded to fit (also valid Markdown).

    >>> print(format_table(["a", "bb"], [["1", "2"]]))
    | a | bb |
    |---|----|
    | 1 | 2  |
    """
    widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(headers)]
    line = lambda cells: "| " + " | ".join(c.ljust(w) for c, w in zip(cells, widths)) + " |"  # noqa: E731
    sep = "|" + "|".join("-" * (w + 2) for w in widths) + "|"
    return "\n".join([line(headers), sep] + [line(r) for r in rows])

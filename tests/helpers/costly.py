"""Module-level functions whose cost per item is set by the item (picklable by reference)."""

import time


def busy(seconds):
    """Spin for ``seconds`` of wall time (0: nearly free); the cost is the item itself."""
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        pass
    return seconds


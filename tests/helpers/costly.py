"""Module-level functions whose cost per item is set by the item (picklable by reference)."""

import time


def busy(seconds):
    """Spin for ``seconds`` of wall time (0: nearly free); the cost is the item itself."""
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        pass
    return seconds


class Model:
    """A model whose ``predict`` costs in proportion to its state (``size`` floats summed)."""

    def __init__(self, size):
        import numpy as np

        self.weights = np.ones(size)

    def predict(self, x):
        return float(self.weights.sum()) + x


def scale(weights, x):
    return float(weights.sum()) * x

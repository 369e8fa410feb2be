"""Starting the last items on the warm process pool while the first ones are sampled.

Sampling runs in this process, one core; on a machine with more, the others would idle
until the plan is made. When the process pool is already running, the last
``workers - 1`` items start on it, one task each, before sampling begins: a ~0.1 ms
submission for cheap items, a whole item's time saved per idle core for dear ones
(bench family "heavy": the first call lost one item's time to sampling).

Only functions whose module the workers already imported (or ``__main__``'s, which
travel by value) are speculated: a first import there can outlast a whole cheap map.

Every item still runs exactly once: speculated items are not part of the plan's tasks.
An item whose task never ran, or whose worker died, runs again on the pool — never in
this process, which an item that ends its worker would end too (after repeated deaths:
``WorkerLostError`` naming it). Ctrl-C (or exit) while items are speculated stops the
workers at once.

>>> Speculation.start(abs, [1, 2], n_workers=2) is None  # too few items to bother
True
"""

from __future__ import annotations

import sys

from ..engines import shared_engine
from ..engines.function_parcel import FunctionParcel, likely_large

__all__ = ["MAX_ITEM_BYTES", "Speculation"]

# Items larger than this are not speculated: shipping them costs more than an idle core
# saves on cheap functions (bench family "payload": 1 MB arrays, 40 us per item).
MAX_ITEM_BYTES = 64 * 1024


class Speculation:
    """Futures of the last items of a call, started before planning."""

    def __init__(self, func, items, first_index: int, futures: list, n_workers: int, local_fallback: bool,
                 func_bytes: bytes):
        self.func = func
        self.func_bytes = func_bytes  # pickled once for the call: its run on the pool sends these
        self.items = items
        self.first_index = first_index
        self.futures = futures
        self.n_workers = n_workers
        self.local_fallback = local_fallback
        self.compute_seconds = 0.0

    @property
    def n_items(self) -> int:
        return len(self.futures)

    @classmethod
    def start(cls, func, items, n_workers: int, local_fallback: bool = False) -> "Speculation | None":
        """Start ``items[-(n_workers - 1):]`` on the warm pool; None when not worth it.

        ``local_fallback`` (``engine="auto"``): a result that cannot be pickled is computed
        here instead of raising a TypeError.
        """
        n_spec = n_workers - 1
        if n_spec < 1 or len(items) < 4 * n_workers:
            return None
        engine = shared_engine()
        if not engine.is_warm(n_workers):
            return None  # starting a pool is not speculation's to pay
        if likely_large(func):
            return None  # its pickle would cost more than an idle core saves
        module = getattr(func, "__module__", None) or ""
        if module != "__main__" and module not in engine.modules_sent:
            return None  # the workers would import its module first: not worth waiting for
        first = len(items) - n_spec
        tail = items[first:]
        if any(_size_hint(x) > MAX_ITEM_BYTES for x in tail):
            return None
        try:
            func_bytes = engine.function_bytes(func)
            if FunctionParcel.known_large(func):
                return None  # found large now: the run forks the idle pool again for it
            futures = [engine.submit(func, tail[i : i + 1], first + i, n_workers, func_bytes) for i in range(n_spec)]
        except Exception:  # the function or an item does not travel: no speculation
            return None
        return cls(func, items, first, futures, n_workers, local_fallback, func_bytes)

    def results(self, progress=None) -> list:
        """The speculated items' results, in order; their failures are raised as any other."""
        engine = shared_engine()
        out_results = []
        for offset, fut in enumerate(self.futures):
            index = self.first_index + offset
            run = engine.collect(fut, self.func, self.items[index : index + 1], index, self.n_workers,
                                 local_fallback=self.local_fallback)
            self.compute_seconds += run.compute_seconds
            out_results.extend(run.results)
            if progress is not None:
                progress.advance(len(run.results))
        return out_results

    def cancel(self) -> None:
        """Drop the speculated items. Called while an exception propagates: for an error in
        ``func`` the pool stays for the next call; for Ctrl-C or exit its workers stop now."""
        for fut in self.futures:
            fut.cancel()
        current = sys.exc_info()[1]
        if current is not None and not isinstance(current, Exception):
            shared_engine().shutdown(kill=True)


def _size_hint(item) -> int:
    nbytes = getattr(item, "nbytes", None)
    if isinstance(nbytes, int):
        return nbytes
    if isinstance(item, (list, tuple, dict, set)):
        return sys.getsizeof(item) + sum(sys.getsizeof(x) for x in list(item)[:100])
    return sys.getsizeof(item)

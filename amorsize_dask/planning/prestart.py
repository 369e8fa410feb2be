"""Starting the process pool while the first items are sampled, when they suggest it may pay.

A cold pool's start (forkserver and slim workers: ~0.1 s on this 2-core machine) would
otherwise come after the plan, on the critical path of the first parallel call. Once the
sample's figures predict enough serial work for a pool to be worth it, the pool starts on
a background thread and the sampling goes on; if the plan is not ``processes`` after all,
the pool is stopped again (it was started for nothing). Only a function that computes is
bet on: one that waits is for threads, and a pool starting beside the two-thread probe
would spoil its reading (a 2 ms sleep read 1.15x on two threads instead of ~2x); the
probe of a function that computes waits for the start (:meth:`PoolPrestart.wait`).
A pool that will fork (no other thread busy: :func:`..engines.worker_start.fork_is_safe`)
is not started early: it starts in ~15 ms after the plan, and a start on another thread
would have to use the forkserver.

>>> PoolPrestart(n_workers=2, n_items=10).on_estimate(1e-6, 1.0)  # 10 us of work: no pool
>>> PoolPrestart(n_workers=2, n_items=10).started
False
"""

from __future__ import annotations

import threading
import time

from ..engines import shared_engine
from .cpu_clock import COMPUTING_CPU_RATIO

__all__ = ["PRESTART_ABOVE_SECONDS", "PoolPrestart"]

# Predicted serial work from which a cold pool starts during sampling: three times a cold
# start (97-117 ms with slim workers, first pool of a fresh script on this machine; session
# 3), so that a pool started for nothing costs at most a third of the work it bet on.
PRESTART_ABOVE_SECONDS = 0.3


class PoolPrestart:
    """One call's bet on the process pool: started during sampling, settled by the plan."""

    def __init__(self, n_workers: int, n_items: int):
        self.n_workers = n_workers
        self.n_items = n_items
        self._thread: threading.Thread | None = None
        self._started_at = 0.0

    @classmethod
    def for_call(cls, target, engine: str, n_items: int) -> "PoolPrestart | None":
        """A prestart for a local call that may run on processes with no pool running yet."""
        if target.client is not None or engine not in ("auto", "processes"):
            return None
        if engine == "auto" and "processes" not in target.auto_engines():
            return None
        if target.pool_warm(target.cores):
            return None
        if shared_engine().next_start_method() == "fork":
            return None  # ~15 ms after the plan; a start on another thread would rule out the fork
        return cls(target.cores, n_items)

    @property
    def started(self) -> bool:
        return self._thread is not None

    def on_estimate(self, item_seconds: float, cpu_ratio: float) -> None:
        """The sample's latest figures: start the pool once the computing work is worth it."""
        if cpu_ratio < COMPUTING_CPU_RATIO:
            return
        if self._thread is None and item_seconds * self.n_items >= PRESTART_ABOVE_SECONDS:
            self._thread = threading.Thread(target=self._start, name="amorsize-pool-start", daemon=True)
            self._started_at = time.perf_counter()
            self._thread.start()

    def start_left(self, start_seconds: float) -> float:
        """What is left of a start of ``start_seconds`` begun meanwhile (0 once it is done).
        A plan that counted a starting pool as running chose it for bench --fresh tiny with
        the forkserver (~70 ms of work serially) and waited for its start: 120 ms."""
        if self._thread is None or not self._thread.is_alive():
            return 0.0
        return max(0.0, start_seconds - (time.perf_counter() - self._started_at))

    def wait(self) -> None:
        """Until the pool started, if it is starting. The two-thread probe waits here: a
        start beside it takes a core (forkserver: ~65 ms on this 2-core machine), and bench
        --fresh big-inputs' probe read two threads at 1.00x instead of ~1.9x, then ran on
        processes at 2-3x the oracle. A process plan needs the pool anyway."""
        if self._thread is not None:
            self._thread.join()

    def _start(self) -> None:
        try:
            shared_engine().pool(self.n_workers)
        except Exception:  # the run that needs the pool starts it again and reports what fails
            pass

    def settle(self, engine: str, n_workers: int) -> None:
        """The plan is made: keep the pool if it runs on it, else stop it (in the background)."""
        if self._thread is None or (engine == "processes" and n_workers == self.n_workers):
            return

        def stop():
            self._thread.join()
            shared_engine().stop_if_idle(self.n_workers)

        threading.Thread(target=stop, name="amorsize-pool-stop", daemon=True).start()

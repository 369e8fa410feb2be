"""Whether a measurement was disturbed while it ran: other processes wanting the cores,
or another thread of this process holding the GIL.

Both slow down what is timed, so figures timed then describe that moment, not the
machine. Calibrating this project's 2-core machine (session 6) read a task round trip of
0.1-0.2 ms alone, 0.27-0.32 ms beside 6 busy processes, and 2.5-2.7 ms while another
thread of the calibrating process computed (as a user's next call does while the
background calibration runs).

- Other processes: the run-queue wait of the measuring thread (Linux, through
  :class:`~amorsize_dask.planning.cpu_clock.ThreadClock`) over the time it could have
  run (that wait plus its CPU time). Elsewhere it reads 0.
- The GIL: a thread that waits for it is asleep, not queued, so the clock misses it.
  Before each step the thread gives the GIL and the CPU up (``time.sleep(0)``) and times
  getting both back: one switch interval (5 ms) while another thread computes.

>>> with Contention() as c:
...     with c.step():
...         _ = sum(range(1000))
>>> 0.0 <= c.queued_share() <= 1.0
True
"""

from __future__ import annotations

import statistics
import time
from contextlib import contextmanager

from .cpu_clock import ThreadClock

__all__ = ["BUSY_QUEUED_SHARE", "BUSY_RESUME_SECONDS", "Contention", "is_busy"]

# The measuring thread waited for a CPU at least as long as it ran: it was not alone.
# Calibrating this 2-core machine (session 6) read 0.11-0.48 beside another session's
# benchmarks (load average 1.5-4; task round trip 0.09-0.2 ms, as alone), 0.39-0.77 beside
# 3 busy processes (0.14-0.25 ms), 0.51-0.78 beside 5 (0.19-0.38 ms) and 0.67-0.75 beside
# 9 (0.32-0.52 ms): a lightly loaded machine's figures are kept, a heavily loaded one's not.
BUSY_QUEUED_SHARE = 0.5
# Getting the GIL and a CPU back after ``time.sleep(0)`` took at least this long (the
# median of the steps): 80-120 us alone, 5.5 ms beside a computing thread of the same
# process (one 5 ms switch interval), 1.5-8 ms beside 3-5 busy processes (session 6).
BUSY_RESUME_SECONDS = 1e-3


def is_busy(queued_share: float, resume_seconds: float) -> bool:
    """Did something else compete with the measurement (see the constants)?

    >>> is_busy(queued_share=0.2, resume_seconds=100e-6)   # alone
    False
    >>> is_busy(queued_share=0.7, resume_seconds=100e-6)   # beside 9 busy processes, 2 cores
    True
    >>> is_busy(queued_share=0.45, resume_seconds=5.3e-3)  # beside a computing thread of ours
    True
    """
    return queued_share >= BUSY_QUEUED_SHARE or resume_seconds >= BUSY_RESUME_SECONDS


class Contention:
    """Times the steps of a measurement (``with c.step(): ...``) on the thread that made
    it; :attr:`busy` afterwards. :meth:`close` when done (the clock holds a file open)."""

    def __init__(self) -> None:
        self._clock = ThreadClock()
        self._resumes: list[float] = []

    @contextmanager
    def step(self):
        """Probe the GIL, then time the ``with`` block's run-queue wait and CPU."""
        t0 = time.perf_counter()
        time.sleep(0)  # gives up the GIL and the CPU: how long until both are back?
        self._resumes.append(time.perf_counter() - t0)
        with self._clock.span():
            yield

    def queued_share(self) -> float:
        """Run-queue wait over the time the thread could have run (0 where unknown)."""
        wanted = self._clock.queued + self._clock.cpu
        return self._clock.queued / wanted if wanted > 0 else 0.0

    def resume_seconds(self) -> float:
        """The median time the steps' GIL probes took to get the GIL and a CPU back."""
        return statistics.median(self._resumes) if self._resumes else 0.0

    @property
    def busy(self) -> bool:
        """Did something else compete with the steps timed so far (:func:`is_busy`)?"""
        return is_busy(self.queued_share(), self.resume_seconds())

    def describe(self) -> str:
        return (f"run-queue wait {self.queued_share():.0%} of the time it could run, "
                f"GIL and CPU back after {self.resume_seconds() * 1e3:.2f} ms")

    def close(self) -> None:
        self._clock.close()

    def __enter__(self) -> Contention:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

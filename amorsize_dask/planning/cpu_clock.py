"""How much of its time a function spent computing — on a busy machine too.

The sampler tells a function that computes from one that waits by its CPU time over its
wall time. Two things inflate the wall time of a function that computes:

- other processes wanting the cores: a computing thread waits for one. Pure Python read
  0.44-0.49 with three busy processes on two cores, and was taken for a function that
  waits. Linux says how long a thread waited on a run queue (``/proc/thread-self/
  schedstat``, its second field). That time is not the function's, so it is taken off.
  The same loop then reads 0.96-1.01, and a 2 ms sleep 0.03-0.04, on either machine.
  Elsewhere (no such file) nothing is taken off.
- other threads of the process holding the GIL between the calls (the sampler's own
  bookkeeping releases it: a read of that file is a system call). Only the spans the
  clock times count, so ``with clock.span(): ...`` goes around the function's calls
  alone. In a test process with other busy threads, timing the whole sample read 0.30
  for pure Python.

A function may also keep more than its thread busy: its native code runs threads of its
own (OpenMP in torch or numba ``parallel=True``, a BLAS). Their CPU time, read per thread
from ``/proc/self/task/*/schedstat`` for the threads ``threading`` does not know (Python
threads, this library's among them, never count), gives :meth:`ThreadClock.cores_busy`.

>>> clock = ThreadClock()
>>> with clock.span():
...     _ = sum(range(100_000))
>>> clock.cpu_ratio() > 0
True
>>> clock.close()
"""

from __future__ import annotations

import os
import time
from contextlib import contextmanager

from ..target.machine import TASKS_DIR, native_thread_ids

__all__ = ["COMPUTING_CPU_RATIO", "MIN_SPAN_SECONDS", "ThreadClock", "native_threads_cpu"]

_SCHEDSTAT = "/proc/thread-self/schedstat"
# Spans shorter than this in all tell nothing: one 2-5 us item read CPU/wall 1.1-12.5
# (the CPU clock's own cost and resolution); the sampler then takes the function to compute.
MIN_SPAN_SECONDS = 200e-6
# Spans shorter than this in all tell nothing of the cores busy: native threads' CPU is
# read from another clock than the thread's (two readings, ~10 us each).
MIN_BUSY_SPAN_SECONDS = 1e-3
# Native threads found running when a clock starts are waited for this long at most:
# GNU OpenMP's threads spin 7-9 ms after a parallel region ends, OpenBLAS's ~130 ms (then
# the clock counts none); measured on this machine, session 21.
NATIVE_SPIN_WAIT_SECONDS = 15e-3
COMPUTING_CPU_RATIO = 0.8  # and above, a function computes (pure Python reads 0.98-1.02 quiet)


class ThreadClock:
    """Wall, CPU and run-queue seconds of the spans it timed, on the thread that made it.

    Time spans on that thread only (the CPU clock is the calling thread's); :meth:`close`
    when done (it holds the schedstat file open: 0.5 us a reading instead of 11).
    ``native``: also read the CPU of the native threads, for :meth:`cores_busy`, if those
    running now stop within ``native_wait`` seconds.
    """

    def __init__(self, native: bool = False, native_wait: float = NATIVE_SPIN_WAIT_SECONDS) -> None:
        try:
            self._fd: int | None = os.open(_SCHEDSTAT, os.O_RDONLY)
        except OSError:
            self._fd = None
        self.wall = self.cpu = self.queued = 0.0
        self._spans: list[tuple[float, float]] = []  # per span: (runnable wall, CPU of it and its native threads)
        # Native threads running before the function ran (a BLAS's spin after its last call)
        # would be read as the function's own: then none are counted.
        self._count_native = native and _native_threads_quiet_within(native_wait)

    def _queued(self) -> float:
        if self._fd is None:
            return 0.0
        try:
            return int(os.pread(self._fd, 64, 0).split()[1]) / 1e9
        except (OSError, ValueError, IndexError):
            return 0.0

    @contextmanager
    def span(self):
        """Add the wall, CPU and run-queue seconds of the ``with`` block."""
        queued, native = self._queued(), native_threads_cpu() if self._count_native else 0.0
        cpu, wall = time.thread_time(), time.perf_counter()
        try:
            yield
        finally:
            wall, cpu = time.perf_counter() - wall, time.thread_time() - cpu
            self.wall, self.cpu = self.wall + wall, self.cpu + cpu
            # A thread cannot wait for a core while its CPU clock runs: the run-queue wait
            # is at most the span's wall time less its CPU time. While a forkserver pool
            # started beside the sample, this machine (session 23) read a 1 ms span of pure
            # Python as 1.007 ms queued and 1.002 ms on the CPU: 2.0 cores busy, and the
            # first call of a 0.4 s job ran serially (tests/test_fresh_process.py).
            queued = min(max(self._queued() - queued, 0.0), max(wall - cpu, 0.0))
            native = max(native_threads_cpu() - native, 0.0) if self._count_native else 0.0
            self.queued += queued
            self._spans.append((wall - queued, cpu + native))

    def cpu_ratio(self) -> float:
        """CPU seconds over the wall seconds the thread could have run, at most 1 (one
        thread computes at most its wall time); 1.0 when the spans are too short to tell."""
        runnable = self.wall - self.queued
        if self.wall < MIN_SPAN_SECONDS or runnable <= 0:
            return 1.0
        return min(self.cpu / runnable, 1.0)

    def cores_busy(self) -> float:
        """The cores the spans kept busy: the thread's CPU seconds plus those of the native
        threads (:func:`native_threads_cpu`), over the wall seconds the thread could have
        run, in the spans after the first (torch starts its threads in its first call);
        at least 1. 1.0 when too short to tell, or when native threads were running before
        the first span: a BLAS's threads spin ~130 ms after it last ran, and a pure-Python
        loop timed just after a matrix product read 1.8-2.2 cores. 1.0 from a clock made
        without ``native``."""
        spans = self._spans[1:] or self._spans
        runnable = sum(r for r, _ in spans)
        if not self._count_native or runnable < MIN_BUSY_SPAN_SECONDS:
            return 1.0
        return max(1.0, sum(b for _, b in spans) / runnable)

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> ThreadClock:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def native_threads_running() -> bool:
    """Is a thread ``threading`` does not know on a CPU or waiting for one (state R) now?"""
    for tid in native_thread_ids():
        try:
            with open(f"{TASKS_DIR}/{tid}/stat", "rb") as f:
                if f.read().rsplit(b")", 1)[1].split()[0] == b"R":
                    return True
        except (OSError, IndexError):  # the thread ended meanwhile
            continue
    return False


def _native_threads_quiet_within(seconds: float) -> bool:
    """Is no native thread running now, or do they all stop within ``seconds`` (looked at
    every ms)?"""
    deadline = time.perf_counter() + seconds
    while native_threads_running():
        if time.perf_counter() >= deadline:
            return False
        time.sleep(1e-3)
    return True


def native_threads_cpu() -> float:
    """CPU seconds the threads of this process that ``threading`` does not know have run
    (0.0 without ``/proc``). Read only when there are such threads: ~10 us each."""
    total = 0
    for tid in native_thread_ids():
        try:
            with open(f"{TASKS_DIR}/{tid}/schedstat", "rb") as f:
                total += int(f.read().split()[0])
        except (OSError, ValueError, IndexError):  # the thread ended meanwhile
            continue
    return total / 1e9

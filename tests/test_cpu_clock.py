"""A computing function reads as computing while other processes compete for the cores
(CI failed on a loaded machine where CPU/wall misread functions; see planning/cpu_clock.py)."""

import threading
import time

from amorsize_dask.planning.cpu_clock import ThreadClock
from amorsize_dask.planning.sampling import sample_items


def _spin(seconds):
    end = time.thread_time() + seconds
    while time.thread_time() < end:
        pass


def test_a_spinning_thread_reads_as_computing_on_a_busy_machine(busy_machine):
    with ThreadClock() as clock:
        with clock.span():
            _spin(0.2)
        assert clock.cpu_ratio() > 0.8, (clock.wall, clock.cpu, clock.queued)


def test_a_sleeping_thread_reads_as_waiting_on_a_busy_machine(busy_machine):
    with ThreadClock() as clock:
        for _ in range(20):
            with clock.span():
                time.sleep(0.005)
        assert clock.cpu_ratio() < 0.2


def test_only_the_timed_spans_count():
    """Between spans the thread may wait for the GIL (another thread of the process holds
    it): that is not the function's time."""
    stop = threading.Event()

    def busy():  # holds the GIL whenever this thread lets it go
        while not stop.is_set():
            pass

    other = threading.Thread(target=busy, daemon=True)
    other.start()
    try:
        with ThreadClock() as clock:
            for _ in range(5):
                with clock.span():
                    _spin(0.002)
                time.sleep(0.02)  # outside the spans: neither counted nor computing
            # The whole loop's CPU/wall is under 0.1; a span the other thread interrupts
            # (a forced GIL switch on a loaded machine) reads ~0.3: the bound leaves room.
            assert clock.cpu_ratio() > 0.3, (clock.wall, clock.cpu, clock.queued)
    finally:
        stop.set()
        other.join()


def test_the_sampler_takes_pure_python_for_computing_on_a_busy_machine(busy_machine):
    def work(x):
        _spin(0.002)
        return x

    s = sample_items(work, list(range(2000)), 2000, parallelism=(2, 64))
    assert s.profile.cpu_ratio > 0.8, s.profile
    assert s.results == list(range(s.profile.n_sampled))


def test_a_closed_clock_still_reads_cpu_over_wall():
    clock = ThreadClock()
    clock.close()
    clock.close()  # twice is fine
    with clock.span():
        _spin(0.01)
    assert 0 < clock.cpu_ratio() <= 1.0


def test_spans_too_short_to_tell_read_as_computing():
    with ThreadClock() as clock:
        for _ in range(3):
            with clock.span():
                abs(-1)
        assert clock.cpu_ratio() == 1.0

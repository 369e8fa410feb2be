"""``planning.overheads``: figures built by keyword, cached as JSON and read back, bad caches ignored."""

import dataclasses
import json
import threading
import time
import uuid

import pytest

from amorsize_dask.planning import overheads
from amorsize_dask.planning.overheads import Overheads

FIGURES = dict(start_seconds=0.1, task_seconds=1e-4, item_seconds=1e-6, bytes_per_second=1e9,
               thread_task_seconds=2e-5, start_method="forkserver")


@pytest.fixture
def cache_home(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    return tmp_path


def fresh_id():
    """A fingerprint id no other test (or this process's memo) has seen."""
    return uuid.uuid4().hex[:16]


class Measure:
    """A stand-in for an engine's timing run: returns ``FIGURES`` and counts its calls."""

    def __init__(self):
        self.calls = 0

    def __call__(self):
        self.calls += 1
        return Overheads(**FIGURES, measured_at=time.time())


def test_overheads_are_built_by_keyword_only():
    with pytest.raises(TypeError):
        Overheads(0.1, 1e-4, 1e-6, 1e9, 2e-5, "forkserver", 0.0)
    o = Overheads(**FIGURES, measured_at=1.0)
    assert (o.task_seconds, o.start_method, o.estimated) == (1e-4, "forkserver", False)


def test_get_measures_once_caches_json_and_reads_it_back(cache_home):
    fid, measure = fresh_id(), Measure()
    first = overheads.get(fid, measure)
    assert overheads.get(fid, measure) == first
    assert measure.calls == 1
    path = overheads.cache_path(fid)
    assert path.parent.parent == cache_home / "amorsize_dask"
    assert json.loads(path.read_text()) == dataclasses.asdict(first)
    # the same JSON under an id this process has not memoised is read from the file
    other = fresh_id()
    overheads.cache_path(other).write_text(path.read_text())
    assert overheads.cached(other) == first


def test_a_cache_written_before_keyword_only_fields_still_reads(cache_home):
    fid = fresh_id()
    stored = {**FIGURES, "measured_at": time.time(), "estimated": False, "provisional": False}
    overheads.cache_path(fid).parent.mkdir(parents=True)
    overheads.cache_path(fid).write_text(json.dumps(stored))
    assert overheads.cached(fid) == Overheads(**stored)


@pytest.mark.parametrize("change", [
    {"task_seconds": -1.0},      # impossible figure
    {"bytes_per_second": 0.0},   # would divide by zero
    {"measured_at": 0.0},        # older than the maximum age: measure again
    {"estimated": None},         # a field missing (written by another version)
    {"provisional": None},       # written before busy measurements were told apart: it may be one
    {"provisional": True, "measured_at": time.time() - overheads.PROVISIONAL_MAX_AGE_SECONDS - 60},
])
def test_bad_or_stale_caches_are_ignored(cache_home, change):
    fid = fresh_id()
    stored = {**FIGURES, "measured_at": time.time(), "estimated": False, "provisional": False, **change}
    stored = {k: v for k, v in stored.items() if v is not None}
    overheads.cache_path(fid).parent.mkdir(parents=True)
    overheads.cache_path(fid).write_text(json.dumps(stored))
    assert overheads.cached(fid) is None


def test_a_missing_cache_is_none_and_an_unwritable_one_still_returns_figures(cache_home):
    assert overheads.cached(fresh_id()) is None
    (cache_home / "amorsize_dask").write_text("a file where the cache dir should be")
    found = overheads.get(fresh_id(), Measure())
    assert found.task_seconds == FIGURES["task_seconds"]


def test_estimate_uses_the_named_figures_and_says_so():
    e = overheads.estimate("spawn")
    assert e.estimated and e.start_method == "spawn"
    assert (e.start_seconds, e.task_seconds, e.item_seconds, e.bytes_per_second, e.thread_task_seconds) == (
        overheads.ESTIMATED_START_SECONDS, overheads.ESTIMATED_TASK_SECONDS, overheads.ESTIMATED_ITEM_SECONDS,
        overheads.ESTIMATED_BYTES_PER_SECOND, overheads.ESTIMATED_THREAD_TASK_SECONDS)


def test_measure_later_runs_once_per_id_after_the_call(cache_home):
    fid, measure = fresh_id(), Measure()
    overheads.measure_later(fid, measure)
    overheads.measure_later(fid, measure)   # asked twice before the call ended: measured once
    assert measure.calls == 0
    thread = overheads.run_later()
    assert thread is not None
    assert overheads.join_background(60)
    assert measure.calls == 1
    assert overheads.cached(fid).task_seconds == FIGURES["task_seconds"]
    assert overheads.run_later() is None    # nothing left to do


def _read_back_aged(fid, seconds):
    """The figures cached for ``fid``, read back (by a new id) as if measured ``seconds`` ago."""
    other = fresh_id()
    stored = {**json.loads(overheads.cache_path(fid).read_text()), "measured_at": time.time() - seconds}
    overheads.cache_path(other).write_text(json.dumps(stored))
    return overheads.cached(other)


def _calibrate(fid):
    """Measure this machine's overheads now, as the background calibration does."""
    from amorsize_dask.engines import get_engine, shared_engine

    return overheads.get(fid, lambda: overheads.measure_local(shared_engine(), get_engine("threads"), 2))


def _lifetime(fid) -> str:
    """How long the cached figures of ``fid`` are kept: "an hour" or "30 days"."""
    hours, days = 3600, 24 * 3600
    assert _read_back_aged(fid, 60) is not None
    if _read_back_aged(fid, hours + 60) is None:
        return "an hour"
    assert _read_back_aged(fid, 29 * days) is not None and _read_back_aged(fid, 31 * days) is None
    return "30 days"


def test_figures_measured_undisturbed_are_kept_for_30_days(cache_home):
    fid = fresh_id()
    assert not overheads.get(fid, Measure()).provisional
    assert _lifetime(fid) == "30 days"


def test_a_calibration_on_a_busy_machine_is_kept_for_an_hour_only(cache_home, very_busy_machine):
    """Four times as many busy processes as cores: the calibrating thread waited for a
    core longer than it ran, and its figures (a task cost 3-4x) describe that moment, not
    the machine."""
    fid = fresh_id()
    found = _calibrate(fid)
    assert found.provisional and json.loads(overheads.cache_path(fid).read_text())["provisional"]
    assert _lifetime(fid) == "an hour"


def test_a_calibration_beside_a_computing_thread_of_this_process_is_kept_for_an_hour_only(cache_home):
    """Another thread of the process holds the GIL (a user's next call while the
    calibration runs in the background): a task cost of ~2.5 ms instead of ~0.2 ms."""
    stop = threading.Event()

    def compute():
        while not stop.is_set():
            pass

    other = threading.Thread(target=compute, daemon=True)
    other.start()
    try:
        found = _calibrate(fresh_id())
    finally:
        stop.set()
        other.join()
    assert found.provisional


def test_a_long_running_process_measures_provisional_figures_again_after_an_hour(cache_home):
    fid, measure = fresh_id(), Measure()
    old = time.time() - overheads.PROVISIONAL_MAX_AGE_SECONDS - 60
    overheads.get(fid, lambda: dataclasses.replace(measure(), provisional=True, measured_at=old))
    assert overheads.cached(fid) is None      # memoised in this process, yet stale
    assert overheads.get(fid, measure).measured_at > old
    assert measure.calls == 2


def test_a_plan_says_its_figures_were_measured_on_a_busy_machine():
    from amorsize_dask.planning.planner import describe_overheads

    o = Overheads(**FIGURES, measured_at=time.time())
    assert "busy" not in describe_overheads(o, 2)
    assert "measured while the machine was busy" in describe_overheads(dataclasses.replace(o, provisional=True), 2)


def test_a_pool_start_costed_by_another_methods_estimate_says_it_is_estimated():
    """The cached figures come from a background calibration, which cannot fork (it runs on
    a thread): a plan that will fork costs the start by the fork estimate, and says so."""
    from amorsize_dask.planning.planner import describe_overheads

    measured = Overheads(**FIGURES, measured_at=time.time())  # forkserver, measured
    assert "(estimated)" not in describe_overheads(measured, 2)
    forked = overheads.for_start_method(measured, "fork")
    assert forked.start_seconds == overheads.ESTIMATED_FORK_START_SECONDS
    text = describe_overheads(forked, 2)
    assert "fork pool start 15 ms (estimated)" in text, text
    assert forked.task_seconds == measured.task_seconds and not forked.estimated  # the rest is measured

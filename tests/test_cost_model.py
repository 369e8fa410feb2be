"""The cost model on its own: measured figures in, ranked configurations out."""

import dataclasses
import math

import dask
import pytest

from amorsize_dask.planning import cost_model
from amorsize_dask.planning.cost_model import Limits, Space, predict_one, rank
from amorsize_dask.planning.overheads import Overheads
from amorsize_dask.planning.sampling import Profile

# Figures of the order `amorsize-dask bench` measures on a 2-core machine (forkserver pool).
MEASURED = Overheads(start_seconds=0.1, task_seconds=1e-4, item_seconds=1e-6, bytes_per_second=5e8,
                     thread_task_seconds=2e-5, start_method="forkserver", measured_at=0.0)


def profile(**kw):
    base = dict(n_sampled=30, item_seconds=1e-3, item_cv=0.1, cpu_ratio=1.0, bytes_in=30, bytes_out=30,
                picklable=True, thread_speedup=1.0, sample_seconds=0.01)
    return Profile(**{**base, **kw})


def test_processes_first_for_thousands_of_millisecond_items():
    best = rank(profile(), 2000, MEASURED, cores=2, pool_warm=True)[0]
    assert (best.engine, best.n_workers) == ("processes", 2)
    assert best.seconds < 2000 * 1e-3  # predicted faster than serial


def test_serial_first_for_a_hundred_microsecond_items():
    ranked = rank(profile(item_seconds=1e-6), 100, MEASURED, cores=2, pool_warm=True)
    assert ranked[0].engine == "serial" and ranked[0].chunksize == 100


def test_ranked_fastest_first_and_each_prediction_is_predict_one():
    ranked = rank(profile(cpu_ratio=0.3, thread_speedup=None), 500, MEASURED, cores=2, pool_warm=False)
    assert [c.seconds for c in ranked] == sorted(c.seconds for c in ranked)
    assert {c.engine for c in ranked} == {"serial", "threads", "processes"}
    for c in ranked:
        again = predict_one(profile(cpu_ratio=0.3, thread_speedup=None), 500, MEASURED, (c.engine, c.n_workers, c.chunksize),
                            cores=2, pool_warm=False)
        assert again == pytest.approx(c.seconds)


def test_a_cold_pool_costs_its_start():
    warm = rank(profile(), 2000, MEASURED, cores=2, pool_warm=True, space=Space(("processes",), 2, 50))
    cold = rank(profile(), 2000, MEASURED, cores=2, pool_warm=False, space=Space(("processes",), 2, 50))
    assert cold[0].seconds - warm[0].seconds == pytest.approx(MEASURED.start_seconds)



def test_threads_that_contend_are_predicted_slower_than_one_thread():
    """Two threads measured at 0.4x one (a pandas groupby reads 0.32-0.38x in a fresh
    process) take 2.5x the serial time; 0.9x is the noise of pure Python: as fast as one."""
    space = Space(("threads",), 2, 50)
    serial = 1000 * 1e-3
    contended = rank(profile(thread_speedup=0.4), 1000, MEASURED, cores=2, pool_warm=True, space=space)[0]
    noise = rank(profile(thread_speedup=0.9), 1000, MEASURED, cores=2, pool_warm=True, space=space)[0]
    overhead = 20 * MEASURED.thread_task_seconds
    assert contended.seconds == pytest.approx(serial / 0.4 + overhead)
    assert noise.seconds == pytest.approx(serial + overhead)


def test_fixed_workers_and_chunksize_are_kept():
    ranked = rank(profile(), 1000, MEASURED, cores=2, pool_warm=True, space=Space(("processes", "threads"), 2, 7))
    assert ranked and all((c.n_workers, c.chunksize) == (2, 7) for c in ranked)


def test_waiting_items_go_to_many_threads_within_the_limit():
    waits = profile(item_seconds=2e-3, cpu_ratio=0.01, thread_speedup=None)
    best = rank(waits, 1000, MEASURED, cores=2, pool_warm=True, limits=Limits(64, 4))[0]
    assert best.engine == "threads" and best.n_workers >= 16
    capped = rank(waits, 1000, MEASURED, cores=2, pool_warm=True, limits=Limits(8, 4))
    assert max(c.n_workers for c in capped if c.engine == "threads") == 8


def test_default_limits_are_read_from_dask_config_at_call_time():
    waits = profile(item_seconds=2e-3, cpu_ratio=0.01, thread_speedup=None)
    with dask.config.set({"amorsize.planner.max-threads": 4}):
        ranked = rank(waits, 1000, MEASURED, cores=2, pool_warm=True)
    assert max(c.n_workers for c in ranked if c.engine == "threads") == 4


def test_every_worker_gets_its_minimum_of_tasks():
    ranked = rank(profile(), 1000, MEASURED, cores=2, pool_warm=True, limits=Limits(64, 5))
    procs = [c for c in ranked if c.engine == "processes"]
    assert procs and all(math.ceil(1000 / c.chunksize) >= 5 * c.n_workers for c in procs)


def test_memory_bounds_the_chunks_in_flight():
    big = profile(bytes_in=1e6)
    ranked = rank(big, 2000, MEASURED, cores=2, pool_warm=True, limits=Limits(64, 4, memory_bytes=50e6))
    procs = [c for c in ranked if c.engine == "processes"]
    assert procs and all(2 * c.n_workers * c.chunksize * (1e6 + 30) <= 50e6 for c in procs)
    assert Limits.from_settings(available_memory=1e9).memory_bytes == pytest.approx(
        1e9 * dask.config.get("amorsize.planner.memory-fraction"))


def test_unpicklable_work_has_no_process_or_dask_candidates():
    ranked = rank(profile(picklable=False), 2000, MEASURED, cores=2, pool_warm=True,
                  space=Space(("serial", "processes", "dask")))
    assert [c.engine for c in ranked] == ["serial"]


def test_keywords_are_the_same_as_space_and_limits():
    by_keywords = rank(profile(), 1000, MEASURED, cores=2, pool_warm=True, engines=("serial", "processes"),
                       n_workers=2, max_threads=8, min_tasks_per_worker=4, memory_limit=math.inf)
    by_values = rank(profile(), 1000, MEASURED, cores=2, pool_warm=True, space=Space(("serial", "processes"), 2),
                     limits=Limits(8, 4))
    assert by_keywords == by_values
    with pytest.raises(TypeError, match="max_thread"):
        rank(profile(), 1000, MEASURED, cores=2, pool_warm=True, max_thread=8)


def test_a_profile_is_rebuilt_from_a_records_features():
    """The model's cost estimates (its explorations' vetting) use the sampled features, the
    pickling time too: bench --fresh pandas-groupby's frames unpickle far slower than their
    bytes travel, and without it a script's second run explored processes at 2.1x the
    oracle (serial: 1.3x)."""
    prof = profile(thread_speedup=1.7, pickle_seconds=3e-4)
    again = cost_model.profile_from_features(prof.features(1000))
    assert dataclasses.replace(again, n_sampled=30, sample_seconds=0.01) == prof
    assert cost_model.profile_from_features({"n_items": 10}) is None


# A LocalCluster of 2 workers x 1 thread on this 2-core machine, as calibration measured it
# (~/.cache/amorsize_dask/overheads, start method "dask").
CLUSTER = Overheads(start_seconds=0.0, task_seconds=2.1e-3, item_seconds=1.28e-6, bytes_per_second=2e8,
                    thread_task_seconds=0.0, start_method="dask", measured_at=0.0)


def test_a_tiny_job_on_a_cluster_runs_as_few_tasks():
    """bench --cluster, family tiny (25,000 items of 1 us): one task took 0.055 s, ten on two
    workers 0.075 s — the client's work does not overlap the workers' makespan."""
    tiny = profile(item_seconds=1e-6, item_cv=0.5, bytes_in=5, bytes_out=5)  # as sampled on a worker
    ranked = rank(tiny, 25_000, CLUSTER, cores=2,
                  pool_warm=True, engines=("dask",))
    best = ranked[0]
    assert math.ceil(25_000 / best.chunksize) <= 2, best
    ten = predict_one(tiny, 25_000, CLUSTER, ("dask", 2, 2_500), cores=2)
    assert ten > best.seconds


def test_dear_items_on_a_cluster_run_one_task_each():
    """bench --cluster, family heavy (24 items of ~80 ms): both workers busy with tasks of
    a few items (Client.map: one each)."""
    best = rank(profile(item_seconds=0.08), 24, CLUSTER, cores=2, pool_warm=True, engines=("dask",))[0]
    assert (best.engine, best.n_workers) == ("dask", 2) and best.chunksize <= 3
    assert best.seconds < 24 * 0.08 / 2 * 1.2


def test_objects_that_pickle_slower_than_their_bytes_travel_cost_their_pickling():
    # 32 KiB per item (a 2,000-row DataFrame) moves in 66 us at the calibrated bandwidth,
    # but pickling and unpickling it took ~0.4 ms: with that, two processes no longer pay.
    by_bytes = profile(item_seconds=0.4e-3, bytes_in=32_000, bytes_out=200)
    by_pickling = dataclasses.replace(by_bytes, pickle_seconds=0.4e-3)
    fast = predict_one(by_bytes, 200, MEASURED, ("processes", 2, 10), cores=2)
    slow = predict_one(by_pickling, 200, MEASURED, ("processes", 2, 10), cores=2)
    assert slow > fast + 200 * 0.3e-3 / 2  # the pickling, shared by the caller and its 2 workers
    assert rank(by_pickling, 200, MEASURED, cores=2, pool_warm=True, engines=("serial", "processes"))[0].engine \
        == "serial"
    # Bytes that cost more to move than to pickle still cost their bytes.
    big = dataclasses.replace(by_bytes, bytes_in=50e6, pickle_seconds=1e-6)
    assert predict_one(big, 10, MEASURED, ("processes", 2, 5), cores=2) >= 10 * 50e6 / MEASURED.bytes_per_second

"""``amorsize_dask.bag.map``: a lazy Bag, partitioned by the plan, composable, learned from."""

import dask
import dask.bag as db
import pytest
from distributed import Client, LocalCluster

import amorsize_dask as ad
from amorsize_dask.learning.store import TrainingStore
from tests.helpers.funcs import CallLog, read_calls, spin, square


@pytest.fixture(scope="module")
def client():
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=":0") as cluster, \
            Client(cluster) as c:
        yield c


def test_bag_results_and_order_sync_scheduler(tmp_path):
    b = ad.bag.map(square, range(100), training_dir=tmp_path)
    assert isinstance(b, db.Bag)
    assert b.compute(scheduler="sync") == [x * x for x in range(100)]


def test_bag_is_lazy_until_computed(tmp_path):
    log = tmp_path / "calls.txt"
    b = ad.bag.map(CallLog(log, spin), range(400), training_dir=tmp_path / "store")
    sampled = len(read_calls(log)) if log.exists() else 0
    assert sampled < 400  # only the sample ran while planning
    assert b.compute(scheduler="threads") == [spin(x) for x in range(400)]
    assert sorted(read_calls(log)) == list(range(400))  # sampled items were not computed again


def test_bag_composes_with_dask_bag(tmp_path):
    b = ad.bag.map(square, range(1, 51), training_dir=tmp_path)
    evens = b.filter(lambda v: v % 2 == 0)
    total = evens.fold(lambda a, c: a + c, initial=0).compute(scheduler="threads")
    assert total == sum(x * x for x in range(1, 51) if (x * x) % 2 == 0)
    out = tmp_path / "out"
    b.map(str).to_textfiles(str(out / "*.txt"), compute=True, scheduler="threads")
    lines = sorted(int(line) for f in out.glob("*.txt") for line in f.read_text().split())
    assert lines == sorted(x * x for x in range(1, 51))


def test_bag_input_is_repartitioned_and_correct(tmp_path):
    source = db.from_sequence(range(1000), npartitions=50)
    b = ad.bag.map(spin, source, training_dir=tmp_path)
    assert b.compute(scheduler="sync") == [spin(x) for x in range(1000)]


def test_bag_run_is_recorded_in_process(tmp_path):
    b = ad.bag.map(spin, range(300), training_dir=tmp_path)
    b.compute(scheduler="threads")
    recs = TrainingStore(tmp_path).records()
    assert len(recs) == 1
    assert recs[0]["features"]["n_items"] == 300 and recs[0]["compute_seconds"] > 0


def test_bag_run_is_recorded_from_process_scheduler(tmp_path):
    b = ad.bag.map(spin, range(300), training_dir=tmp_path)
    with dask.config.set(num_workers=2):
        assert b.compute(scheduler="processes") == [spin(x) for x in range(300)]
    assert len(TrainingStore(tmp_path).records()) == 1


def _trained_on_many_tasks(training_dir, items):
    """Two measured runs of processes 2x100: the model then plans many partitions."""
    for _ in range(2):
        ad.map(spin, items, engine="processes", n_workers=2, chunksize=100, training_dir=training_dir)
    p = ad.plan(spin, items, training_dir=training_dir)
    assert p.source == "model" and p.n_tasks > 2
    return p


@pytest.mark.parametrize("scheduler", ["threads", "sync", "processes"])
def test_bag_of_many_partitions_is_recorded_once(tmp_path, scheduler):
    # dask.bag passes no partition_info: every partition must still report its own number,
    # or a run of several partitions never completes and is never recorded.
    items = list(range(2000))
    _trained_on_many_tasks(tmp_path, items)
    b = ad.bag.map(spin, items, training_dir=tmp_path)
    assert b.npartitions > 2
    with dask.config.set(num_workers=2):
        assert b.compute(scheduler=scheduler) == [spin(x) for x in items]
    recs = TrainingStore(tmp_path).records()
    assert len(recs) == 3  # two training runs and this one
    assert sorted(r["features"]["n_items"] for r in recs) == [2000, 2000, 2000]


def test_bag_on_a_cluster_is_recorded_and_next_plan_is_the_model(client, tmp_path):
    items = list(range(2000))
    b = ad.bag.map(spin, items, client=client, training_dir=tmp_path)
    assert b.compute() == [spin(x) for x in items]
    deadline_records = _wait_for_records(tmp_path, 1)
    assert deadline_records == 1
    assert ad.plan(spin, items, client=client, training_dir=tmp_path).source == "model"


def _wait_for_records(path, n, timeout=10.0):
    import time

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        count = len(TrainingStore(path).records())
        if count >= n:
            return count
        time.sleep(0.05)
    return len(TrainingStore(path).records())

"""``amorsize_dask.bag.map``: a lazy Bag, partitioned by the plan, composable, learned from."""

import dask
import dask.bag as db
import pytest

import amorsize_dask as ad
from amorsize_dask.learning.store import TrainingStore
from tests.helpers.funcs import CallLog, read_calls, spin, square


def test_bag_results_and_order_sync_scheduler(tmp_path):
    b = ad.bag.map(square, range(100), training_dir=tmp_path)
    assert isinstance(b, db.Bag)
    assert b.compute(scheduler="sync") == [x * x for x in range(100)]


def test_bag_is_lazy_until_computed(tmp_path):
    """Building the Bag runs nothing (no sample either): a function that reads state the
    caller changes before ``compute()`` sees the new state for every item (a sampled first
    partition kept 99 of 100 results stale), and an item that fails fails at ``compute()``."""
    log = tmp_path / "calls.txt"
    b = ad.bag.map(CallLog(log, spin), range(400), training_dir=tmp_path / "store")
    assert not log.exists() or read_calls(log) == []
    assert b.compute(scheduler="threads") == [spin(x) for x in range(400)]
    assert sorted(read_calls(log)) == list(range(400))  # each item once
    SCALE["k"] = 1
    scaled = ad.bag.map(times_scale, range(100), training_dir=tmp_path / "store")
    SCALE["k"] = 10
    assert scaled.compute(scheduler="sync") == [10 * x for x in range(100)]
    failing = ad.bag.map(fails_on_zero, range(50), training_dir=tmp_path / "store")
    with pytest.raises(ZeroDivisionError):
        failing.compute(scheduler="sync")


SCALE = {"k": 1}


def times_scale(x):
    return x * SCALE["k"]


def fails_on_zero(x):
    return 1 / x


def test_bag_composes_with_dask_bag(tmp_path):
    b = ad.bag.map(square, range(1, 51), training_dir=tmp_path)
    evens = b.filter(lambda v: v % 2 == 0)
    total = evens.fold(lambda a, c: a + c, initial=0).compute(scheduler="threads")
    assert total == sum(x * x for x in range(1, 51) if (x * x) % 2 == 0)
    out = tmp_path / "out"
    b.map(str).to_textfiles(str(out / "*.txt"), compute=True, scheduler="threads")
    lines = sorted(int(line) for f in out.glob("*.txt") for line in f.read_text().split())
    assert lines == sorted(x * x for x in range(1, 51))


def test_bag_input_keeps_its_partitions_and_is_correct(tmp_path):
    source = db.from_sequence(range(1000), npartitions=50)
    b = ad.bag.map(spin, source, training_dir=tmp_path)
    assert b.npartitions == 50
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


def spin_more(x):
    """~60 us: 2,000 items take ~0.12 s serially, clearly more than on two processes
    (``spin``'s 6 us made it 12 ms, within a pool's overheads: CI once planned serial).
    The forkserver's workers (after a threads-scheduler test) import this test module at
    their first chunk, ~0.5 s: counted as the run's own time, the model planned serial
    every time (session 24; now a one-time cost, engines/process_worker.py)."""
    return spin(x, 2000)


def _trained_on_many_tasks(training_dir, items):
    """Two measured runs of processes 2x100: the model then plans many partitions."""
    for _ in range(2):
        ad.map(spin_more, items, engine="processes", n_workers=2, chunksize=100, training_dir=training_dir)
    p = ad.plan(spin_more, items, training_dir=training_dir)
    assert p.source == "model" and p.n_tasks > 2, p
    return p


@pytest.mark.parametrize("scheduler", ["threads", "sync", "processes"])
def test_bag_of_many_partitions_is_recorded_once(tmp_path, scheduler):
    # dask.bag passes no partition_info: every partition must still report its own number,
    # or a run of several partitions never completes and is never recorded.
    items = list(range(2000))
    _trained_on_many_tasks(tmp_path, items)
    b = ad.bag.map(spin_more, items, training_dir=tmp_path)
    assert b.npartitions >= 2  # the model's plan, or a neighbour it explores (one wave: a task per worker)
    with dask.config.set(num_workers=2):
        assert b.compute(scheduler=scheduler) == [spin_more(x) for x in items]
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


def _text_files(tmp_path, n_files=8, lines=50):
    folder = tmp_path / "text"
    folder.mkdir()
    for f in range(n_files):
        (folder / f"part-{f}.txt").write_text("".join(f"{f * 1000 + i}\n" for i in range(lines)))
    return str(folder / "*.txt")


def _expected(pattern):
    import glob

    return [spin(int(line)) for path in sorted(glob.glob(pattern)) for line in open(path)]


def spin_line(line):
    return spin(int(line))


@pytest.mark.parametrize("on_cluster", [False, True], ids=["threads-scheduler", "distributed"])
def test_bag_over_read_text_keeps_partitions_and_computes_nothing_when_built(client, tmp_path, on_cluster):
    pattern = _text_files(tmp_path)
    log = tmp_path / "calls.txt"
    func = CallLog(log, spin_line)
    source = db.read_text(pattern)
    assert source.npartitions == 8
    b = ad.bag.map(func, source, client=client if on_cluster else None, training_dir=tmp_path / "store")
    assert not log.exists()  # building it ran nothing
    assert b.npartitions == 8
    got = b.compute() if on_cluster else b.compute(scheduler="threads")
    assert got == _expected(pattern) and type(got) is list  # as dask.bag's own compute() returns
    assert len(read_calls(log)) == 400  # each line once
    recs = _wait_for_records(tmp_path / "store", 1)
    assert recs == 1
    rec = TrainingStore(tmp_path / "store").records()[0]
    assert rec["features"]["n_items"] == 400 and rec["plan"]["chunksize"] == 50  # measured as it ran


def test_bag_partitions_merge_only_on_measured_evidence(client, tmp_path):
    pattern = _text_files(tmp_path)
    lines = db.read_text(pattern).compute(scheduler="sync")
    store = tmp_path / "store"
    for _ in range(2):  # measured: two tasks of 200 lines each on the cluster
        ad.map(spin_line, lines, client=client, engine="dask", n_workers=2, chunksize=200, training_dir=store)
    b = ad.bag.map(spin_line, db.read_text(pattern), client=client, training_dir=store)
    assert 2 <= b.npartitions < 8  # merged, never below the cluster's 2 worker threads
    assert b.compute() == _expected(pattern)


def test_bag_of_unknown_size_is_planned_next_time_from_its_own_partitions(client, tmp_path):
    # A Bag's size is unknown when it is built; its partitions measure and count themselves
    # on the workers and, once all finished, the run is recorded: the next call of the same
    # workload plans from that record (the model), with the size the partitions counted.
    pattern = _text_files(tmp_path)
    store = tmp_path / "store"
    first = ad.bag.map(spin_line, db.read_text(pattern), client=client, training_dir=store)
    assert first.compute() == _expected(pattern)
    assert _wait_for_records(store, 1) == 1
    (measured,) = TrainingStore(store).records()
    assert measured["plan"]["source"] == "default" and measured["features"]["n_items"] == 400
    second = ad.bag.map(spin_line, db.read_text(pattern), client=client, training_dir=store)
    assert second.compute() == _expected(pattern)
    assert _wait_for_records(store, 2) == 2
    newest = max(TrainingStore(store).records(), key=lambda r: r["time"])
    assert newest["plan"]["source"] == "model", newest["plan"]
    assert newest["features"]["n_items"] == 400


def test_a_bag_of_small_results_leaves_the_workers_whole_and_arrives_as_plain_lists(client, tmp_path):
    """distributed sends a list item by item; ours go as one pickle and arrive as lists."""
    b = ad.bag.map(dict, db.from_sequence([[("i", i)] for i in range(2000)], npartitions=4), client=client,
                   training_dir=tmp_path)
    got = b.compute()
    assert got == [{"i": i} for i in range(2000)] and type(got) is list
    part = client.compute(b.to_delayed()[1]).result()
    assert part == [{"i": i} for i in range(500, 1000)] and type(part) is list


def test_a_bags_tasks_carry_the_functions_name_in_their_key_prefix():
    """As ``map``'s tasks do (``amorsize-<function>``): Dask's per-prefix statistics and the
    dashboard see the function, not one ``amorsize`` prefix for every Bag."""
    from dask.utils import key_split

    def parse_line(x):
        return x

    keys = ad.bag.map(parse_line, list(range(10))).__dask_keys__()
    assert {key_split(k) for k in keys} == {"amorsize-parse-line"}

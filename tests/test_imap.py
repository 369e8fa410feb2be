"""imap: lazy, ordered (or not), bounded, closable, exceptions in place — on every engine."""

from __future__ import annotations

import io
import itertools
import json
import subprocess
import sys
import textwrap
import time

import pytest

import amorsize_dask as ad
from amorsize_dask.stream.planner import IN_FLIGHT_PER_WORKER

LOCAL_ENGINES = ["serial", "threads", "processes", "auto"]


class Boom(Exception):
    pass


def explode_at_5(x):
    if x == 5:
        raise Boom(f"item {x}")
    return x * 10


def busy(x, seconds=2e-4):
    t0 = time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        pass
    return x + 1


class Counted:
    """An iterator over range(n) that counts how many items were taken from it."""

    def __init__(self, n):
        self.taken = 0
        self._it = iter(range(n))

    def __iter__(self):
        return self

    def __next__(self):
        value = next(self._it)
        self.taken += 1
        return value


@pytest.fixture
def training(tmp_path):
    return tmp_path / "training"


@pytest.mark.parametrize("engine", LOCAL_ENGINES)
def test_results_in_order_like_builtins_map(engine, training):
    items = list(range(300))
    assert list(ad.imap(busy, items, engine=engine, training_dir=training)) == list(map(busy, items))


@pytest.mark.parametrize("engine", ["threads", "processes"])
def test_unordered_gives_every_result_once(engine, training):
    items = list(range(300))
    got = list(ad.imap(busy, items, engine=engine, ordered=False, chunksize=7, training_dir=training))
    assert sorted(got) == list(map(busy, items))


@pytest.mark.parametrize("engine", LOCAL_ENGINES)
def test_lazy_first_result_before_a_huge_input_is_read(engine, training):
    source = Counted(10_000_000)
    it = ad.imap(abs, source, engine=engine, training_dir=training)
    assert next(it) == 0
    assert 0 < source.taken < 10_000_000
    it.close()


@pytest.mark.parametrize("engine", ["serial", "threads", "processes"])
def test_input_read_ahead_is_bounded(engine, training):
    source = Counted(5_000)
    bound = (IN_FLIGHT_PER_WORKER * 2 + 1) * 50 + 50  # at most this many items read but not yielded
    for n_yielded, _ in enumerate(ad.imap(busy, source, engine=engine, n_workers=2, chunksize=50,
                                          training_dir=training), start=1):
        assert source.taken - n_yielded <= bound
    assert n_yielded == 5_000


@pytest.mark.parametrize("engine", LOCAL_ENGINES)
def test_exception_raised_at_its_position_after_earlier_results(engine, training):
    got = []
    with pytest.raises(Boom, match="item 5"):
        for value in ad.imap(explode_at_5, range(50), engine=engine, chunksize=3, training_dir=training):
            got.append(value)
    assert got == [0, 10, 20, 30, 40]


def test_several_iterables_stop_at_the_shortest(training):
    assert list(ad.imap(pow, [2, 3, 4, 5], iter([1, 2, 3]), training_dir=training)) == [2, 9, 64]
    with pytest.raises(TypeError, match="at least one iterable"):
        ad.imap(abs)


def test_bad_arguments_fail_at_the_call(training):
    with pytest.raises(TypeError):
        ad.imap(abs, 5)
    with pytest.raises(ValueError, match="engine"):
        ad.imap(abs, [1], engine="gpu")


def test_progress_counts_a_stream_of_unknown_length(training):
    stream = io.StringIO()
    assert sum(ad.imap(abs, (x for x in range(1000)), progress=stream, training_dir=training)) == 499500
    last = stream.getvalue().strip().split("\r")[-1]
    assert last.startswith("1000 items") and "%" not in last


def test_a_finished_stream_is_recorded_with_its_length(training):
    list(ad.imap(busy, iter(range(400)), training_dir=training))
    records = ad.TrainingStore(training).records()
    assert len(records) == 1 and records[0]["features"]["n_items"] == 400


def test_closed_early_is_not_recorded_and_stops_reading(training):
    source = Counted(100_000)
    it = ad.imap(busy, source, engine="processes", n_workers=2, chunksize=10, training_dir=training)
    next(it)
    it.close()
    assert source.taken < 1000
    assert ad.TrainingStore(training).records() == []


SCRIPT = textwrap.dedent("""
    import json, os, sys, time
    import psutil
    import amorsize_dask as ad

    def slow(x):
        time.sleep(0.05)
        return x

    if __name__ == "__main__":
        it = ad.imap(slow, iter(range(10_000)), engine="processes", n_workers=2, chunksize=1)
        first = [next(it) for _ in range(3)]
        it.close()
        children = [p.pid for p in psutil.Process().children(recursive=True)]
        print(json.dumps({"first": first, "children": children}), flush=True)
""")


def test_early_close_then_exit_leaves_no_process_behind(tmp_path):
    script = tmp_path / "stream_user.py"
    script.write_text(SCRIPT)
    env = {**__import__("os").environ, "DASK_AMORSIZE__TRAINING_DIR": str(tmp_path / "training")}
    done = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=120, env=env)
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout.strip().splitlines()[-1])
    assert out["first"] == [0, 1, 2]
    import psutil

    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and any(psutil.pid_exists(p) and psutil.Process(p).status() != "zombie"
                                              for p in out["children"]):
        time.sleep(0.05)
    assert not [p for p in out["children"] if psutil.pid_exists(p) and psutil.Process(p).status() != "zombie"]


def on_worker(x):
    from distributed import get_worker

    get_worker()  # raises ValueError outside a worker: func must never run in the client
    return x * 2


def test_cluster_stream_runs_on_workers_in_order_with_bounded_reads(client, training):
    source = Counted(2_000)
    results = []
    for value in ad.imap(on_worker, source, client=client, chunksize=20, training_dir=training):
        results.append(value)
        assert source.taken - len(results) <= (IN_FLIGHT_PER_WORKER * 2 + 1) * 20 + 20
    assert results == [2 * x for x in range(2_000)]


def test_cluster_stream_closed_early_leaves_no_task(client, training):
    it = ad.imap(busy, iter(range(100_000)), client=client, chunksize=50, training_dir=training)
    assert next(it) == 1
    it.close()
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and any("amorsize-imap" in str(k) for k in client.who_has()):
        time.sleep(0.05)
    assert not [k for k in client.who_has() if "amorsize-imap" in str(k)]
    assert not [k for k in itertools.chain.from_iterable(client.processing().values()) if "amorsize-imap" in str(k)]

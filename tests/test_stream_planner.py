"""``stream.planner``: a stream of unknown length is sampled, sized and re-sized from its own chunks."""

import pytest

from amorsize_dask.engines.chunks import ChunkResult
from amorsize_dask.learning.store import TrainingStore
from amorsize_dask.stream.planner import MAX_CHUNK_ITEMS, REPLAN_FACTOR, SAMPLE_SECONDS, StreamPlanner
from tests.helpers.costly import busy
from tests.helpers.funcs import fail_on_seven


def planner(func, tmp_path, **kw):
    args = {"client": None, "engine": "serial", "n_workers": None, "chunksize": None, "training_dir": tmp_path}
    return StreamPlanner(func, func, **{**args, **kw})


def test_the_sample_keeps_its_results_and_plans_from_them(tmp_path):
    p = planner(busy, tmp_path)
    source = iter([1e-3] * 1000)
    head = p.sample(source)
    assert head.failure is None and not head.remote
    assert head.results == [1e-3] * len(head.results) and p.n_sampled == p.n_done == len(head.results)
    assert len(head.results) + len(list(source)) == 1000             # nothing read was lost
    assert p.compute_seconds >= SAMPLE_SECONDS                       # timed until the budget was spent
    assert p.profile is not None and p.profile.n_sampled == len(head.results)
    assert 1 <= p.chunksize <= MAX_CHUNK_ITEMS and (p.engine, p.n_workers, p.max_in_flight) == ("serial", 1, 1)


def test_a_short_stream_is_read_to_its_end_and_an_empty_one_plans_nothing(tmp_path):
    p = planner(abs, tmp_path)
    assert p.sample(iter([-1, -2, -3])).results == [1, 2, 3]
    empty = planner(abs, tmp_path)
    assert empty.sample(iter([])).results == [] and empty.profile is None
    empty.record(wall_seconds=0.1)
    assert TrainingStore(tmp_path).records() == []


def test_a_failure_while_sampling_stops_there_with_the_earlier_results(tmp_path):
    p = planner(fail_on_seven, tmp_path)
    head = p.sample(iter(range(10)))
    assert head.results == list(range(7))
    assert head.failure.index == 7 and isinstance(head.failure.exception, ValueError)
    assert p.profile is None


def test_chunks_are_resized_when_the_cost_per_item_moves(tmp_path):
    p = planner(busy, tmp_path)
    p.sample(iter([1e-4] * 400))
    before, per_item = p.chunksize, p.item_seconds
    n = 10
    # chunks measured ten times dearer per item than the sample: past REPLAN_FACTOR, smaller chunks
    for _ in range(2):
        p.observe(ChunkResult(p.n_done, [0] * n, compute_seconds=10 * REPLAN_FACTOR * per_item * n))
    assert p.item_seconds > REPLAN_FACTOR * per_item
    assert p.chunksize < before and any("re-planned" in r for r in p.reasons)


def test_a_requested_chunksize_is_never_changed(tmp_path):
    p = planner(busy, tmp_path, chunksize=7)
    p.sample(iter([1e-4] * 400))
    p.observe(ChunkResult(p.n_done, [0] * 7, compute_seconds=1.0))
    assert p.chunksize == 7 and p.reasons == []


@pytest.mark.parametrize("engine", ["serial", "threads"])
def test_the_whole_stream_is_recorded_as_one_run(tmp_path, engine):
    p = planner(busy, tmp_path, engine=engine, n_workers=2)
    p.sample(iter([1e-4] * 300))
    p.observe(ChunkResult(p.n_done, [1e-4] * 50, compute_seconds=50e-4))
    p.record(wall_seconds=0.5)
    (rec,) = TrainingStore(tmp_path).records()
    assert rec["features"]["n_items"] == p.n_done
    assert rec["plan"]["engine"] == engine and rec["wall_seconds"] == 0.5
    assert rec["compute_seconds"] == pytest.approx(p.compute_seconds, rel=1e-5)  # records keep 6 digits

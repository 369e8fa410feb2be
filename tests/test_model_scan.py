"""A prediction scans every run its workload kept: the scan is one pass per feature (numpy)
and the index's observation list grows with each run instead of being rebuilt. Both must
give exactly what the one-by-one versions gave."""

import math
import random

from hypothesis import given, settings, strategies as st

from amorsize_dask.learning import model
from amorsize_dask.learning.index import Group

maybe = lambda values: st.one_of(st.none(), values)  # noqa: E731
observations = st.builds(
    model.Observation,
    workload=st.just("w"),
    n_items=st.integers(1, 10**6),
    item_seconds=st.floats(0.0, 10.0),
    engine=st.sampled_from(["serial", "threads", "processes"]),
    n_workers=st.integers(1, 8),
    chunksize=st.integers(1, 1000),
    run_seconds=st.floats(1e-6, 100.0),
    time=st.floats(0.0, 1e6),
    source=st.sampled_from(["sample", "model", "explore"]),
    bytes_per_item=maybe(st.floats(0.0, 1e8)),
    cpu_ratio=maybe(st.floats(0.0, 2.0)),
)


def _log_gap(a, b, floor):
    if a is None or b is None:
        return 0.0
    return max(0.0, abs(math.log(max(a, floor) / max(b, floor))) - math.log(model.NOISE_FACTOR))


def _feature_distance_one_by_one(o, ref):
    """The distance as it was written before the scan: the reference for the vectorised one."""
    return (_log_gap(o.item_seconds, ref.item_seconds, 1e-9)
            + _log_gap(o.bytes_per_item, ref.bytes_per_item, 1.0)
            + _log_gap(o.cpu_ratio, ref.cpu_ratio, 1e-3))


@settings(max_examples=200, deadline=None)
@given(st.lists(observations, min_size=1, max_size=40))
def test_the_scan_measures_every_run_as_the_one_by_one_distance_does(obs):
    ref = model.reference(sorted(obs, key=lambda o: o.time))
    at_once = model.feature_distances(obs, ref).tolist()
    one_by_one = [_feature_distance_one_by_one(o, ref) for o in obs]
    assert all(math.isclose(a, b, rel_tol=1e-12, abs_tol=1e-12) for a, b in zip(at_once, one_by_one))


def _nearest_one_by_one(observations, n_items, k):
    """The k-NN as it was written before the scan: the reference for the vectorised one."""
    log_n = math.log(n_items)
    ref = model.reference(sorted(observations, key=lambda o: o.time))
    scored = []
    for age, o in enumerate(sorted(observations, key=lambda o: -o.time)):
        far = _feature_distance_one_by_one(o, ref)
        if far <= model.FAR_LOG_DISTANCE:
            scored.append((abs(math.log(o.n_items) - log_n) + far, age, o))
    scored.sort(key=lambda t: (t[0], t[1]))
    return [(d, 0.5 ** (age / model.RECENCY_HALF_LIFE) / (d + 0.1), o) for d, age, o in scored[:k]]


@settings(max_examples=200, deadline=None)
@given(st.lists(observations, min_size=1, max_size=40), st.integers(1, 10**6), st.integers(1, 12))
def test_the_nearest_runs_are_those_the_one_by_one_scan_found(obs, n_items, k):
    got = model._nearest(obs, n_items, k)
    want = _nearest_one_by_one(obs, n_items, k)
    assert [o for _, _, o in got] == [o for _, _, o in want]
    assert all(math.isclose(a, b, rel_tol=1e-9) for (a, _, _), (b, _, _) in zip(got, want))
    assert all(math.isclose(a, b, rel_tol=1e-9) for (_, a, _), (_, b, _) in zip(got, want))


def _fields(rng, t):
    return ("w", rng.choice([100, 400, 1000]), rng.uniform(1e-5, 1e-3), rng.choice(["serial", "processes"]),
            rng.choice([1, 2]), rng.choice([10, 50]), rng.uniform(0.01, 1.0), t, rng.choice(["sample", "model"]),
            rng.choice([None, 120.0]), rng.choice([None, 0.98]), rng.choice([None, 0.2]))


def test_observations_kept_as_runs_arrive_equal_those_rebuilt_from_the_rows():
    """Runs in time order (a warm loop of calls), one out of order (another process's run
    read later), and past the capacity (the older half dropped)."""
    rng = random.Random(5)
    group = Group(capacity=64)
    times = [float(t) for t in range(200)]
    times[150], times[151] = times[151], times[150]
    for t in times:
        group.add(_fields(rng, t))
        kept = group.observations("w")
        rebuilt = Group.from_state(group.state(), group.rows[: group.n], 64).observations("w")
        assert kept == rebuilt, t

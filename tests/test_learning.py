"""Every map teaches the next one: records, k-NN predictions, exploration, faults."""

import json
import math
import random
import warnings

import pytest

import amorsize_dask as ad
from amorsize_dask.learning import model
from amorsize_dask.learning.learner import get_learner
from amorsize_dask.mapping import run_map
from amorsize_dask.learning.store import TrainingStore
from tests.helpers.funcs import CallLog, read_calls, spin


def test_every_map_appends_one_measured_record(tmp_path):
    ad.map(spin, range(300), training_dir=tmp_path)
    ad.map(spin, range(300), training_dir=tmp_path, learn=False)
    recs = TrainingStore(tmp_path).records()
    assert len(recs) == 1
    rec = recs[0]
    assert rec["features"]["n_items"] == 300
    assert rec["wall_seconds"] > 0 and rec["compute_seconds"] > 0
    assert rec["plan"]["source"] == "sample"
    assert rec["function"].endswith("spin")
    assert rec["fingerprint_fields"]["kind"] == "local"


def test_runs_after_the_first_are_planned_by_the_model_without_sampling(tmp_path):
    log = tmp_path / "calls.txt"
    func = CallLog(log, spin)
    outcomes = [run_map(func, list(range(200)), training_dir=tmp_path / "store") for _ in range(3)]
    assert outcomes[0].plan.source == "sample"
    for later in outcomes[1:]:
        assert later.plan.source == "model" and later.plan.n_sampled == 0 and later.plan.confidence >= 0.6
        assert "model:" in later.plan.explain()
    assert sorted(read_calls(log)) == sorted(list(range(200)) * 3)  # nothing computed twice


def test_a_fixed_engine_learns_only_from_its_own_runs(tmp_path):
    plans = [run_map(spin, range(300), training_dir=tmp_path, engine="threads").plan for _ in range(3)]
    assert plans[0].source == "sample"
    assert all(p.source == "model" and p.engine == "threads" for p in plans[1:])
    other = run_map(spin, range(300), training_dir=tmp_path, engine="processes").plan
    assert other.source == "sample" and other.engine == "processes"  # no processes run measured yet
    fixed = run_map(spin, range(300), training_dir=tmp_path, engine="threads", n_workers=2, chunksize=7).plan
    assert (fixed.source, fixed.n_workers, fixed.chunksize) == ("default", 2, 7)


def _obs(n, engine, w, c, seconds, t=0.0):
    return model.Observation("w", n, 1e-3, engine, w, c, seconds, t)


def test_model_returns_best_configuration_on_synthetic_records():
    obs = [
        _obs(2000, "processes", 2, 500, 1.20),
        _obs(2000, "processes", 2, 64, 0.90),
        _obs(2000, "processes", 2, 64, 0.95),
        _obs(2000, "serial", 1, 2000, 2.0),
        _obs(2000, "threads", 8, 100, 1.9),
    ]
    p = model.predict(obs, 2000, cores=2, explore=False)
    assert (p.engine, p.n_workers, p.chunksize) == ("processes", 2, 64)
    assert p.seconds == pytest.approx(0.925, rel=0.05)


def test_model_confidence_falls_with_distance():
    obs = [_obs(1000, "processes", 2, 50, 0.5), _obs(1000, "processes", 2, 50, 0.5)]
    near = model.predict(obs, 1000, cores=2, explore=False).confidence
    far = model.predict(obs, 30000, cores=2, explore=False).confidence
    assert near >= 0.6 > far


def test_model_scales_balance_bound_chunks():
    obs = [_obs(24, "processes", 2, 12, 1.0), _obs(24, "processes", 2, 12, 1.0)]
    p = model.predict(obs, 48, cores=2, explore=False)
    assert p.chunksize == 24


def test_exploration_is_bounded():
    rng = random.Random(1)
    obs = [_obs(1000, "processes", 2, 50, 0.5, t) for t in range(3)]
    obs.append(_obs(1000, "processes", 2, 100, 2.0))  # a neighbour measured 4x slower
    tried = set()
    for _ in range(200):
        p = model.predict(obs, 1000, cores=2, explore=True, explore_probability=1.0, rng=rng)
        cfg = (p.engine, p.n_workers, p.chunksize)
        assert cfg != ("processes", 2, 100), "re-explored a configuration measured slow"
        if p.explored:
            tried.add(cfg)
    neighbours = set(model.neighbours(("processes", 2, 50), 1000, cores=2, max_threads=64))
    assert tried and tried <= neighbours


def test_repeated_runs_converge_to_the_measured_best():
    """Simulated machine: each configuration has a true time; the learner must find the best."""
    truth = lambda cfg: {("processes", 2, 25): 0.5}.get(cfg, 0.8 + 0.001 * cfg[2])  # noqa: E731
    rng = random.Random(7)
    obs = [_obs(1000, "processes", 2, 100, truth(("processes", 2, 100)))]
    for i in range(40):
        p = model.predict(obs, 1000, cores=2, explore=True, explore_probability=0.1, rng=rng)
        cfg = (p.engine, p.n_workers, p.chunksize)
        obs.append(_obs(1000, *cfg, truth(cfg), t=i + 1))
    final = model.predict(obs, 1000, cores=2, explore=False)
    assert (final.engine, final.n_workers, final.chunksize) == ("processes", 2, 25)


def test_unwritable_training_dir_warns_once_and_map_still_works(tmp_path):
    blocker = tmp_path / "a_file"
    blocker.write_text("not a directory")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for _ in range(3):
            assert ad.map(spin, range(20), training_dir=blocker / "store") == [spin(x) for x in range(20)]
    ours = [w for w in caught if "amorsize" in str(w.message).lower() or "training" in str(w.message).lower()]
    assert len(ours) == 1


def test_planted_pickle_is_never_loaded(tmp_path):
    import pickle

    marker = tmp_path / "pwned"

    class Evil:
        def __reduce__(self):
            return (open, (str(marker), "w"))

    store = tmp_path / "store"
    (store / "segments").mkdir(parents=True)
    (store / "segments" / "evil.jsonl").write_bytes(pickle.dumps(Evil()))
    (store / "evil.pkl").write_bytes(pickle.dumps(Evil()))
    assert ad.map(spin, range(30), training_dir=store) == [spin(x) for x in range(30)]
    assert not marker.exists()
    assert sum(TrainingStore(store).stats().skipped.values()) >= 1


def test_corrupt_and_future_records_are_skipped_and_planning_works(tmp_path):
    store = tmp_path / "store"
    ad.map(spin, range(30), training_dir=store)
    seg = next((store / "segments").glob("*.jsonl"))
    good = json.loads(seg.read_text().splitlines()[0])
    with open(seg, "a") as f:
        f.write(json.dumps(dict(good, schema=99)) + "\n")
        f.write("{not json\n")
        f.write('{"schema": 1, "time": 1')  # torn last line
    learner = get_learner(store)
    assert len(learner.store.records()) == 1
    assert ad.plan(spin, range(30), training_dir=store).n_items == 30


def test_near_fingerprint_is_borrowed_at_lower_confidence(tmp_path):
    learner = get_learner(tmp_path)
    from amorsize_dask.target.target import Target

    here = Target.local(spin, tmp_path)
    other_fields = dict(here.fingerprint.as_dict(), cores=4)
    for _ in range(4):
        learner.record(fingerprint="f" * 16, fingerprint_fields=other_fields, workload=here.workload,
                       function="spin", features={"n_items": 500, "n_sampled": 0}, engine="processes",
                       n_workers=4, chunksize=50, source="sample", wall_seconds=0.3, compute_seconds=0.5)
    pred = learner.predict(here.fingerprint.id, here.workload, 500, cores=2, fields=here.fingerprint.as_dict(),
                           explore=False)
    assert pred is not None and pred.n_workers == 2  # clamped to this machine's cores
    own = model.predict([_obs(500, "processes", 2, 50, 0.3)] * 4, 500, cores=2, explore=False)
    assert pred.confidence < own.confidence
    assert math.isfinite(pred.seconds)

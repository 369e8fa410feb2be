"""bench --learning's drift family: the cost per item changes after the first run."""

from amorsize_dask.bench.learning import DRIFT_CHEAP, DRIFT_DEAR, drifting, families_for


def test_drift_family_changes_its_items_after_the_first_run():
    (fam,) = families_for(4, quick=True, names=["drift"])
    assert fam.run_items[0][0] == DRIFT_CHEAP and all(items[0] == DRIFT_DEAR for items in fam.run_items[1:])
    assert len(fam.big_items) == 3 * len(fam.run_items[0])



def test_drift_items_cost_what_they_say():
    assert drifting(DRIFT_CHEAP) != drifting(DRIFT_DEAR)  # the item decides the work done


def test_overhead_bench_scores_a_workloads_own_runs(tmp_path):
    """bench --overhead's 1,000-runs row: the records it writes are of the planned
    workload itself, so the model plans from them (and scores every one)."""
    from amorsize_dask.bench.learning import _calls_in_a_loop, _own_records
    from amorsize_dask.bench.workloads import cpu_1ms
    from amorsize_dask.learning.learner import get_learner
    from amorsize_dask.mapping import plan
    from amorsize_dask.target.target import Target

    _own_records(get_learner(tmp_path), 40, Target.local(cpu_1ms, tmp_path))
    found = plan(cpu_1ms, range(2000), training_dir=tmp_path)
    assert (found.source, found.engine) == ("model", "processes"), found.explain()
    line = _calls_in_a_loop(calls=4, last=2)
    assert line.startswith("map() of 500 x tiny in a loop of 4 calls") and "serial" in line

"""bench --learning's drift family: the cost per item changes after the first run."""

from amorsize_dask.bench.learning import DRIFT_CHEAP, DRIFT_DEAR, drifting, families_for


def test_drift_family_changes_its_items_after_the_first_run():
    (fam,) = families_for(4, quick=True, names=["drift"])
    assert fam.run_items[0][0] == DRIFT_CHEAP and all(items[0] == DRIFT_DEAR for items in fam.run_items[1:])
    assert len(fam.big_items) == 3 * len(fam.run_items[0])



def test_drift_items_cost_what_they_say():
    assert drifting(DRIFT_CHEAP) != drifting(DRIFT_DEAR)  # the item decides the work done

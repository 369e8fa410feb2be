"""A serial plan that overruns its prediction: the rest is planned again from the items it ran.

The watch itself is tested with a given re-planner (which configuration it picks is the
cost model's business); the whole path runs as a user's script whose dear items come
after the sampled ones.
"""

import os
import threading
import time

import pytest

from amorsize_dask.planning.cost_model import Candidate
from amorsize_dask.planning.overrun import OVERRUN_MIN_SECONDS, run_watched
from tests.test_user_scripts import run_script


def _wait(seconds):
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        pass


class Counted:
    """A function that remembers which items it ran (from any thread)."""

    def __init__(self, seconds):
        self.seconds, self.seen, self.lock = seconds, [], threading.Lock()

    def __call__(self, x):
        _wait(self.seconds)
        with self.lock:
            self.seen.append(x)
        return x * 10


def test_past_its_deadline_the_rest_runs_on_the_new_plan_each_item_once_in_order():
    func, asked = Counted(1e-3), []

    def replan(item_seconds, item_cv, n_left):
        asked.append((item_seconds, n_left, time.perf_counter() - start))
        return Candidate("threads", 2, 7, 0.0), ["because"]

    start = time.perf_counter()
    done = run_watched(func, list(range(200)), first_index=0, expected_seconds=1e-4, replan=replan)
    assert done.results == [x * 10 for x in range(200)]
    assert sorted(func.seen) == list(range(200))  # each item once
    assert done.replanned == Candidate("threads", 2, 7, 0.0)
    (item_seconds, n_left, after), = asked
    assert item_seconds >= 0.9e-3 and 0 < n_left < 200  # measured on the items run, not the prediction
    assert after >= OVERRUN_MIN_SECONDS  # not before the deadline
    assert "serial overran its prediction" in done.reasons[0] and done.reasons[1] == "because"


def test_a_serial_answer_keeps_watching_and_the_items_stay_in_order():
    func, asked = Counted(1e-3), []

    def replan(item_seconds, item_cv, n_left):
        asked.append(n_left)
        return Candidate("serial", 1, n_left, 0.0), []

    done = run_watched(func, list(range(150)), first_index=0, expected_seconds=1e-4, replan=replan)
    assert done.results == [x * 10 for x in range(150)] and func.seen == list(range(150))
    assert done.replanned is None and asked and asked == sorted(asked, reverse=True)


def test_a_prediction_that_holds_is_never_replanned():
    def replan(*args):
        raise AssertionError("re-planned a run that kept to its prediction")

    done = run_watched(abs, list(range(-500, 0)), first_index=0, expected_seconds=10.0, replan=replan)
    assert done.results == list(range(500, 0, -1))


def test_a_failing_item_is_named_by_its_index_in_the_whole_call():
    def func(x):
        if x == 57:
            raise ValueError("bad item")
        return x

    with pytest.raises(ValueError, match="bad item") as info:
        run_watched(func, list(range(40, 100)), first_index=40, expected_seconds=1.0,
                    replan=lambda *a: (Candidate("serial", 1, 1, 0.0), []))
    assert any("item 57" in note for note in info.value.__notes__)


SKEWED_HEAD = """
import json, time
from dataclasses import dataclass
from amorsize_dask.mapping import run_map

@dataclass
class Reading:  # the script's own class, in the items and in the results
    value: int

class Skewed:  # and its own callable class, as the function
    def __call__(self, reading):
        x = reading.value
        dear = x >= 100 and x % 3 == 0  # after the sampled items, and spread, as bench family skew-tail
        end = time.perf_counter() + (0.02 if dear else 30e-6)
        while time.perf_counter() < end:
            pass
        return Reading(x * 3)
"""

SKEWED_MAIN = """
items, expected = [Reading(x) for x in range(200)], [Reading(x * 3) for x in range(200)]
outcome = run_map(Skewed(), items)
again = run_map(Skewed(), items)  # the model's plan, exploring a neighbour while it has one run
print(json.dumps(dict(ok=outcome.results == expected, engine=outcome.plan.engine,
                      reasons=list(outcome.plan.reasons), again_ok=again.results == expected,
                      again_source=again.plan.source)))
"""


@pytest.mark.parametrize("guard", [True, False], ids=["guarded", "unguarded"])
def test_a_script_whose_dear_items_come_late_gets_them_run_in_parallel(tmp_path, guard):
    # Its own training directory: a run recorded by the other case would be the model's plan.
    env = dict(os.environ, DASK_AMORSIZE__TRAINING_DIR=str(tmp_path / "training"))
    out, _ = run_script(tmp_path, SKEWED_HEAD, SKEWED_MAIN, guard=guard, env=env)
    assert out["ok"]
    why = "\n".join(out["reasons"])
    assert "serial overran its prediction" in why, why
    assert out["engine"] == "processes", why  # ~30 x 20 ms left: two processes halve it
    # The second call plans from the first one's record, on the script's own classes too.
    assert out["again_ok"] and out["again_source"] == "model", out


def test_one_stall_is_not_read_as_the_items_cost():
    # 400 items of ~nothing, one of which stalls 80 ms (a descheduled thread, a collection):
    # past the deadline, the rest is planned from the items' own rate, not the stall's.
    asked = []

    def func(x):
        if x == 200:
            time.sleep(0.08)
        return x

    def replan(item_seconds, item_cv, n_left):
        asked.append(item_seconds)
        return Candidate("serial", 1, n_left, 0.0), []

    done = run_watched(func, list(range(400)), first_index=0, expected_seconds=1e-4, replan=replan)
    assert done.results == list(range(400))
    assert asked and max(asked) < 1e-4, asked  # the stall alone would read 80 ms / 200 items = 0.4 ms

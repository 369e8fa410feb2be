"""A script's first ``ad.map`` runs its first items before the planner, dask and numpy
load (amorsize_dask/planning/head.py): a short job returns there, a long one goes on from
there without running an item twice. Each script runs as ``__main__`` in a fresh process,
as users run them."""

import json
import os
import subprocess
import sys
import textwrap

import pytest

SCRIPT = textwrap.dedent("""
    import json, os, sys, time
    import amorsize_dask as ad

    LOG = sys.argv[2]

    def work(x):  # ITEM_SECONDS of pure Python (TAIL_SECONDS from item 100); each call leaves a line in LOG
        end = time.perf_counter() + (ITEM_SECONDS if x < 100 else TAIL_SECONDS)
        while time.perf_counter() < end:
            pass
        with open(LOG, "a") as f:
            f.write(f"{x}\\n")
        if x == FAIL_AT:
            raise ValueError(f"bad item {x}")
        return x * 3

    if __name__ == "__main__":
        n = int(sys.argv[1])
        if PRELOAD:
            import dask  # noqa: F401  (the planner's path from the start)
        report = {}
        try:
            report["results_ok"] = ad.map(work, GENERATOR(n)) == [x * 3 for x in range(n)]
        except ValueError as exc:
            report["error"] = [str(exc), getattr(exc, "__notes__", [])]
        report["loaded"] = sorted(m for m in ("dask", "numpy", "amorsize_dask.mapping") if m in sys.modules)
        print(json.dumps(report), flush=True)
""")


def _run(tmp_path, n, *, item_seconds=1e-4, tail_seconds=None, fail_at=-1, preload=False, generator=False,
         env=None, home=None):
    tail_seconds = item_seconds if tail_seconds is None else tail_seconds
    text = (SCRIPT.replace("ITEM_SECONDS", repr(item_seconds)).replace("TAIL_SECONDS", repr(tail_seconds))
            .replace("FAIL_AT", repr(fail_at))
            .replace("PRELOAD", repr(preload)).replace("GENERATOR", "(lambda n: (x for x in range(n)))"
                                                       if generator else "range"))
    script = tmp_path / "user.py"
    script.write_text(text)
    log = tmp_path / "calls.log"
    log.unlink(missing_ok=True)
    run_env = {k: v for k, v in os.environ.items() if not k.startswith("DASK_")}
    run_env.update({"DASK_AMORSIZE__TRAINING_DIR": str(tmp_path / "training"), **(env or {})})
    if home is not None:
        run_env["HOME"] = str(home)
    done = subprocess.run([sys.executable, str(script), str(n), str(log)], capture_output=True, text=True,
                          timeout=180, env=run_env, cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads(done.stdout.strip().splitlines()[-1])
    report["calls"] = sorted(int(line) for line in log.read_text().split()) if log.exists() else []
    return report


def test_a_short_job_returns_before_the_planner_loads(tmp_path):
    report = _run(tmp_path, 200)  # ~20 ms
    assert report["results_ok"] and report["calls"] == list(range(200))
    assert report["loaded"] == [], report


def test_a_job_shorter_than_the_hand_over_stays_in_its_head(tmp_path):
    """0.1 s of items: loading the planner (~0.15-0.25 s here) and two cores would take
    longer than running them here."""
    report = _run(tmp_path, 100, item_seconds=1e-3)
    assert report["results_ok"] and report["calls"] == list(range(100))
    assert report["loaded"] == [], report


def test_a_dear_tail_the_heads_pace_missed_is_handed_over(tmp_path):
    """100 items of 10 us, then 900 of 4 ms (3.6 s): the head's pace said 10 ms in all; its
    own time past the hand-over's worth stops it, and the rest is planned."""
    report = _run(tmp_path, 1000, item_seconds=1e-5, tail_seconds=4e-3)
    assert report["results_ok"] and report["calls"] == list(range(1000))
    assert "amorsize_dask.mapping" in report["loaded"], report


@pytest.mark.parametrize("generator", [False, True])
def test_a_long_job_goes_on_from_its_head_and_runs_each_item_once(tmp_path, generator):
    """0.5 s of items: the head runs the first ones here, the sampler and the plan (two
    processes, here) the rest; every item ran once, in the order's results. Its second run
    plans from the first's record (the model), and goes on from the head too."""
    for _ in range(2):
        report = _run(tmp_path, 500, item_seconds=1e-3, generator=generator)
        assert report["results_ok"], report
        assert report["calls"] == list(range(500)), report["calls"][:20]
        assert "amorsize_dask.mapping" in report["loaded"]


def test_an_item_that_raises_in_the_head_names_its_index_as_the_planner_does(tmp_path):
    """As builtins.map: no item after it ran. (Planned, item 7 may run in a worker, beside
    later chunks, as in Pool.map: then the note carries the worker's traceback too.)"""
    head = _run(tmp_path, 200, fail_at=7)
    planned = _run(tmp_path, 200, fail_at=7, preload=True)
    assert head["error"] == ["bad item 7", ["amorsize_dask: raised by __main__.work on item 7"]], head
    assert planned["error"][0] == "bad item 7", planned
    assert planned["error"][1][0].splitlines()[0] == "amorsize_dask: raised by __main__.work on item 7"
    assert head["calls"] == list(range(8))


def test_no_head_where_dask_is_loaded_or_configured(tmp_path):
    """dask loaded (its settings may be set in code), a DASK_ variable, or a folder dask
    reads YAML from: the call is planned as before."""
    assert _run(tmp_path, 200, preload=True)["loaded"] == ["amorsize_dask.mapping", "dask", "numpy"]
    configured = _run(tmp_path, 200, env={"DASK_AMORSIZE__PLANNER__MIN_SPEEDUP": "1.1"})
    assert "amorsize_dask.mapping" in configured["loaded"]
    home = tmp_path / "home"
    (home / ".config" / "dask").mkdir(parents=True)
    assert "amorsize_dask.mapping" in _run(tmp_path, 200, home=home)["loaded"]
    assert _run(tmp_path, 200, home=tmp_path / "empty-home")["loaded"] == []

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

    ARGS, LOG = json.loads(sys.argv[1]), sys.argv[2]

    def work(x):  # ARGS["item"] seconds (ARGS["tail"] from item ARGS["tail_from"]); a line in LOG per call
        seconds = ARGS["item"] if x < ARGS["tail_from"] else ARGS["tail"]
        end = time.perf_counter() + seconds
        if ARGS["sleep"]:
            time.sleep(seconds)
        while time.perf_counter() < end:
            pass
        with open(LOG, "a") as f:
            f.write(f"{x}\\n")
        if x == ARGS["fail_at"]:
            raise ValueError(f"bad item {x}")
        return x * 3

    if __name__ == "__main__":
        n = ARGS["n"]
        if ARGS["preload"]:
            import dask  # noqa: F401  (the planner's path from the start)
        items = (x for x in range(n)) if ARGS["generator"] else range(n)
        report = {}
        try:
            report["results_ok"] = ad.map(work, items, progress=ARGS["progress"]) == [x * 3 for x in range(n)]
        except (ValueError, TypeError) as exc:
            report["error"] = [str(exc), getattr(exc, "__notes__", [])]
        report["loaded"] = sorted(m for m in ("dask", "numpy", "amorsize_dask.mapping") if m in sys.modules)
        print(json.dumps(report), flush=True)
""")


def _run(tmp_path, n, *, item_seconds=1e-4, tail_seconds=None, tail_from=100, fail_at=-1, preload=False,
         generator=False, sleep=False, progress=False, env=None, home=None):
    args = dict(n=n, item=item_seconds, tail=item_seconds if tail_seconds is None else tail_seconds,
                tail_from=tail_from, fail_at=fail_at, preload=preload, generator=generator, sleep=sleep,
                progress=progress)
    script = tmp_path / "user.py"
    script.write_text(SCRIPT)
    log = tmp_path / "calls.log"
    log.unlink(missing_ok=True)
    run_env = {k: v for k, v in os.environ.items() if not k.startswith("DASK_")}
    run_env.update({"DASK_AMORSIZE__TRAINING_DIR": str(tmp_path / "training"), **(env or {})})
    if home is not None:
        run_env["HOME"] = str(home)
    done = subprocess.run([sys.executable, str(script), json.dumps(args), str(log)], capture_output=True,
                          text=True, timeout=180, env=run_env, cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads(done.stdout.strip().splitlines()[-1])
    report["calls"] = sorted(int(line) for line in log.read_text().split()) if log.exists() else []
    return report


def test_a_short_job_returns_before_the_planner_loads(tmp_path):
    report = _run(tmp_path, 200)  # ~20 ms
    assert report["results_ok"] and report["calls"] == list(range(200))
    assert report["loaded"] == [], report


def test_a_job_shorter_than_the_hand_over_stays_in_its_head(tmp_path):
    """0.06 s of items: loading the planner (~0.12-0.25 s here) and two cores would take
    longer than running them here (a margin of 4x: a loaded machine slows the pace read)."""
    report = _run(tmp_path, 60, item_seconds=1e-3)
    assert report["results_ok"] and report["calls"] == list(range(60))
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


def test_a_dear_tail_inside_one_batch_stops_the_head_in_time(tmp_path):
    """3,000 items of 1 us, then 60 of 20 ms (1.2 s): the head's batch of cheap items had
    grown past a thousand, and the whole tail ran in it, here (hunt 18: 3.0 s against 1.9 s
    planned). It looks at the clock within a batch, and hands the tail over."""
    report = _run(tmp_path, 3060, item_seconds=1e-6, tail_seconds=0.02, tail_from=3000)
    assert report["results_ok"] and report["calls"] == list(range(3060))
    assert "amorsize_dask.mapping" in report["loaded"], report


def test_a_short_job_that_waits_stays_in_its_head(tmp_path):
    """Sleeps of 10 ms: handed over, the planner (its overheads not measured here yet) kept
    them serial after loading, run after run (hunt 18, 20 of them: 0.45-0.52 s against
    0.24 s). 12 here: 0.12 s, in the head even on a machine 1.5x slower."""
    report = _run(tmp_path, 12, item_seconds=0.01, sleep=True, env={"XDG_CACHE_HOME": str(tmp_path / "cache")})
    assert report["results_ok"] and report["loaded"] == [], report


@pytest.mark.parametrize("progress", [0, ""])
def test_a_bad_progress_is_refused_before_any_item_runs(tmp_path, progress):
    report = _run(tmp_path, 20, progress=progress)
    assert "progress=" in report["error"][0] and report["calls"] == [], report


def test_a_handed_over_run_records_its_items_time_not_the_planners_loading(tmp_path):
    """5 ms items: the record said 27 ms of a 10 ms item before (hunt 18), the planner's
    loading counted as the sample's. That loading is the run's one-time cost."""
    _run(tmp_path, 100, item_seconds=5e-3)
    records = [json.loads(line) for path in (tmp_path / "training").rglob("*.jsonl")
               for line in path.read_text().splitlines() if line.strip()]
    assert len(records) == 1, records
    features = records[0]["features"]
    assert 4.5e-3 < features["item_seconds"] < 10e-3, features  # the loading counted: ~25 ms
    assert features.get("one_time_seconds", 0) > 0, features


CLIENT_SCRIPT = textwrap.dedent("""
    import json, sys, time
    import amorsize_dask as ad

    LOG = sys.argv[1]
    client = None

    def f(x):  # starts a distributed Client on its first call, as a lazy setup may
        global client
        if client is None:
            from distributed import Client
            client = Client(processes=False, n_workers=1, threads_per_worker=2, dashboard_address=":0")
        with open(LOG, "a") as fh:
            fh.write(f"{x}\\n")
        time.sleep(0.003)
        return x * 2

    if __name__ == "__main__":
        ok = ad.map(f, range(200)) == [x * 2 for x in range(200)]
        client.close()
        print(json.dumps({"ok": ok}), flush=True)
""")


def test_a_client_the_function_starts_during_the_head_is_not_the_calls(tmp_path):
    """Planned on that client after the head, its sample began again at item 0 (hunt 18:
    201 calls of 200 items). The call began here, with no client: it stays here."""
    script = tmp_path / "lazy_client.py"
    script.write_text(CLIENT_SCRIPT)
    log = tmp_path / "calls.log"
    env = {k: v for k, v in os.environ.items() if not k.startswith("DASK_")}
    env["DASK_AMORSIZE__TRAINING_DIR"] = str(tmp_path / "training")
    done = subprocess.run([sys.executable, str(script), str(log)], capture_output=True, text=True, timeout=180,
                          env=env, cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    assert json.loads(done.stdout.strip().splitlines()[-1]) == {"ok": True}
    assert sorted(int(line) for line in log.read_text().split()) == list(range(200))


def test_the_heads_least_hand_over_is_the_planners_least_calibrated_rest():
    from amorsize_dask.planning import head, planner

    assert head.MIN_HANDOVER_SECONDS == planner.CALIBRATE_ABOVE_SECONDS


def test_a_short_jobs_first_call_loads_only_the_heads_light_modules(tmp_path):
    """Every module a head-finished call imports is timed in the script's first call: typing
    (for one annotation in errors.py) and ast (dask_sources, for a variable mostly unset)
    were ~4 ms of a 10-item call's 6-7 ms (session 24, python -X importtime)."""
    script = tmp_path / "light.py"
    script.write_text(textwrap.dedent("""
        import sys
        import amorsize_dask as ad

        before = set(sys.modules)
        assert ad.map(abs, range(-5, 5)) == list(map(abs, range(-5, 5)))
        print(" ".join(sorted(m for m in set(sys.modules) - before if m.split(".")[0] != "amorsize_dask")))
    """))
    env = {k: v for k, v in os.environ.items() if not k.startswith("DASK_")}
    env["DASK_AMORSIZE__TRAINING_DIR"] = str(tmp_path / "training")
    done = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=60, env=env,
                          cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    assert set(done.stdout.split()) <= {"contextvars", "_contextvars", "numbers"}, done.stdout

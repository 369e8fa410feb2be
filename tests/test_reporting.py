"""``cluster.reporting``: partition reports gathered into one run, in memory or as files."""

import logging
import os

from amorsize_dask.cluster.reporting import MAX_EXPECTED_RUNS, RunCollector, gather_fragments, report

RUN = "0123456789abcdef"


def part(i, run_id=RUN):
    return {"run_id": run_id, "part": i, "n_items": 10, "compute_seconds": 0.01, "start": 1.0, "stop": 1.1}


def test_a_run_completes_once_when_every_part_reported():
    done = []
    c = RunCollector()
    c.expect(RUN, n_parts=3, on_complete=lambda run, reports: done.append(sorted(r["part"] for r in reports)),
             label="x")
    c.add(part(0))
    c.add(part(0))               # a part computed twice (a retried task) counts once
    c.add(part(2))
    assert done == [] and len(c) == 1
    c.add(part(1))
    assert done == [[0, 1, 2]] and len(c) == 0
    c.add(part(1))               # late duplicates of a finished run are ignored
    c.add(part(0, run_id="f" * 16))   # and so are runs nobody expects
    assert done == [[0, 1, 2]]


def test_runs_never_completed_are_forgotten_oldest_first():
    c = RunCollector()
    done = []
    for i in range(MAX_EXPECTED_RUNS + 5):
        c.expect(f"{i:016x}", n_parts=1, on_complete=lambda run, reports: done.append(reports[0]["run_id"]))
    assert len(c) == MAX_EXPECTED_RUNS
    c.add(part(0, run_id=f"{0:016x}"))     # forgotten: nothing recorded
    c.add(part(0, run_id=f"{MAX_EXPECTED_RUNS + 4:016x}"))
    assert done == [f"{MAX_EXPECTED_RUNS + 4:016x}"]


def test_a_failing_recorder_is_logged_never_raised(caplog):
    c = RunCollector()

    def broken(run, reports):
        raise OSError("disk full")

    c.expect(RUN, n_parts=1, on_complete=broken)
    with caplog.at_level(logging.ERROR, "amorsize_dask"):
        c.add(part(0))
    assert "could not record a run" in caplog.text and "disk full" in caplog.text


def test_reports_from_other_processes_are_files_gathered_once(tmp_path):
    pending = str(tmp_path / "pending")
    not_me = os.getpid() + 1     # as a partition in a worker process of dask's multiprocessing scheduler
    report(part(0), pending, creator_pid=not_me)
    assert gather_fragments(pending, RUN, n_parts=2) is None      # not all there yet
    report(part(1), pending, creator_pid=not_me)
    reports = gather_fragments(pending, RUN, n_parts=2)
    assert sorted(r["part"] for r in reports) == [0, 1] and reports[0]["n_items"] == 10
    assert gather_fragments(pending, RUN, n_parts=2) is None      # claimed by one caller only
    assert os.listdir(pending) == []                              # nothing left behind

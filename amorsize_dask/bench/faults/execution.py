"""Execution faults: a worker SIGKILLed, func raising or returning unpicklable values, a
broken generator input, SIGTERM to the parent, concurrent maps on the shared engine."""

from __future__ import annotations

import json
import os
import pathlib
import signal
import subprocess
import threading
import time

from ... import mapping
from ...engines import shared_engine
from ...learning.store import TrainingStore
from .outcome import (PYTHON, START_DEADLINE, Outcome, alive, call_with_deadline, descendants,
                      kill_pids, run_child, wait_until)
from .workers import PidLog, fail_on_13, lock_on_13, logged, square, worker_pid


MAP = dict(engine="processes", n_workers=2, learn=False)


def fault_worker_killed(work_dir, n_items: int = 200, delay: float = 0.01) -> Outcome:
    """SIGKILL a pool worker from outside while a slow map runs: results complete, in order."""
    work_dir = pathlib.Path(work_dir)
    o = Outcome("worker SIGKILLed mid-map", results_expected=n_items)
    log = work_dir / "worker-killed.log"
    items = list(range(n_items))
    finished = threading.Event()
    kill: dict = {}

    def killer():
        def victim():
            busy = logged(log)
            mine = descendants(os.getpid())
            pids = [pid for pid, _ in busy if pid in mine and pid != os.getpid()]
            return pids[-1] if len(busy) >= 20 and pids else None

        if wait_until(lambda: victim() or finished.is_set(), 30) and not finished.is_set():
            pid = victim()
            kill.update(pid=pid, at_item=len(logged(log)))
            os.kill(pid, signal.SIGKILL)
            kill["before_end"] = not finished.is_set()

    thread = threading.Thread(target=killer, daemon=True)
    thread.start()
    done, results, exc = call_with_deadline(
        lambda: mapping.map(PidLog(log, delay), items, chunksize=2, **MAP), 60)
    finished.set()
    thread.join(10)
    o.injected = bool(kill.get("before_end"))
    o.results_returned = len(results) if isinstance(results, list) else 0
    o.extra = kill
    problems = []
    if not o.injected:
        problems.append("the kill did not land before the map ended")
    if not done:
        problems.append("map hung after the worker was killed")
    elif exc is not None:
        problems.append(f"map raised {type(exc).__name__}: {exc}")
    elif results != [x * 3 for x in items]:
        problems.append("results incomplete or out of order")
    if kill.get("pid") and alive([kill["pid"]]):
        problems.append(f"killed worker {kill['pid']} still running")
    return o.check(problems, f"killed pid {kill.get('pid')} after {kill.get('at_item')} items; "
                             "its chunks ran again on a fresh pool")


def fault_func_raises(work_dir) -> Outcome:
    """func raises on one item: the error names it; the next map reuses the same pool."""
    o = Outcome("exception in func on item 13", injected=True, results_expected=16)
    engine = shared_engine()
    mapping.map(square, range(4), chunksize=1, **MAP)         # the pool is up
    before = set(engine.pool(2)._processes)
    problems = []
    try:
        mapping.map(fail_on_13, range(40), chunksize=4, **MAP)
        problems.append("no exception raised")
    except ValueError as exc:
        notes = "\n".join(getattr(exc, "__notes__", []))
        if "item 13" not in notes or "thirteen is unlucky" not in str(exc):
            problems.append(f"error does not name item 13: {exc!r} {notes[:200]!r}")
    except Exception as exc:  # noqa: BLE001
        problems.append(f"type not kept: {type(exc).__name__}: {exc}")
    pids = mapping.map(worker_pid, range(16), chunksize=1, **MAP)
    o.results_returned = len(pids)
    after = set(engine.pool(2)._processes)
    if not (set(pids) <= before and after == before):
        problems.append(f"the pool was restarted after the error ({sorted(before)} -> {sorted(after)})")
    return o.check(problems, "ValueError with note 'item 13'; next map ran on the same 2 workers")


def fault_unpicklable_result(work_dir) -> Outcome:
    """func returns a value that cannot be pickled: TypeError naming the item; pool intact."""
    o = Outcome("unpicklable result on item 13", injected=True, results_expected=10)
    engine = shared_engine()
    mapping.map(square, range(4), chunksize=1, **MAP)
    before = set(engine.pool(2)._processes)
    problems = []
    done, _, exc = call_with_deadline(lambda: mapping.map(lock_on_13, range(40), chunksize=4, **MAP), 60)
    if not done:
        problems.append("map hung")
    elif not isinstance(exc, TypeError) or "item 13" not in str(exc):
        problems.append(f"expected TypeError naming item 13, got {exc!r}")
    results = mapping.map(square, range(10), chunksize=1, **MAP)
    o.results_returned = len(results) if results == [x * x for x in range(10)] else 0
    if set(engine.pool(2)._processes) != before:
        problems.append("the pool was restarted")
    return o.check(problems, "TypeError names item 13; the pool kept running")


def _raising_source(n: int, calls: list):
    for i in range(n):
        calls.append(i)
        yield i
    raise OSError(f"the source broke after {n} items")


def fault_generator_raises(work_dir) -> Outcome:
    """A generator input raising halfway: the items read before it run (as ``builtins.map``
    calls ``func`` on each as it reads it), then the error propagates; nothing hangs."""
    work_dir = pathlib.Path(work_dir)
    o = Outcome("generator input raises halfway", injected=True)
    problems = []
    engines = ("auto", "serial", "threads", "processes")
    for engine in engines:
        log = work_dir / f"gen-{engine}.log"
        calls: list = []
        kwargs = dict(MAP, engine=engine, n_workers=None if engine == "auto" else 2)
        done, _, exc = call_with_deadline(
            lambda: mapping.map(PidLog(log, 0), _raising_source(10, calls), **kwargs), 60)
        if not done:
            problems.append(f"{engine}: hung")
        elif not isinstance(exc, OSError) or "broke after 10" not in str(exc):
            problems.append(f"{engine}: expected the source's OSError, got {exc!r}")
        elif calls != list(range(10)):
            problems.append(f"{engine}: source consumed {calls}")
        elif len(logged(log)) != 10:
            problems.append(f"{engine}: func ran on {len(logged(log))} of the 10 items read before the error")
    results = mapping.map(square, range(20), chunksize=5, **MAP)
    o.results_expected, o.results_returned = 20, len(results)
    if results != [x * x for x in range(20)]:
        problems.append("the next map failed")
    return o.check(problems, f"OSError propagated on {len(engines)} engines after the 10 items before it ran")


def _sigterm_child(pid_log):
    """(subprocess) A slow map, to be SIGTERMed from outside."""
    mapping.map(PidLog(pid_log, 0.2), range(60), engine="processes", n_workers=2, chunksize=1,
                learn=False)
    return {}


def fault_parent_sigterm(work_dir, grace: float = 4.0) -> Outcome:
    """SIGTERM the parent of a running map: it exits and leaves no worker processes."""
    work_dir = pathlib.Path(work_dir)
    o = Outcome("SIGTERM to the parent of a map")
    log = work_dir / "sigterm.log"
    code = ("import sys; from amorsize_dask.bench.faults.execution import _sigterm_child; "
            "_sigterm_child(sys.argv[1])")
    proc = subprocess.Popen([PYTHON, "-c", code, str(log)], stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, cwd=work_dir)
    family: set[int] = set()
    problems = []
    try:
        started = wait_until(lambda: len({pid for pid, _ in logged(log)}) >= 2, START_DEADLINE)
        workers = {pid for pid, _ in logged(log)}
        family = descendants(proc.pid) | workers
        if not started:
            proc.kill()
            return o.check([f"workers never started: {proc.communicate()[1][-500:]}"])
        proc.send_signal(signal.SIGTERM)
        o.injected = True
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            problems.append("the parent did not exit within 10 s of SIGTERM")
        wait_until(lambda: not alive(family), grace)
        left = alive(family)
        if alive(workers):
            problems.append(f"{len(alive(workers))} worker processes left running after the "
                            f"parent died (and {len(left) - len(alive(workers))} helpers)")
        elif left:
            problems.append(f"{len(left)} helper processes left running")
        o.extra = {"workers": sorted(workers), "left": left}
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        kill_pids(family)                       # leave nothing behind, whatever happened
    return o.check(problems, f"parent exited ({proc.returncode}); its {len(family)} "
                             "child processes followed")


def _concurrent(n_threads: int, mixed: bool, training_dir, timeout: float) -> dict:
    errors, ok = [], []

    def one(i):
        items = list(range(i * 100, i * 100 + 300))
        workers = 1 + i % 2 if mixed else 2
        try:
            got = mapping.map(square, items, engine="processes", n_workers=workers,
                              chunksize=1 + i, training_dir=training_dir)
            (ok if got == [x * x for x in items] else errors).append(i)
        except Exception as exc:  # noqa: BLE001 - counted
            errors.append(f"{type(exc).__name__}: {exc}")

    threads = [threading.Thread(target=one, args=(i,), daemon=True) for i in range(n_threads)]
    for t in threads:
        t.start()
    deadline = time.monotonic() + timeout
    for t in threads:
        t.join(max(0.0, deadline - time.monotonic()))
    return {"ok": len(ok), "errors": [str(e) for e in errors],
            "hung": sum(t.is_alive() for t in threads)}


def _concurrent_child(n_threads, mixed, training_dir, timeout):
    """(subprocess) Concurrent maps; a hung engine's workers are killed before it reports,
    else it exits as a script does (killing them all left their 18 semaphores in /dev/shm,
    every test run: the resource tracker died with them)."""
    out = _concurrent(int(n_threads), mixed == "True", training_dir, float(timeout))
    if out["hung"]:
        print(json.dumps(out), flush=True)
        kill_pids(descendants(os.getpid()))
        os._exit(0)
    return out


def fault_concurrent_maps(work_dir, n_threads: int = 16, mixed: bool = False,
                          timeout: float = 20.0) -> Outcome:
    """``n_threads`` maps at once on the shared process engine; ``mixed``: half ask for 1
    worker, half for 2 (run in a subprocess, since a broken engine may hang its threads)."""
    work_dir = pathlib.Path(work_dir)
    train = work_dir / "train"
    kind = "1 and 2 workers" if mixed else "2 workers each"
    o = Outcome(f"{n_threads} concurrent maps, {kind}", injected=True,
                results_expected=n_threads * 300)
    if mixed:
        out = run_child("_concurrent_child", n_threads, mixed, train, timeout,
                        timeout=timeout + START_DEADLINE)
    else:
        out = _concurrent(n_threads, mixed, train, timeout)
    if "error" in out:
        return o.check([out["error"]])
    o.results_returned = 300 * out["ok"]
    o.records_written = out["ok"]                     # one per map that returned
    o.records_read = len(TrainingStore(train).records())
    problems = []
    if out["ok"] != n_threads:
        errors = sorted(set(out["errors"]))
        problems.append(f"{n_threads - out['ok']} of {n_threads} maps failed ({len(out['errors'])} "
                        f"raised{': ' + errors[0][:90] if errors else ''}; {out['hung']} hung)")
    if o.records_read != o.records_written:
        problems.append(f"{o.records_read} records for {o.records_written} maps")
    return o.check(problems, "all results correct, one record per map")

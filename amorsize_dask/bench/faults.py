"""Fault injection: kill workers, writers and parents; fill, lock, remove and poison the
training directory; feed bad inputs. ``map`` must still return the right results.

Each ``fault_*`` function injects one fault into real processes and real directories
under ``work_dir`` and returns an :class:`Outcome` (what was injected, what survived,
counts of results and records). ``tests/test_faults.py`` asserts on the same functions,
so the benchmark and the tests share one implementation; :func:`run` prints the table.

Run: ``amorsize-dask bench --faults`` or
``python -c "from amorsize_dask.bench.faults import run; run(quick=True)"``.
Some faults need root (mounting a tmpfs, dropping to an unprivileged user); without it
they are reported as skipped.

>>> o = Outcome("example", injected=True, results_expected=3, results_returned=3)
>>> o.results_lost, o.records_lost
(0, None)
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import multiprocessing
import os
import pathlib
import pickle
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import tracemalloc
import warnings
from typing import Any, Callable

import dask

from .. import mapping
from ..engines import shared_engine
from ..records import encode_line, make_record
from ..store import TrainingStore
from .timing import format_table

PYTHON = sys.executable
FP = "a1b2c3d4e5f6a7b8"
WL = "0123456789abcdef"
TEN_YEARS = 10 * 365.25 * 24 * 3600
# Seconds a subprocess may take to start (fresh interpreter importing dask) on 2 loaded cores.
START_DEADLINE = 60.0


class FaultSkipped(Exception):
    """This machine cannot inject the fault (not root, mount not permitted...)."""


@dataclasses.dataclass
class Outcome:
    """What one injected fault did; None: does not apply to this fault."""

    fault: str
    injected: bool = False
    survived: bool = False
    bad_tried: int | None = None
    bad_clean: int | None = None
    records_written: int | None = None
    records_read: int | None = None
    records_corrupt: int | None = None   # lines/files the reader skipped and counted
    results_expected: int | None = None
    results_returned: int | None = None
    seconds: float = 0.0
    detail: str = ""
    extra: dict = dataclasses.field(default_factory=dict)

    @property
    def results_lost(self) -> int | None:
        if self.results_expected is None or self.results_returned is None:
            return None
        return max(0, self.results_expected - self.results_returned)

    @property
    def records_lost(self) -> int | None:
        if self.records_written is None or self.records_read is None:
            return None
        return max(0, self.records_written - self.records_read)

    def check(self, problems: list[str], summary: str = "") -> "Outcome":
        """Survived if no problem was found; the detail says what went wrong (or ``summary``)."""
        self.survived = not problems
        self.detail = "; ".join(problems) if problems else summary
        return self


# -- small shared pieces --------------------------------------------------------------
def wait_until(predicate: Callable[[], Any], timeout: float, interval: float = 0.02) -> bool:
    """Poll ``predicate`` until it is true or ``timeout`` seconds passed; its last truth."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() >= deadline:
            return False
        time.sleep(interval)
    return True


def call_with_deadline(fn: Callable[[], Any], timeout: float) -> tuple[bool, Any, BaseException | None]:
    """``fn()`` in a daemon thread: (finished, value, exception). A hang is a result, not a hang."""
    box: dict = {}

    def target():
        try:
            box["value"] = fn()
        except BaseException as exc:  # noqa: BLE001 - reported to the caller
            box["exc"] = exc

    thread = threading.Thread(target=target, daemon=True, name="amorsize-fault")
    thread.start()
    thread.join(timeout)
    return not thread.is_alive(), box.get("value"), box.get("exc")


def alive(pids) -> list[int]:
    """The pids of ``pids`` still running (zombies count as gone)."""
    import psutil

    out = []
    for pid in pids:
        try:
            if psutil.Process(pid).status() != psutil.STATUS_ZOMBIE:
                out.append(pid)
        except psutil.NoSuchProcess:
            pass
    return out


def descendants(pid: int) -> set[int]:
    import psutil

    try:
        return {p.pid for p in psutil.Process(pid).children(recursive=True)}
    except psutil.NoSuchProcess:
        return set()


def kill_pids(pids) -> list[int]:
    """SIGKILL those of ``pids`` (processes this module started) still running; which."""
    left = alive(pids)
    for pid in left:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    return left


def fake_record(i: int, *, fingerprint: str = FP, workload: str = WL, function: str = "faults.work",
                t: float | None = None, fields: dict | None = None) -> dict:
    """A valid record whose ``features.n_items`` is ``i`` (to check what came back)."""
    return make_record(
        fingerprint=fingerprint, fingerprint_fields=fields or {"kind": "local", "cores": 2},
        workload=workload, function=function, features={"n_items": i, "item_seconds": 0.001},
        engine="processes", n_workers=2, chunksize=50, source="sample", wall_seconds=1.0,
        compute_seconds=1.5, time=1_700_000_000.0 + i if t is None else t)


def record_line(record: dict) -> bytes:
    """``record`` as a segment line, with a fresh id (as the store writes it)."""
    return encode_line(dict(record, id=secrets.token_hex(8)))


def plant(path: pathlib.Path, name: str, data: bytes) -> pathlib.Path:
    """A file ``segments/<name>`` written directly (as another writer or an attacker would)."""
    seg = pathlib.Path(path) / "segments"
    seg.mkdir(parents=True, exist_ok=True)
    (seg / name).write_bytes(data)
    return seg / name


def skipped_count(store: TrainingStore) -> int:
    return sum(store.stats().skipped.values())


def files_under(path: pathlib.Path) -> set[str]:
    return {str(p.relative_to(path)) for p in pathlib.Path(path).rglob("*")}


@contextlib.contextmanager
def captured_warnings():
    """Every warning raised inside, as a list (the ``amorsize_dask`` log lines are muted)."""
    log = logging.getLogger("amorsize_dask")
    handler = logging.NullHandler()
    log.addHandler(handler)
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            yield caught
    finally:
        log.removeHandler(handler)


def ours(caught) -> list[str]:
    """Messages of the amorsize_dask warnings among ``caught``."""
    return [str(w.message) for w in caught if "amorsize" in str(w.message).lower()]


@contextlib.contextmanager
def tmpfs(path: pathlib.Path, size: str):
    """A real tmpfs of ``size`` at ``path`` (root only), unmounted on exit."""
    path.mkdir(parents=True, exist_ok=True)
    if os.geteuid() != 0 or not shutil.which("mount"):
        raise FaultSkipped("mounting a tmpfs needs root")
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)],
                          capture_output=True, text=True)
    if done.returncode:
        raise FaultSkipped(f"mount -t tmpfs not permitted here: {done.stderr.strip()}")
    try:
        yield path
    finally:
        if subprocess.run(["umount", str(path)], capture_output=True).returncode:
            subprocess.run(["umount", "-l", str(path)], capture_output=True)  # busy: detach


def run_child(func_name: str, *args, env: dict | None = None, timeout: float = 120.0,
              cwd=None) -> dict:
    """Run ``faults.<func_name>(*args)`` in a fresh interpreter; the JSON it prints last."""
    code = (f"import sys, json; from amorsize_dask.bench.faults import {func_name}; "
            f"print(json.dumps({func_name}(*sys.argv[1:])), flush=True)")
    done = subprocess.run([PYTHON, "-c", code, *map(str, args)], capture_output=True,
                          text=True, timeout=timeout, env=env, cwd=cwd)
    lines = done.stdout.strip().splitlines()
    try:
        return json.loads(lines[-1])
    except (IndexError, ValueError):
        last = (done.stderr.strip().splitlines() or ["no output"])[-1]
        return {"error": f"subprocess exited {done.returncode}: {last[:300]}"}


# -- functions that run in workers (module level: they travel by reference) ---------------
def square(x):
    return x * x


def spin(x, units: int = 300):
    acc = 0
    for i in range(units):
        acc += i
    return acc + x


def worker_pid(_x):
    return os.getpid()


def fail_on_13(x):
    if x == 13:
        raise ValueError(f"thirteen is unlucky: {x}")
    return x


def lock_on_13(x):
    return threading.Lock() if x == 13 else x


class PidLog:
    """Appends ``"<pid> <item>"`` per call to a file, then sleeps: progress visible outside."""

    def __init__(self, path, delay: float):
        self.path, self.delay = str(path), delay

    def __call__(self, x):
        with open(self.path, "a") as f:
            f.write(f"{os.getpid()} {x}\n")
        time.sleep(self.delay)
        return x * 3


def logged(path) -> list[tuple[int, int]]:
    try:
        text = pathlib.Path(path).read_text()
    except FileNotFoundError:
        return []
    return [tuple(map(int, ln.split())) for ln in text.splitlines() if len(ln.split()) == 2]


class _Evil:
    """Unpickling this creates ``marker``: proof that something was unpickled."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


# == execution faults ===================================================================
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
    """A generator input raising halfway: the error propagates, nothing runs, nothing hangs."""
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
        elif logged(log):
            problems.append(f"{engine}: func ran on {len(logged(log))} items of a broken input")
    results = mapping.map(square, range(20), chunksize=5, **MAP)
    o.results_expected, o.results_returned = 20, len(results)
    if results != [x * x for x in range(20)]:
        problems.append("the next map failed")
    return o.check(problems, f"OSError propagated on {len(engines)} engines before any item ran")


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
    code = ("import sys; from amorsize_dask.bench.faults import _sigterm_child; "
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
    """(subprocess) Concurrent maps; kills its own workers before reporting (it may hang)."""
    out = _concurrent(int(n_threads), mixed == "True", training_dir, float(timeout))
    print(json.dumps(out), flush=True)
    kill_pids(descendants(os.getpid()))
    os._exit(0)


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


# -- bad inputs ----------------------------------------------------------------------------
def _unpicklable_func():
    lock = threading.Lock()
    return lambda x: x if lock else x


def _bad_config(work_dir):
    with dask.config.set({"amorsize.store.max-line-bytes": "lots"}):
        return mapping.map(square, range(3), training_dir=pathlib.Path(work_dir) / "cfg")


#: (label, call, words the error must contain): each must raise a TypeError or ValueError
#: that names the bad value, promptly, from amorsize_dask's own checks.
BAD_INPUTS: list[tuple[str, Callable, tuple[str, ...]]] = [
    ("func=None", lambda d: mapping.map(None, [1]), ("None",)),
    ("items=5", lambda d: mapping.map(abs, 5), ("5",)),
    ("engine='gpu'", lambda d: mapping.map(abs, [1], engine="gpu"), ("'gpu'",)),
    ("n_workers=0", lambda d: mapping.map(abs, [1], n_workers=0), ("n_workers=0",)),
    ("n_workers=2.5", lambda d: mapping.map(abs, [1], n_workers=2.5), ("n_workers=2.5",)),
    ("chunksize='10'", lambda d: mapping.map(abs, [1], chunksize="10"), ("chunksize='10'",)),
    ("chunksize=True", lambda d: mapping.map(abs, [1], chunksize=True), ("chunksize=True",)),
    ("progress=3", lambda d: mapping.map(abs, [1], progress=3), ("progress=3",)),
    ("engine='dask', no client", lambda d: mapping.map(abs, [1], engine="dask"), ("engine='dask'",)),
    ("plan(items=None)", lambda d: mapping.plan(abs, None), ("None",)),
    ("prune(-1)", lambda d: TrainingStore(d).prune(-1), ("-1",)),
    ("append({'schema': 1})", lambda d: TrainingStore(d).append({"schema": 1}), ("'time'",)),
    ("unpicklable result", lambda d: mapping.map(lock_on_13, range(20), chunksize=4, **MAP),
     ("item 13",)),
    ("training_dir=123", lambda d: mapping.map(abs, [1], training_dir=123), ("training_dir", "123")),
    ("client='tcp://nowhere:1'", lambda d: mapping.map(abs, [1], client="tcp://nowhere:1"),
     ("client", "tcp://nowhere:1")),
    ("unpicklable func (processes)", lambda d: mapping.map(_unpicklable_func(), range(4), chunksize=1,
                                                           **MAP), ("<lambda>",)),
    ("unpicklable item 1 (processes)", lambda d: mapping.map(
        square, [0, threading.Lock(), 2], chunksize=1, **MAP), ("item 1",)),
    ("max-line-bytes='lots'", _bad_config, ("max-line-bytes", "'lots'")),
]


def check_bad_input(label: str, call: Callable, words, work_dir, timeout: float = 60.0) -> str:
    """'' if ``call`` fails cleanly; else what was wrong."""
    import amorsize_dask

    done, _, exc = call_with_deadline(lambda: call(work_dir), timeout)
    if not done:
        return f"{label}: hung"
    if exc is None:
        return f"{label}: accepted"
    text = f"{type(exc).__name__}: {exc}"
    if not isinstance(exc, (TypeError, ValueError)):
        return f"{label}: {text[:160]}"
    missing = [w for w in words if w not in str(exc) + "\n".join(getattr(exc, "__notes__", []))]
    if missing:
        return f"{label}: the message does not name {missing}: {text[:160]}"
    tb = exc.__traceback__
    while tb.tb_next is not None:
        tb = tb.tb_next
    where = tb.tb_frame.f_code.co_filename
    if not where.startswith(os.path.dirname(amorsize_dask.__file__)):
        return f"{label}: raised inside {where} ({text[:120]})"
    return ""


def fault_bad_inputs(work_dir) -> Outcome:
    """Every bad input of :data:`BAD_INPUTS`: a clear TypeError/ValueError naming it."""
    o = Outcome("bad inputs", injected=True, bad_tried=len(BAD_INPUTS))
    with captured_warnings():
        problems = [p for label, call, words in BAD_INPUTS
                    if (p := check_bad_input(label, call, words, pathlib.Path(work_dir)))]
    o.bad_clean = len(BAD_INPUTS) - len(problems)
    o.extra = {"problems": problems}
    o.check(problems, "each named in a TypeError/ValueError")
    if problems:
        o.detail = f"{len(problems)} not handled cleanly:"
    return o


# == store faults ========================================================================
def _append_many(path, worker: int, n: int) -> None:
    """(child process) Append ``n`` records; exit 3 at the first one refused."""
    store = TrainingStore(path)
    for i in range(n):
        if not store.append(fake_record(i, function=f"w{worker}")):
            os._exit(3)


def mp_context():
    methods = multiprocessing.get_all_start_methods()
    return multiprocessing.get_context("forkserver" if "forkserver" in methods else "spawn")


def fault_concurrent_writers(work_dir, n_procs: int = 16, n_records: int = 1000) -> Outcome:
    """``n_procs`` writer processes append ``n_records`` each: all read back, none corrupt."""
    path = pathlib.Path(work_dir) / "train"
    o = Outcome(f"{n_procs} writer processes x {n_records:,}", injected=True,
                records_written=0)
    ctx = mp_context()
    procs = [ctx.Process(target=_append_many, args=(str(path), w, n_records)) for w in range(n_procs)]
    for p in procs:
        p.start()
    deadline = time.monotonic() + 120
    for p in procs:
        p.join(max(0.0, deadline - time.monotonic()))
    problems = []
    for p in procs:
        if p.exitcode is None:
            p.kill()
            p.join()
            problems.append(f"writer {p.pid} hung")
        elif p.exitcode == 0:
            o.records_written += n_records
        else:
            problems.append(f"writer {p.pid} exited {p.exitcode}")
    store = TrainingStore(path)
    got = store.records()
    stats = store.stats()
    o.records_read, o.records_corrupt = len(got), sum(stats.skipped.values())
    expected = {(f"w{w}", i) for w in range(n_procs) for i in range(n_records)}
    if {(r["function"], r["features"]["n_items"]) for r in got} != expected or len(got) != len(expected):
        problems.append(f"{len(got)} records read back, {len(expected)} expected")
    if len({r["id"] for r in got}) != len(got):
        problems.append("duplicate ids")
    if o.records_corrupt:
        problems.append(f"skipped: {stats.skipped}")
    return o.check(problems, f"{stats.n_segments} segments, {stats.n_bytes / 1e6:.1f} MB")


def _append_forever(path) -> None:
    store = TrainingStore(path)
    i = 0
    while store.append(fake_record(i)):
        i += 1


def fault_writer_killed(work_dir, min_lines: int = 2000) -> Outcome:
    """SIGKILL a writer appending in a loop: complete lines readable, at most one torn."""
    path = pathlib.Path(work_dir) / "train"
    o = Outcome("writer SIGKILLed mid-append")
    proc = mp_context().Process(target=_append_forever, args=(str(path),))
    proc.start()

    def lines():
        return sum(f.read_bytes().count(b"\n") for f in (path / "segments").glob("*.jsonl")) \
            if (path / "segments").is_dir() else 0

    problems = []
    if not wait_until(lambda: lines() >= min_lines, START_DEADLINE, 0.01):
        problems.append("the writer never got going")
    os.kill(proc.pid, signal.SIGKILL)
    proc.join(30)
    o.injected = proc.exitcode == -signal.SIGKILL
    complete = lines()
    store = TrainingStore(path)
    got = store.records()
    stats = store.stats()
    o.records_written, o.records_read = complete, len(got)
    o.records_corrupt = sum(stats.skipped.values())
    if [r["features"]["n_items"] for r in got] != list(range(complete)):
        problems.append(f"{len(got)} records read of {complete} complete lines, or not in order")
    if stats.skipped["torn"] > 1 or o.records_corrupt != stats.skipped["torn"]:
        problems.append(f"skipped: { {k: v for k, v in stats.skipped.items() if v} }")
    return o.check(problems, f"{complete:,} complete lines, {stats.skipped['torn']} torn")


def _read_only_child(train, warm):
    """(subprocess, root) Warm up, drop to nobody, then map into the root-owned ``train``."""
    mapping.map(spin, range(40), training_dir=warm)          # imports done as root
    os.setgroups([])
    os.setgid(65534)
    os.setuid(65534)
    from ..learning import get_learner

    with captured_warnings() as caught:
        ok = all(mapping.map(spin, range(40), training_dir=train) == [spin(x) for x in range(40)]
                 for _ in range(3))
    return {"uid": os.getuid(), "ok": ok, "warnings": ours(caught),
            "seen": len(get_learner(train).store.records())}


def fault_read_only_user(work_dir) -> Outcome:
    """An unprivileged user maps into a root-owned 0o755 directory: results, ONE warning."""
    if os.geteuid() != 0:
        raise FaultSkipped("needs root to create a directory another user cannot write")
    # Not under work_dir: its parents (pytest's tmp dirs) are 0o700, closed to other users.
    top = pathlib.Path(tempfile.mkdtemp(prefix="amorsize-ro-"))
    try:
        top.chmod(0o755)
        train = top / "train"
        store = TrainingStore(train)
        for i in range(3):
            store.append(fake_record(i))
        before = files_under(train)
        o = Outcome("read-only dir (uid 65534)", injected=True, results_expected=120,
                    records_written=3)
        env = dict(os.environ, XDG_CACHE_HOME=str(top / "cache"))
        out = run_child("_read_only_child", train, top / "warm", env=env, cwd=top)
        if "error" in out:
            return o.check([out["error"]])
        o.results_returned = 120 if out["ok"] else 0
        o.records_read = out["seen"]
        problems = []
        if out["uid"] != 65534:
            problems.append("did not drop privileges")
        if not out["ok"]:
            problems.append("map returned wrong results")
        if len(out["warnings"]) != 1:
            problems.append(f"{len(out['warnings'])} warnings, one expected: {out['warnings']}")
        if o.records_lost:
            problems.append(f"{o.records_read} of 3 existing records read")
        if files_under(train) != before:
            problems.append("files appeared in the read-only directory")
        return o.check(problems, "3 maps as nobody; existing records read; one warning")
    finally:
        shutil.rmtree(top, ignore_errors=True)


def fault_read_only_fs(work_dir) -> Outcome:
    """A training directory on a filesystem remounted read-only (EROFS, root too)."""
    mnt = pathlib.Path(work_dir) / "ro"
    o = Outcome("read-only filesystem (EROFS)", results_expected=120, records_written=3)
    with tmpfs(mnt, "1m"):
        train = mnt / "train"
        plant(train, "otherhost-1-00000000.jsonl", b"".join(record_line(fake_record(i))
                                                             for i in range(3)))
        done = subprocess.run(["mount", "-o", "remount,ro", str(mnt)], capture_output=True, text=True)
        if done.returncode:
            raise FaultSkipped(f"remount read-only not permitted: {done.stderr.strip()}")
        o.injected = True
        with captured_warnings() as caught:
            results = [mapping.map(spin, range(40), training_dir=train) for _ in range(3)]
        o.results_returned = sum(len(r) for r in results if r == [spin(x) for x in range(40)])
        o.records_read = len(TrainingStore(train).records())
    problems = []
    if o.results_lost:
        problems.append("wrong results")
    if len(ours(caught)) != 1:
        problems.append(f"{len(ours(caught))} warnings, one expected")
    if o.records_lost:
        problems.append(f"{o.records_read} of 3 existing records read")
    return o.check(problems, "results returned, existing records read, one warning")


class _DevFullStore(TrainingStore):
    """Every write fails with a real ENOSPC from the kernel (/dev/full)."""

    def _open_segment(self):
        return os.open("/dev/full", os.O_WRONLY | os.O_APPEND)


def fault_full_disk(work_dir, n_maps: int = 30) -> Outcome:
    """The disk fills up under a stream of maps: results, one warning, nothing lost before;
    learning resumes when space returns. A 64 KiB tmpfs, else /dev/full."""
    from ..learning import get_learner

    work_dir = pathlib.Path(work_dir)
    o = Outcome("disk full (ENOSPC)", results_expected=n_maps)

    def maps(train, first=0, n=n_maps):
        ok = 0
        for i in range(first, first + n):
            items = range(10 + i)
            ok += mapping.map(square, items, engine="serial", training_dir=train) == [x * x for x in items]
        return ok

    problems = []
    try:
        with tmpfs(work_dir / "small", "64k") as mnt:
            train = mnt / "train"
            free = os.statvfs(mnt).f_bavail * os.statvfs(mnt).f_frsize
            with open(mnt / "filler", "wb") as f:
                f.write(b"\0" * max(0, free - 8192))            # ~10 records of room left
            with captured_warnings() as caught:
                o.results_returned = maps(train)
            o.injected = os.statvfs(mnt).f_bavail * os.statvfs(mnt).f_frsize < 1024
            store = TrainingStore(train)
            got = sorted(r["features"]["n_items"] for r in store.records())
            # Maps up to the newest record found were recorded: a gap is a lost record.
            o.records_read, o.records_written = len(got), (got[-1] - 9 if got else 0)
            o.records_corrupt = skipped_count(store)
            if not got or got != list(range(10, 10 + len(got))):
                problems.append(f"records before the disk filled were lost: {got}")
            (mnt / "filler").unlink()                            # space comes back
            with captured_warnings() as later:
                maps(train, first=100, n=1)
            if [r["features"]["n_items"] for r in TrainingStore(train).records()][-1:] != [110]:
                problems.append("learning did not resume when space came back")
            if ours(later):
                problems.append("warned again after space came back")
            how = f"64 KiB tmpfs filled after {len(got)} records"
    except FaultSkipped as why:
        if not os.path.exists("/dev/full"):
            raise FaultSkipped(f"{why}; and no /dev/full") from None
        train = work_dir / "train"
        o.records_written = 3
        before = TrainingStore(train)
        for i in range(3):
            before.append(fake_record(i))
        get_learner(train).store = _DevFullStore(train)
        with captured_warnings() as caught:
            o.results_returned = maps(train)
        o.injected = True
        o.records_read = len(TrainingStore(train).records())
        if o.records_lost:
            problems.append("records written before the disk filled were lost")
        how = "/dev/full (tmpfs not mountable)"
    if o.results_lost:
        problems.append(f"{o.results_lost} maps returned wrong results")
    if len(ours(caught)) != 1:
        problems.append(f"{len(ours(caught))} warnings, one expected")
    return o.check(problems, how + "; one warning")


def fault_dir_deleted(work_dir, n_maps: int = 20) -> Outcome:
    """The training directory removed between maps and, from a thread, during them."""
    train = pathlib.Path(work_dir) / "train"
    o = Outcome("training dir rmtree'd between/during maps", injected=True,
                results_expected=2 * n_maps + 1)
    problems = []
    ok = 0
    with captured_warnings() as caught:
        for i in range(n_maps):                       # between maps
            try:
                ok += mapping.map(spin, range(50 + i), training_dir=train) == [spin(x) for x in range(50 + i)]
            except Exception as exc:  # noqa: BLE001
                problems.append(f"between: {type(exc).__name__}: {exc}")
            shutil.rmtree(train, ignore_errors=True)
        stop = threading.Event()
        removals = [0]

        def remover():
            while not stop.wait(0.002):
                if train.exists():
                    shutil.rmtree(train, ignore_errors=True)
                    removals[0] += 1

        thread = threading.Thread(target=remover, daemon=True)
        thread.start()
        try:
            for i in range(n_maps):                   # during maps
                engine = "processes" if i % 4 == 0 else "auto"
                try:
                    got = mapping.map(spin, range(200 + i), engine=engine, training_dir=train)
                    ok += got == [spin(x) for x in range(200 + i)]
                except Exception as exc:  # noqa: BLE001
                    problems.append(f"during: {type(exc).__name__}: {exc}")
        finally:
            stop.set()
            thread.join(10)
        ok += mapping.map(spin, range(7), training_dir=train) == [spin(x) for x in range(7)]
    o.results_returned = ok
    o.records_read = len(TrainingStore(train).records())
    if o.results_lost:
        problems.append(f"{o.results_lost} maps returned wrong results")
    if not o.records_read:
        problems.append("the last map's record was not written to the recreated directory")
    return o.check(problems[:3], f"{removals[0]} removals during maps; {len(ours(caught))} warning(s)")


def fault_clock_skew(work_dir, keep: int = 4) -> Outcome:
    """Records 10 years in the future are read and kept; pruning keeps the newest N."""
    from ..target import Target

    train = pathlib.Path(work_dir) / "train"
    o = Outcome("clock skew: records +10 years", injected=True)
    for _ in range(2):
        mapping.map(spin, range(400), training_dir=train)
    real = TrainingStore(train).records()
    future = time.time() + TEN_YEARS
    target = Target.local(spin, train)
    planted = [dict(r, time=future + i) for i, r in enumerate(real * 5)]
    other = [fake_record(i, t=future + i if i % 2 else 1_700_000_000.0 + i) for i in range(12)]
    plant(train, "otherhost-1-00000000.jsonl", b"".join(map(record_line, planted + other)))
    o.records_written = len(real) + len(planted) + len(other)
    store = TrainingStore(train)
    o.records_read = len(store.records())
    problems = []
    if o.records_lost:
        problems.append(f"{o.records_lost} records dropped on read")
    try:
        mapping.plan(spin, range(400), training_dir=train).explain()
        mapping.map(spin, range(400), training_dir=train)
    except Exception as exc:  # noqa: BLE001
        problems.append(f"planning failed: {type(exc).__name__}: {exc}")
    store.settle_seconds = 0
    store.prune(keep_per_workload=keep)
    groups: dict = {}
    for r in store.records():
        groups.setdefault((r["fingerprint"], r["workload"]), []).append(r["time"])
    mine = sorted(groups.get((target.fingerprint.id, target.workload), []))
    theirs = sorted(groups.get((FP, WL), []))
    if mine != [future + i for i in range(len(planted) - keep, len(planted))]:
        problems.append(f"kept {len(mine)} of this workload, not the {keep} newest")
    if theirs != sorted(r["time"] for r in other)[-keep:]:
        problems.append("the other workload did not keep its newest")
    return o.check(problems, f"{o.records_read} read; pruned to the {keep} newest per workload")


def peak_bytes(fn: Callable[[], Any]) -> tuple[Any, int]:
    """``fn()`` and the peak of Python allocations while it ran (tracemalloc)."""
    was = tracemalloc.is_tracing()
    if not was:
        tracemalloc.start()
    tracemalloc.reset_peak()
    try:
        value = fn()
        return value, tracemalloc.get_traced_memory()[1]
    finally:
        if not was:
            tracemalloc.stop()


def fault_huge_segment(work_dir, size: int = 16 << 20, limit: int = 1 << 20) -> Outcome:
    """A segment larger than ``amorsize.store.max-segment-bytes``: skipped, counted, not read."""
    train = pathlib.Path(work_dir) / "train"
    o = Outcome(f"{size >> 20} MiB segment > max-segment-bytes", injected=True,
                records_written=3, results_expected=300)
    line = record_line(fake_record(99))
    plant(train, "bighost-1-00000000.jsonl", line * (size // len(line) + 1))
    plant(train, "small-1-00000000.jsonl", b"".join(record_line(fake_record(i)) for i in range(3)))
    problems = []
    with dask.config.set({"amorsize.store.max-segment-bytes": limit}):
        store = TrainingStore(train)
        got, peak = peak_bytes(store.records)
        o.records_read, o.records_corrupt = len(got), skipped_count(store)
        results = mapping.map(spin, range(300), training_dir=train)
        o.results_returned = len(results) if results == [spin(x) for x in range(300)] else 0
        if store.stats().skipped["oversized-file"] != 1:
            problems.append(f"skipped {store.stats().skipped}")
    if o.records_lost or o.records_read != 3:
        problems.append(f"{o.records_read} records read, 3 expected")
    if peak > size // 8:
        problems.append(f"peak memory {peak / 1e6:.1f} MB reading a {size / 1e6:.0f} MB file")
    return o.check(problems, f"skipped and counted; peak {peak / 1e3:.0f} kB")


def million_records(work_dir, n: int = 1_000_000, workloads: int = 100, keep: int = 200) -> Outcome:
    """Load ``n`` records (seconds, peak memory), then prune them to ``keep`` per workload."""
    import psutil

    train = pathlib.Path(work_dir) / "train"
    o = Outcome(f"{n:,} records: load and prune", injected=True, records_written=n)
    text = json.dumps(dict(fake_record(0, t=1.5e9), id="ID"), separators=(",", ":"))
    template = (text.replace("%", "%%").replace('"time":1500000000.0', '"time":%d')
                .replace(f'"workload":"{WL}"', '"workload":"%016x"')
                .replace('"n_items":0', '"n_items":%d').replace('"id":"ID"', '"id":"%016x"')) + "\n"
    per_file = -(-n // 8)
    for k in range(8):
        rows = "".join(template % (1_500_000_000 + i, i % workloads, i, i)
                       for i in range(k * per_file, min(n, (k + 1) * per_file)))
        plant(train, f"host{k}-1-{k:08x}.jsonl", rows.encode())
    proc, peak, stop = psutil.Process(), [0], threading.Event()
    base = proc.memory_info().rss

    def sampler():
        while not stop.wait(0.02):
            peak[0] = max(peak[0], proc.memory_info().rss - base)

    thread = threading.Thread(target=sampler, daemon=True)
    thread.start()
    with dask.config.set({"amorsize.store.max-segment-bytes": "2 GiB"}):
        store = TrainingStore(train)
        t0 = time.perf_counter()
        o.records_read = len(store.records())
        load = time.perf_counter() - t0
        stop.set()
        thread.join()
        store.settle_seconds = 0
        t0 = time.perf_counter()
        removed = store.prune(keep_per_workload=keep)
        prune = time.perf_counter() - t0
        after = len(store.records())
    o.records_corrupt = skipped_count(store)
    o.extra = dict(load_seconds=load, peak_rss_mb=peak[0] / 1e6, prune_seconds=prune,
                   removed=removed, after=after)
    problems = []
    if o.records_lost or o.records_corrupt:
        problems.append(f"{o.records_read:,} read, {o.records_corrupt} skipped")
    if after != min(n, workloads * keep):
        problems.append(f"{after:,} records after pruning, {workloads * keep:,} expected")
    return o.check(problems, f"load {load:.1f} s, peak RSS +{peak[0] / 1e6:.0f} MB; "
                             f"prune {prune:.1f} s -> {after:,}")


# == hostile store content ===============================================================
def _planted_child():
    """(subprocess) Import, map on two engines, read and prune the default training dir."""
    import amorsize_dask as ad

    ok = ad.map(spin, range(2000)) == [spin(x) for x in range(2000)]
    ok &= ad.map(spin, range(100), engine="processes", n_workers=2, chunksize=10) == [
        spin(x) for x in range(100)]
    store = TrainingStore()
    store.settle_seconds = 0
    n, skipped = len(store.records()), sum(store.stats().skipped.values())
    store.prune()
    return {"ok": ok, "records": n, "skipped": skipped,
            "path": str(store.path), "modules": sorted(m for m in sys.modules if "evil" in m
                                                       or m in ("sitecustomize", "usercustomize"))}


def fault_planted_code(work_dir) -> Outcome:
    """Pickles with ``__reduce__``, ``.pth``/``.py``/``sitecustomize.py`` files in the training
    and cache directories: a fresh interpreter importing amorsize_dask and mapping never runs them."""
    work_dir = pathlib.Path(work_dir)
    cache = work_dir / "cache"
    train = cache / "amorsize_dask" / "training"      # the default location
    markers = work_dir / "markers"
    markers.mkdir(parents=True)
    plant(train, "otherhost-1-00000000.jsonl", b"".join(record_line(fake_record(i)) for i in range(5)))
    places = [train, train / "segments", cache / "amorsize_dask", cache / "amorsize_dask" / "overheads"]
    planted = 0
    for k, place in enumerate(places):
        place.mkdir(parents=True, exist_ok=True)
        code = f"open({str(markers / f'code{k}')!r}, 'w').close()\n"
        for name in ("evil.py", "sitecustomize.py", "usercustomize.py", "__init__.py", "amorsize_dask.py"):
            (place / name).write_text(code)
        (place / "evil.pth").write_text("import os; " + code)
        for name in ("evil.pkl", "evil.jsonl", "evil.npy", "evil.json"):
            (place / name).write_bytes(pickle.dumps(_Evil(markers / f"pickle{k}-{name}")))
        planted += 10
    o = Outcome("planted pickles/.pth/.py/sitecustomize", injected=True, records_written=5,
                results_expected=2100)
    env = {k: v for k, v in os.environ.items() if not k.startswith("DASK_AMORSIZE")}
    env["XDG_CACHE_HOME"] = str(cache)
    cwd = work_dir / "cwd"
    cwd.mkdir()
    out = run_child("_planted_child", env=env, cwd=cwd)
    if "error" in out:
        return o.check([out["error"]])
    o.results_returned = 2100 if out["ok"] else 0
    o.records_read, o.records_corrupt = out["records"] - 2, out["skipped"]
    problems = []
    if any(markers.iterdir()):
        problems.append(f"EXECUTED: {sorted(p.name for p in markers.iterdir())}")
    if out["modules"]:
        problems.append(f"imported {out['modules']}")
    if out["path"] != str(train):
        problems.append(f"default training dir is {out['path']}")
    if not out["ok"]:
        problems.append("wrong results")
    if o.records_read != 5 or not o.records_corrupt:
        problems.append(f"{o.records_read} records read, {o.records_corrupt} skipped")
    return o.check(problems, f"{planted} planted files in 4 places; none ran")


def spin_more(x):
    return spin(x, 3000)


def _overheads_child(n: int):
    """(subprocess) A map long enough to consult the (planted) overheads cache."""
    items = range(int(n))
    return {"ok": mapping.map(spin_more, items) == [spin_more(x) for x in items]}


def fault_overheads_cache_bomb(work_dir) -> Outcome:
    """The cached overheads file of this machine replaced by a 100k-deep JSON array."""
    from .. import config
    from ..fingerprint import local_fingerprint
    from ..overheads import cache_path

    work_dir = pathlib.Path(work_dir)
    env = dict(os.environ, XDG_CACHE_HOME=str(work_dir / "cache"),
               DASK_AMORSIZE__TRAINING_DIR=str(work_dir / "train"))
    mine = cache_path(local_fingerprint(shared_engine().start_method).id)
    path = work_dir / "cache" / mine.relative_to(config.user_cache_dir().parent)
    path.parent.mkdir(parents=True)
    path.write_bytes(b"[" * 100_000 + b"]" * 100_000)
    o = Outcome("overheads cache: 100k-deep JSON", injected=True, results_expected=3000)
    out = run_child("_overheads_child", 3000, env=env, cwd=work_dir)
    o.results_returned = 3000 if out.get("ok") else 0
    return o.check([] if out.get("ok") else [out.get("error", "wrong results")[-300:]],
                   "ignored; overheads measured again")


def fault_json_bombs(work_dir) -> Outcome:
    """100k-deep nesting, a 10**6-digit int, NaN/Infinity, a 100 MB line: skipped, counted,
    memory bounded; planning still works."""
    train = pathlib.Path(work_dir) / "train"
    good = [record_line(fake_record(i)) for i in range(3)]
    base = json.dumps(fake_record(50), separators=(",", ":"))
    bombs = [
        b"[" * 100_000 + b"]" * 100_000 + b"\n",
        b'{"a":' * 100_000 + b"1" + b"}" * 100_000 + b"\n",
        b'{"schema":1,"time":' + b"7" * 10**6 + b"}\n",
        base.replace('"n_items":50', '"n_items":' + "9" * 10**6).encode() + b"\n",
        *(base.replace('"wall_seconds":1.0', f'"wall_seconds":{c}').encode() + b"\n"
          for c in ("NaN", "Infinity", "-Infinity")),
    ]
    plant(train, "bombs-1-00000000.jsonl", good[0] + b"".join(bombs) + good[1])
    huge = plant(train, "huge-1-00000000.jsonl", b"")
    line_bytes = 100 * 10**6
    with open(huge, "r+b") as f:                      # sparse: a 100 MB line of zeros
        f.seek(line_bytes)
        f.write(b"\n" + good[2])
    o = Outcome("JSON bombs + a 100 MB line", injected=True, records_written=3,
                results_expected=300)
    problems = []
    settings = {"amorsize.store.max-line-bytes": "2 MiB", "amorsize.store.max-segment-bytes": "256 MiB"}
    with dask.config.set(settings):
        store = TrainingStore(train)
        got, peak = peak_bytes(store.records)
        skipped = store.stats().skipped
        o.records_read, o.records_corrupt = len(got), sum(skipped.values())
        try:
            results = mapping.map(spin, range(300), training_dir=train)
            o.results_returned = len(results) if results == [spin(x) for x in range(300)] else 0
            mapping.plan(spin, range(300), training_dir=train).explain()
        except Exception as exc:  # noqa: BLE001
            problems.append(f"planning failed: {type(exc).__name__}: {exc}")
    if o.records_lost:
        problems.append(f"{o.records_read} of 3 good records read")
    if skipped["not-json"] + skipped["invalid"] != len(bombs) or skipped["too-long"] != 1:
        problems.append(f"skipped {skipped}")
    if peak > 16 << 20:
        problems.append(f"peak memory {peak / 1e6:.0f} MB reading a 100 MB line")
    return o.check(problems, f"{len(bombs) + 1} skipped; peak {peak / 1e6:.1f} MB for the 100 MB line")


def _outside(work_dir) -> tuple[pathlib.Path, dict]:
    outside = pathlib.Path(work_dir) / "outside"
    outside.mkdir()
    (outside / "secret.jsonl").write_bytes(b"".join(record_line(fake_record(90 + i)) for i in range(3)))
    (outside / "app-log.jsonl").write_bytes(b'{"level": "info", "msg": "not a record"}\n')
    for p in outside.iterdir():
        os.utime(p, (1, 1))                           # quiet for decades: "settled"
    return outside, {p.name: p.read_bytes() for p in outside.iterdir()}


def _check_outside(outside, contents, problems):
    now = {p.name: p.read_bytes() for p in outside.iterdir()}
    if now != contents:
        problems.append(f"files outside changed: {sorted(contents)} -> {sorted(now)}")


def fault_symlinked_segment(work_dir) -> Outcome:
    """``segments/*.jsonl`` symlinks to a file and a directory outside: not followed or counted."""
    work_dir = pathlib.Path(work_dir)
    train = work_dir / "train"
    outside, contents = _outside(work_dir)
    plant(train, "mine-1-00000000.jsonl", b"".join(record_line(fake_record(i)) for i in range(3)))
    (train / "segments" / "link-1-00000000.jsonl").symlink_to(outside / "secret.jsonl")
    (train / "segments" / "dir-1-00000000.jsonl").symlink_to(outside)
    (train / "segments" / "log-1-00000000.jsonl").symlink_to(outside / "app-log.jsonl")
    o = Outcome("symlinks in segments/ -> outside", injected=True, records_written=3,
                results_expected=300)
    return _symlink_check(o, train, outside, contents, expect_read=3)


def fault_symlinked_segments_dir(work_dir) -> Outcome:
    """``segments`` itself a symlink to a directory outside: not followed, nothing outside
    read, written or removed."""
    work_dir = pathlib.Path(work_dir)
    train = work_dir / "train"
    outside, contents = _outside(work_dir)
    train.mkdir()
    (train / "segments").symlink_to(outside, target_is_directory=True)
    o = Outcome("segments/ is a symlink -> outside", injected=True, records_written=0,
                results_expected=300)
    return _symlink_check(o, train, outside, contents, expect_read=None)


def _symlink_check(o, train, outside, contents, expect_read):
    problems = []
    store = TrainingStore(train)
    o.records_read = len(store.records())
    o.records_corrupt = skipped_count(store)
    if any(r["features"]["n_items"] >= 90 for r in store.records()):
        problems.append("records of the file outside were read")
    results = mapping.map(spin, range(300), training_dir=train)
    o.results_returned = len(results) if results == [spin(x) for x in range(300)] else 0
    store.settle_seconds = 0
    store.prune(keep_per_workload=1)
    _check_outside(outside, contents, problems)
    if expect_read is not None and o.records_read != expect_read:
        problems.append(f"{o.records_read} records read, {expect_read} expected")
    return o.check(problems, "not followed; nothing outside touched")


_HOSTILE_STRINGS = ["../../etc/passwd", "..\\..\\windows\\win.ini", "/tmp/amorsize-pwned",
                    "a/../../b", "~/x", "$(touch pwned)", "`touch pwned`", "%s%n"]


def fault_path_strings(work_dir) -> Outcome:
    """Records whose strings hold path separators: no file is ever created from them."""
    work_dir = pathlib.Path(work_dir)
    train = work_dir / "a" / "b" / "train"
    from ..target import Target

    here = Target.local(spin, train)
    recs = [fake_record(i, function=s, fields={"cpu_model": s, s[:60]: s, "kind": "local"})
            for i, s in enumerate(_HOSTILE_STRINGS)]
    # The same workload on a near machine: borrowed by the planner, shown by explain().
    recs += [fake_record(300, function=s, workload=here.workload, fingerprint="f" * 16,
                         fields=dict(here.fingerprint.as_dict(), cpu_model=s))
             for s in _HOSTILE_STRINGS]
    plant(train, "otherhost-1-00000000.jsonl", b"".join(map(record_line, recs)))
    before = files_under(work_dir)
    o = Outcome("path strings in records (../../etc/passwd)", injected=True,
                records_written=len(recs), results_expected=300)
    store = TrainingStore(train)
    o.records_read = len(store.records())
    results = mapping.map(spin, range(300), training_dir=train)
    o.results_returned = len(results) if results == [spin(x) for x in range(300)] else 0
    mapping.plan(spin, range(300), training_dir=train).explain()
    store.stats()
    store.settle_seconds = 0
    store.prune(keep_per_workload=2)
    new = files_under(work_dir) - before
    strays = sorted(p for p in new if not (p.startswith("a/b/train/segments/") and p.endswith(".jsonl")))
    problems = [f"files created: {strays}"] if strays else []
    if os.path.exists("/tmp/amorsize-pwned") or (work_dir / "pwned").exists():
        problems.append("a file named by a record was created")
    return o.check(problems, f"{len(recs)} records read as data; no file created from them")


def _control_chars(value, path="") -> list[str]:
    """Where ``value`` (a record) holds a non-printable character."""
    found = []
    if isinstance(value, dict):
        for k, v in value.items():
            if isinstance(k, str) and not k.isprintable():
                found.append(f"key {path}{k!r}")
            found += _control_chars(v, f"{path}{k}.")
    elif isinstance(value, str) and not value.isprintable():
        found.append(f"{path[:-1]}={value!r}")
    return found


def fault_control_strings(work_dir) -> Outcome:
    """Records with control characters (terminal escapes, NUL, newlines) in any string:
    rejected or sanitized on read."""
    train = pathlib.Path(work_dir) / "train"
    nasty = "ok\x1b]0;pwned\x07\x1b[2J\x00\r\n"
    recs = [fake_record(0) | {"function": nasty},
            fake_record(1) | {"fingerprint_fields": {"kind": "local", "cpu_model": nasty}},
            fake_record(2) | {"fingerprint_fields": {"kind": "local", nasty: 1}},
            fake_record(3) | {"features": {"n_items": 3, nasty: 1.0}}]
    lines = [encode_line(dict(r, id=secrets.token_hex(8))) for r in recs]
    plant(train, "otherhost-1-00000000.jsonl", b"".join(lines))
    o = Outcome("control chars in record strings", injected=True)
    store = TrainingStore(train)
    got = store.records()
    o.records_read, o.records_corrupt = len(got), skipped_count(store)
    found = [f for r in got for f in _control_chars(r)]
    return o.check([f"kept: {', '.join(found)}"] if found else [],
                   f"{o.records_corrupt} rejected, the rest sanitized")


def _umask_child(umask, train):
    """(subprocess) Everything that writes files, under ``umask``."""
    os.umask(int(umask, 8))
    mapping.map(spin, range(3000), engine="processes")          # measures and caches overheads
    mapping.map(spin, range(300), training_dir=train)
    mapping.map(spin, range(300), training_dir=train)
    store = TrainingStore(train)
    store.settle_seconds = 0
    store.prune(keep_per_workload=1)
    return {"ok": True}


def fault_permissions(work_dir, umask: int) -> Outcome:
    """Files and directories amorsize_dask creates honour the umask: never world-writable
    (0o022); nothing readable by others (0o077)."""
    work_dir = pathlib.Path(work_dir)
    cache, train = work_dir / "cache", work_dir / "train"
    env = dict(os.environ, XDG_CACHE_HOME=str(cache), DASK_AMORSIZE__TRAINING_DIR=str(train))
    o = Outcome(f"file modes under umask {umask:04o}", injected=True)
    out = run_child("_umask_child", f"{umask:o}", train, env=env, cwd=work_dir)
    if "error" in out:
        return o.check([out["error"]])
    created = [p for root in (cache, train) if root.exists() for p in [root, *root.rglob("*")]]
    bad = [f"{p.relative_to(work_dir)} {p.stat().st_mode & 0o777:o}" for p in created
           if p.stat().st_mode & umask]
    o.extra = {"files": len(created)}
    problems = [f"modes wider than the umask allows: {bad}"] if bad else []
    if not any(p.suffix == ".jsonl" for p in created) or not any(p.suffix == ".json" for p in created):
        problems.append("expected a segment and an overheads file to check")
    return o.check(problems, f"{len(created)} paths checked")


# == the benchmark =======================================================================
def faults(quick: bool = False) -> list[tuple[str, Callable]]:
    """(name, fault(work_dir)) in the order :func:`run` injects them."""
    n = 100_000 if quick else 1_000_000
    return [
        ("worker_killed", fault_worker_killed),
        ("func_raises", fault_func_raises),
        ("unpicklable_result", fault_unpicklable_result),
        ("generator_raises", fault_generator_raises),
        ("parent_sigterm", fault_parent_sigterm),
        ("concurrent_maps", fault_concurrent_maps),
        ("concurrent_maps_mixed", lambda d: fault_concurrent_maps(d, mixed=True, timeout=10)),
        ("bad_inputs", fault_bad_inputs),
        ("concurrent_writers", fault_concurrent_writers),
        ("writer_killed", fault_writer_killed),
        ("read_only_user", fault_read_only_user),
        ("read_only_fs", fault_read_only_fs),
        ("full_disk", fault_full_disk),
        ("dir_deleted", fault_dir_deleted),
        ("clock_skew", fault_clock_skew),
        ("huge_segment", fault_huge_segment),
        ("planted_code", fault_planted_code),
        ("overheads_cache_bomb", fault_overheads_cache_bomb),
        ("json_bombs", fault_json_bombs),
        ("symlinked_segment", fault_symlinked_segment),
        ("symlinked_segments_dir", fault_symlinked_segments_dir),
        ("path_strings", fault_path_strings),
        ("control_strings", fault_control_strings),
        ("umask_022", lambda d: fault_permissions(d, 0o022)),
        ("umask_077", lambda d: fault_permissions(d, 0o077)),
        ("million_records", lambda d: million_records(d, n)),
    ]


def _cell(*values) -> str:
    return "-" if all(v is None for v in values) else " / ".join("-" if v is None else f"{v:,}"
                                                                 for v in values)


def run(out=print, quick: bool = False) -> dict:
    """Inject every fault in one process run and print what survived; {name: Outcome as dict}.

    ``quick``: 100,000 instead of 1,000,000 records for the load-and-prune row.
    """
    outcomes: dict[str, Outcome] = {}
    t_start = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="amorsize-faults-") as tmp, captured_warnings():
        for name, fault in faults(quick):
            work_dir = pathlib.Path(tmp) / name
            work_dir.mkdir()
            t0 = time.perf_counter()
            try:
                o = fault(work_dir)
            except FaultSkipped as why:
                o = Outcome(name, detail=f"skipped: {why}")
                o.survived = None
            except Exception as exc:  # noqa: BLE001 - a fault that broke the harness is a row too
                o = Outcome(name, injected=True, detail=f"{type(exc).__name__}: {exc}")
            o.seconds = time.perf_counter() - t0
            outcomes[name] = o
            out(f"  {o.fault}: {'skipped' if o.survived is None else 'ok' if o.survived else 'FAILED'}"
                f" ({o.seconds:.1f} s)")
    headers = ["fault", "injected", "survived", "bad inputs tried / clean",
               "records written / read / lost / corrupt", "results expected / returned / lost", "s"]
    rows = [[o.fault, "yes" if o.injected else "no",
             "skipped" if o.survived is None else "yes" if o.survived else "NO",
             _cell(o.bad_tried, o.bad_clean),
             _cell(o.records_written, o.records_read, o.records_lost, o.records_corrupt),
             _cell(o.results_expected, o.results_returned, o.results_lost),
             f"{o.seconds:.1f}"] for o in outcomes.values()]
    out(format_table(headers, rows))
    out("")
    for o in outcomes.values():
        out(f"- {o.fault}: {o.detail}")
        for problem in o.extra.get("problems", []) if not o.survived else []:
            out(f"    {problem}")
    failed = [name for name, o in outcomes.items() if o.survived is False]
    total = time.perf_counter() - t_start
    out(f"\n{len(outcomes) - len(failed)} of {len(outcomes)} faults survived or skipped "
        f"in {total:.0f} s; failed: {', '.join(failed) or 'none'}")
    return {name: dict(dataclasses.asdict(o), records_lost=o.records_lost, results_lost=o.results_lost)
            for name, o in outcomes.items()}

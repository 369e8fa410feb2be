"""The process engine leaves nothing running: after errors, Ctrl-C, or exit."""

import json
import os
import signal
import subprocess
import sys
import textwrap
import time

import psutil
import pytest


def _alive(pids):
    out = []
    for pid in pids:
        try:
            p = psutil.Process(pid)
            if p.status() != psutil.STATUS_ZOMBIE:
                out.append(pid)
        except psutil.NoSuchProcess:
            pass
    return out


def _wait_gone(pids, timeout=15.0):
    deadline = time.monotonic() + timeout
    while _alive(pids) and time.monotonic() < deadline:
        time.sleep(0.05)
    return _alive(pids)


SCRIPT = textwrap.dedent(
    """
    import os, sys, time
    import amorsize_dask as ad

    PIDS = sys.argv[1]

    def work(x):
        with open(PIDS, "a") as f:
            f.write(f"{os.getpid()}\\n")
        if sys.argv[2] == "error" and x == 5:
            raise ValueError("boom")
        time.sleep(0.2)
        return x

    if __name__ == "__main__":
        try:
            ad.map(work, range(60), engine="processes", n_workers=2, chunksize=1)
        except ValueError:
            print("caught", flush=True)
        except KeyboardInterrupt:
            print("interrupted", flush=True)
            raise
    """
)


def _run_script(tmp_path, mode):
    script = tmp_path / "script.py"
    script.write_text(SCRIPT)
    pids_file = tmp_path / "pids.txt"
    proc = subprocess.Popen(
        [sys.executable, str(script), str(pids_file), mode],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=os.getcwd(),
    )
    return proc, pids_file


def _worker_pids(pids_file):
    if not pids_file.exists():
        return set()
    return {int(line) for line in pids_file.read_text().split() if line.strip()}


def test_no_orphans_after_error_and_exit(tmp_path):
    proc, pids_file = _run_script(tmp_path, "error")
    out, err = proc.communicate(timeout=60)
    assert "caught" in out, err
    pids = _worker_pids(pids_file)
    assert pids and proc.pid not in pids
    assert _wait_gone(pids) == []


def test_ctrl_c_returns_promptly_and_leaves_no_processes(tmp_path):
    proc, pids_file = _run_script(tmp_path, "sleep")
    deadline = time.monotonic() + 60
    while len(_worker_pids(pids_file)) < 2 and time.monotonic() < deadline:
        time.sleep(0.02)
    pids = _worker_pids(pids_file)
    assert pids, "workers never started"
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=30)
    assert "interrupted" in out, err
    assert len(pids_file.read_text().split()) < 60  # it did not wait: the rest never started
    assert proc.returncode != 0
    assert _wait_gone(pids) == []


SLIM_SCRIPT = textwrap.dedent("""
    import json, sys
    import pandas  # the user's script imports what it likes; its workers must not pay for it
    import amorsize_dask as ad

    def loaded(_):
        import sys
        return sorted(m for m in ("dask", "distributed", "pandas", "numpy") if m in sys.modules)

    print(json.dumps(ad.map(loaded, range(4), engine="processes", n_workers=2, chunksize=1)))
""")


def _run_slim(tmp_path, start_method: str, source: str = SLIM_SCRIPT):
    import json

    script = tmp_path / "slim.py"
    script.write_text(source)
    env = {**os.environ, "DASK_AMORSIZE__TRAINING_DIR": str(tmp_path / "training"),
           "DASK_AMORSIZE__START_METHOD": start_method}
    done = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=120,
                          env=env, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_forkserver_workers_import_neither_dask_nor_the_users_main_module(tmp_path):
    assert _run_slim(tmp_path, "forkserver") == [[], [], [], []]


def test_auto_forks_a_script_with_no_busy_thread_so_workers_import_nothing(tmp_path):
    # A fork is a copy: the workers already hold what the script imported (pandas, numpy),
    # paying no import of their own; dask comes with the package in the caller.
    assert _run_slim(tmp_path, "auto") == [["dask", "numpy", "pandas"]] * 4


BUSY_THREAD_SCRIPT = SLIM_SCRIPT.replace("print(json.dumps(", """import threading
stop = threading.Event()
busy = threading.Thread(target=stop.wait)  # the user's thread, doing something: no fork
busy.start()
try:
    print(json.dumps(""").replace("chunksize=1)))", """chunksize=1)))
finally:
    stop.set()
from amorsize_dask.engines import shared_engine
print(json.dumps(shared_engine().last_start_method))""")


def test_auto_uses_the_forkserver_while_another_thread_of_the_caller_is_alive(tmp_path):
    assert _run_slim(tmp_path, "auto", BUSY_THREAD_SCRIPT) == "forkserver"


def test_forkserver_preloads_the_public_worker_module():
    from amorsize_dask.engines import process_worker
    from amorsize_dask.engines.worker_start import forkserver_preload

    assert forkserver_preload(process_worker.__name__) == ["amorsize_dask.engines.process_worker"]
    assert callable(process_worker.run_pickled_chunk) and callable(process_worker.initialize_worker)


FORKED_NESTED_SCRIPT = textwrap.dedent("""
    import json
    import amorsize_dask as ad

    def inner(x):
        return x * 2

    def outer(x):  # in a forked worker: the parent's thread pools' threads do not exist there
        return sum(ad.map(inner, range(x), engine="threads", n_workers=2, chunksize=1))

    if __name__ == "__main__":
        ad.map(inner, range(8), engine="threads", n_workers=2, chunksize=1)  # pools in the parent
        from amorsize_dask.planning.sampling import probe_threads
        probe_threads(inner, list(range(4)), 0, 4, 1e-3)                     # and the probe's
        out = ad.map(outer, range(6), engine="processes", n_workers=2, chunksize=1)
        from amorsize_dask.engines import shared_engine
        print(json.dumps([out, shared_engine().last_start_method]))
""")


def test_a_forked_worker_starts_its_own_threads_for_a_nested_map(tmp_path):
    out, method = _run_slim(tmp_path, "auto", FORKED_NESTED_SCRIPT)
    assert method == "fork"  # the idle pool threads of the parent did not rule the fork out
    assert out == [sum(2 * i for i in range(x)) for x in range(6)]


_FEW_FILES = textwrap.dedent("""
    import json, os, resource, sys, time, warnings
    from amorsize_dask.mapping import run_map

    def spin(x):  # cheap first items, then dear ones: a serial plan overruns and re-plans
        end = time.perf_counter() + (20e-3 if x >= 40 else 0.1e-3)
        while time.perf_counter() < end:
            pass
        return x

    if __name__ == "__main__":
        extra, engine = int(sys.argv[1]), sys.argv[2]
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        resource.setrlimit(resource.RLIMIT_NOFILE, (len(os.listdir("/proc/self/fd")) + extra, hard))
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            try:
                outcome = run_map(spin, list(range(100)), engine=engine, learn=False)
                report = dict(ok=outcome.results == list(range(100)), plan=outcome.plan.explain())
            except Exception as exc:
                report = dict(error=type(exc).__name__, message=str(exc))
        report["warnings"] = [str(w.message) for w in caught]
        print(json.dumps(report), flush=True)
""")


@pytest.mark.skipif(not os.path.isdir("/proc/self/fd"), reason="counts open files in /proc")
@pytest.mark.parametrize("extra_files", [6, 8, 10, 11])
def test_workers_that_cannot_start_for_lack_of_files_fail_cleanly_and_leave_nothing_behind(tmp_path, extra_files):
    """A few file descriptors short, a pool fails at different points of its start (its
    queues' locks; a worker's pipes). engine="processes": a WorkerStartError naming the
    cause; "auto": the results, serially, with a warning. Either way the script exits at
    once: a worker that did start no longer waits 60 s at the start barrier for its peer
    (the interpreter's exit joined it)."""
    script = tmp_path / "few_files.py"
    script.write_text(_FEW_FILES)
    for engine in ("processes", "auto"):
        t0 = time.perf_counter()
        done = subprocess.run([sys.executable, str(script), str(extra_files), engine], capture_output=True,
                              text=True, timeout=120, cwd=tmp_path)
        elapsed = time.perf_counter() - t0
        assert done.returncode == 0, done.stderr[-2000:]
        report = json.loads(done.stdout.strip().splitlines()[-1])
        assert elapsed < 30, (engine, elapsed, report)
        if engine == "processes":
            assert report.get("ok") or report.get("error") == "WorkerStartError", report
        else:
            assert report.get("ok"), report
            if "failed to start" in report["plan"]:
                assert any("failed to start" in w for w in report["warnings"]), report


CHILD_SCRIPT = textwrap.dedent("""
    import json, sys, time
    import multiprocessing as mp
    from concurrent.futures import ProcessPoolExecutor
    import amorsize_dask as ad

    def work(x):
        return -x

    def child(engine):
        assert ad.map(work, range(2000), engine=engine) == [-x for x in range(2000)]

    def job(n):
        return sum(ad.map(work, range(n), engine="processes"))

    if __name__ == "__main__":
        out = {}
        if sys.argv[1] == "parent-pool":  # the children are forked with the parent's pool running
            child("processes")
        for engine in ("processes", "auto"):
            p = mp.get_context("fork").Process(target=child, args=(engine,))
            t0 = time.monotonic()
            p.start()
            p.join(30)
            out[engine] = [p.exitcode, time.monotonic() - t0 < 30]
            if p.exitcode is None:
                p.kill()
        t0 = time.monotonic()
        with ProcessPoolExecutor(2, mp_context=mp.get_context("spawn")) as ex:
            sums = list(ex.map(job, [300, 400]))
        out["executor"] = [sums == [-sum(range(300)), -sum(range(400))], time.monotonic() - t0 < 30]
        print(json.dumps(out))
""")


@pytest.mark.parametrize("parent", ["parent-pool", "no-parent-pool"])
def test_a_child_process_that_maps_on_processes_exits_when_its_work_is_done(tmp_path, parent):
    """A ``multiprocessing`` child runs no ``atexit`` hooks: it joins its own children
    (``multiprocessing.util._exit_function``), the idle workers of its pool among them,
    which never exit by themselves (the child hung; a ProcessPoolExecutor's ``with``
    never closed). The workers are stopped there as at any exit."""
    script = tmp_path / "children.py"
    script.write_text(CHILD_SCRIPT)
    env = {**os.environ, "DASK_AMORSIZE__TRAINING_DIR": str(tmp_path / "training")}
    done = subprocess.run([sys.executable, str(script), parent], capture_output=True, text=True, timeout=150,
                          env=env, cwd=str(tmp_path))
    assert done.returncode == 0, done.stderr[-3000:]
    assert json.loads(done.stdout.splitlines()[-1]) == {"processes": [0, True], "auto": [0, True],
                                                        "executor": [True, True]}


THREADS_CTRL_C = textwrap.dedent("""
    import sys, time
    import amorsize_dask as ad

    def sleepy(x):
        time.sleep(0.05)
        with open(sys.argv[1], "a") as fh:
            fh.write(f"{time.time()}\\n")
        return x

    print("started", flush=True)
    try:
        ad.map(sleepy, range(3000), engine="threads", n_workers=4, learn=False)
    except KeyboardInterrupt:
        print("interrupted", time.time(), flush=True)
""")


def test_ctrl_c_on_threads_stops_the_running_chunks_too(tmp_path):
    """``engine="threads"``, 4 threads, chunks of 750 items of 50 ms: Ctrl-C raised at once
    but the running chunks went on to their end (the script exited 36 s later, the
    function still running); ThreadPoolExecutor.map exits in 0.1 s. Each thread now ends
    with its current item."""
    script = tmp_path / "threads.py"
    script.write_text(THREADS_CTRL_C)
    calls = tmp_path / "calls.txt"
    proc = subprocess.Popen([sys.executable, str(script), str(calls)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 60
    while (not calls.exists() or len(calls.read_text().split()) < 8) and time.monotonic() < deadline:
        time.sleep(0.02)
    proc.send_signal(signal.SIGINT)
    t_signal = time.monotonic()
    out, err = proc.communicate(timeout=60)
    exited_after = time.monotonic() - t_signal
    assert "interrupted" in out, err
    interrupted_at = float(out.split("interrupted")[1].split()[0])
    late = [t for t in map(float, calls.read_text().split()) if t > interrupted_at + 0.2]
    assert exited_after < 10 and len(late) <= 4, (exited_after, len(late))


NEVER_IN_THE_CALLER = textwrap.dedent("""
    import json, os, sys
    import amorsize_dask as ad
    from amorsize_dask.errors import WorkerLostError

    CALLER = os.getpid()

    def mutate(item):
        item["ran_in_caller"] = os.getpid() == CALLER
        return item["x"]

    def crash_at_3(x):
        if x == 3:
            os._exit(7)
        return x

    if __name__ == "__main__":
        out = {}
        items = [{"x": x} for x in range(300)]
        out["results"] = ad.map(mutate, items, engine="processes") == list(range(300))
        out["changed here"] = sum("ran_in_caller" in item for item in items)
        try:
            ad.map(crash_at_3, range(300), engine="processes")
        except WorkerLostError as exc:
            out["crash"] = "crash_at_3" in str(exc)
        print(json.dumps(out))
""")


def test_engine_processes_runs_no_item_in_the_caller(tmp_path):
    """As ``Pool().map``: the items the planner used to time in the caller ran there (an
    ``os._exit`` among them ended the script with its code; items changed in place in the
    caller, 37 in a cold run)."""
    script = tmp_path / "never_here.py"
    script.write_text(NEVER_IN_THE_CALLER)
    env = {**os.environ, "DASK_AMORSIZE__TRAINING_DIR": str(tmp_path / "training")}
    done = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=120, env=env,
                          cwd=str(tmp_path))
    assert done.returncode == 0, (done.returncode, done.stderr[-3000:])
    assert json.loads(done.stdout.splitlines()[-1]) == {"results": True, "changed here": 0, "crash": True}


SIGTERM_HANDLER = textwrap.dedent("""
    import os, signal, sys
    import amorsize_dask as ad

    LOG = sys.argv[1]

    def on_term(signum, frame):
        with open(LOG, "a") as fh:
            fh.write(f"{os.getpid()}\\n")

    def work(x):
        return sum(range(2_000)) + x

    if __name__ == "__main__":
        signal.signal(signal.SIGTERM, on_term)
        assert ad.map(work, range(3_000), engine="processes", n_workers=2) == [work(x) for x in range(3_000)]
""")


def test_the_users_sigterm_handler_never_runs_in_a_worker(tmp_path):
    """The workers are stopped at exit with SIGTERM: forked ones inherited the script's
    handler, which then ran once per worker at every normal exit (a pidfile removed, a
    supervisor told, N extra times); ``Pool().map`` runs it in none."""
    script, log = tmp_path / "handler.py", tmp_path / "handled"
    script.write_text(SIGTERM_HANDLER)
    env = {**os.environ, "DASK_AMORSIZE__TRAINING_DIR": str(tmp_path / "training")}
    done = subprocess.run([sys.executable, str(script), str(log)], capture_output=True, text=True, timeout=120,
                          env=env, cwd=str(tmp_path))
    assert done.returncode == 0, done.stderr[-3000:]
    assert not log.exists(), log.read_text()


LOCK_WITH_A_BUSY_THREAD = textwrap.dedent("""
    import json, threading
    import amorsize_dask as ad

    CACHE_LOCK = threading.Lock()

    def work(x):
        with CACHE_LOCK:
            return x * 2

    def spin():
        while True:
            sum(range(10_000))

    if __name__ == "__main__":
        threading.Thread(target=spin, daemon=True).start()
        try:
            ad.map(work, range(2_000), engine="processes", n_workers=2)
            print(json.dumps({"error": None}))
        except TypeError as exc:
            print(json.dumps({"error": str(exc)}))
""")


def test_a_function_that_only_a_fork_can_take_says_how_to_fork(tmp_path):
    """With another thread busy, pools start by forkserver and a script's function holding
    a lock cannot reach them (``Pool().map`` forks anyway, and runs it): the error names
    the setting that forks."""
    script = tmp_path / "lock.py"
    script.write_text(LOCK_WITH_A_BUSY_THREAD)
    env = {**os.environ, "DASK_AMORSIZE__TRAINING_DIR": str(tmp_path / "training")}
    done = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=120, env=env,
                          cwd=str(tmp_path))
    assert done.returncode == 0, done.stderr[-3000:]
    error = json.loads(done.stdout.splitlines()[-1])["error"]
    assert "cannot pickle '_thread.lock'" in error and "DASK_AMORSIZE__START_METHOD=fork" in error, error


LARGE_FUNCTION = textwrap.dedent("""
    import glob, json, os
    import amorsize_dask as ad
    from amorsize_dask.engines import process_worker

    TABLE = os.urandom(3 << 20)   # pickled with the function: larger than LARGE_PICKLE_BYTES
    sent = []
    real = process_worker.FunctionFile.__init__

    def noted(self, path):
        sent.append(path)
        real(self, path)

    process_worker.FunctionFile.__init__ = noted

    def work(x):
        return TABLE[x] + x

    if __name__ == "__main__":
        got = ad.map(work, range(400), engine="processes", n_workers=2, chunksize=10)
        print(json.dumps({"same": got == [work(x) for x in range(400)], "files": len(sent),
                          "left": [p for p in sent if os.path.exists(p)]}))
""")


def test_a_large_function_goes_to_a_pool_that_did_not_fork_once_not_with_every_chunk(tmp_path):
    """A forkserver pool (a notebook's: its kernel has threads) got a 48 MB function with
    each of 20 chunks: 3-20x its serial time. It goes through one file, read once per
    worker, removed when the run ends."""
    script = tmp_path / "large.py"
    script.write_text(LARGE_FUNCTION)
    env = {**os.environ, "DASK_AMORSIZE__TRAINING_DIR": str(tmp_path / "training"),
           "DASK_AMORSIZE__START_METHOD": "forkserver"}
    done = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=120, env=env,
                          cwd=str(tmp_path))
    assert done.returncode == 0, done.stderr[-3000:]
    assert json.loads(done.stdout.splitlines()[-1]) == {"same": True, "files": 1, "left": []}

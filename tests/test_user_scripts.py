"""User code run as users run it: a script file executed as ``__main__`` in a subprocess.

Each script defines its own classes, exceptions and functions (with and without the
``if __name__ == "__main__":`` guard), calls amorsize_dask, and prints one JSON line
that the test asserts on. "auto" runs force the planner's choice to the process
engine (the case under test), since whether processes win depends on this machine.
"""

import json
import os
import signal
import subprocess
import sys
import textwrap

import psutil
import pytest

# Makes engine="auto" choose the process engine whenever the planner offers it.
FORCE_PROCESSES = """
import amorsize_dask.mapping  # the planner loaded: no call runs a head (amorsize_dask/planning/head.py)
import amorsize_dask.planning.planner as _planner
_planner.CALIBRATE_ABOVE_SECONDS = 0.0
_planner.choose = lambda ranked, serial_rest, engine: next(
    (c for c in ranked if c.engine == "processes"), ranked[0])
"""


def script_text(head: str, main: str, *, guard: bool, force_processes: bool = False) -> str:
    head = textwrap.dedent(head)
    main = textwrap.dedent(main)
    if force_processes:
        head = FORCE_PROCESSES + head
    if guard:
        main = 'if __name__ == "__main__":\n' + textwrap.indent(main, "    ")
    return head + "\n" + main


def run_script(tmp_path, head, main, *, guard=True, force_processes=False, args=(), timeout=120, env=None):
    """Run the script; (its last stdout line as JSON, the whole completed process)."""
    path = tmp_path / "user_script.py"
    path.write_text(script_text(head, main, guard=guard, force_processes=force_processes))
    proc = subprocess.run(
        [sys.executable, str(path), *map(str, args)], capture_output=True, text=True, timeout=timeout,
        cwd=str(tmp_path), env=env,
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    lines = [line for line in proc.stdout.splitlines() if line.startswith("{")]
    assert lines, proc.stdout + proc.stderr[-4000:]
    return json.loads(lines[-1]), proc


ENGINES = ["serial", "threads", "processes", "auto"]

# --- 1. classes and exceptions defined in the script ------------------------------------
CLASSES_HEAD = """
import json, sys
from dataclasses import dataclass
import amorsize_dask as ad
from amorsize_dask.mapping import run_map

ENGINE = sys.argv[1]

@dataclass
class Point:
    x: int
    y: int

class MyError(Exception):
    pass

class TwoArgError(Exception):  # cannot be rebuilt from its args alone: travels by state
    def __init__(self, a, b):
        super().__init__(f"{a}-{b}")

def to_point(x):
    return Point(x, -x)

def check_item(p):
    if not isinstance(p, Point):
        raise TypeError(f"not a Point: {type(p)!r}")
    return p.x + p.y

def raise_on_13(x):
    if x == 13:
        raise MyError(f"thirteen {x}")
    return x

def spin(n):
    acc = 0
    for i in range(20000):
        acc += i
    return n

def run(func, items):
    return run_map(func, items, engine=ENGINE, n_workers=None if ENGINE == "auto" else 2,
                   chunksize=None if ENGINE == "auto" else 4, learn=False)
"""

CLASSES_MAIN = """
out = {}
n = 40
res = run(lambda x: to_point(spin(x)), list(range(n)))
out["engine"] = res.plan.engine
out["points"] = all(isinstance(p, Point) and type(p) is Point for p in res.results)
out["values"] = [p.x for p in res.results]
out["items_ok"] = run(lambda p: check_item(Point(spin(p.x), p.y)), [Point(i, i) for i in range(n)]).results
try:
    run(lambda x: raise_on_13(spin(x)), list(range(n)))
    out["caught"] = "nothing"
except MyError as exc:
    out["caught"] = "MyError"
    out["message"] = str(exc)
    out["notes"] = getattr(exc, "__notes__", [])
except Exception as exc:
    out["caught"] = type(exc).__name__ + ": " + str(exc)
try:
    run(lambda x: x if spin(x) != 7 else (_ for _ in ()).throw(TwoArgError(x, "b")), list(range(n)))
except Exception as exc:
    out["two_args"] = [type(exc).__name__, str(exc), any("item 7" in n for n in getattr(exc, "__notes__", []))]
print(json.dumps(out))
"""


@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.parametrize("guard", [True, False], ids=["guarded", "unguarded"])
def test_script_classes_and_exceptions_come_back_as_the_callers_own(tmp_path, engine, guard):
    out, _ = run_script(tmp_path, CLASSES_HEAD, CLASSES_MAIN, guard=guard,
                        force_processes=engine == "auto", args=[engine])
    assert out["engine"] == ("processes" if engine == "auto" else engine)   # auto: processes forced
    assert out["points"] is True
    assert out["values"] == list(range(40))
    assert out["items_ok"] == [2 * i for i in range(40)]
    assert out["caught"] == "MyError"
    assert out["message"] == "thirteen 13"
    assert any("item 13" in note for note in out["notes"])
    # In this process the exception is raised as it is; from a worker it comes back by state.
    assert out["two_args"][0] == "TwoArgError" and out["two_args"][2], out["two_args"]
    assert "7-b" in out["two_args"][1]


FACTORY_HEAD = """
import json, sys
import amorsize_dask as ad

def make_classes():  # classes made by a function: they cannot travel by name
    class LocalError(Exception):
        pass

    class Record:
        def __init__(self, v):
            self.v = v
    return LocalError, Record

LocalError, Record = make_classes()

def record(x):
    return Record(x)

def fails_on_3(x):
    if x == 3:
        raise LocalError("three")
    return x
"""

FACTORY_MAIN = """
out = {}
kw = dict(engine=sys.argv[1], n_workers=2, chunksize=2, learn=False)
out["records"] = all(type(r) is Record for r in ad.map(record, range(6), **kw))
try:
    ad.map(fails_on_3, range(6), **kw)
except LocalError:
    out["caught"] = True
except Exception as exc:
    out["caught"] = f"{type(exc).__qualname__}, the caller's class: {type(exc) is LocalError}"
print(json.dumps(out))
"""


@pytest.mark.parametrize("engine", ["threads", "processes"])
def test_classes_made_by_a_function_come_back_as_the_callers_own(tmp_path, engine):
    """The script's first map forks its pool, whose workers inherit the function: a class
    made inside a function (``make_classes.<locals>.Record``) cannot travel by name, and
    came back as a new class of the same name (``isinstance`` False, ``except LocalError``
    missed), where ``builtins.map`` returns the caller's own."""
    out, _ = run_script(tmp_path, FACTORY_HEAD, FACTORY_MAIN, args=[engine])
    assert out == {"records": True, "caught": True}


# --- 2. scripts without a main guard ---------------------------------------------------
UNGUARDED = """
import json, os, sys
import amorsize_dask as ad
from amorsize_dask.mapping import run_map

print("TOP-LEVEL-MARKER", flush=True)
with open(sys.argv[2], "a") as f:
    f.write(f"{os.getpid()}\\n")

def work(x):
    acc = 0
    for i in range(20000):
        acc += i
    return x * x

res = run_map(work, list(range(60)), engine=sys.argv[1], learn=False,
              **({} if sys.argv[1] == "auto" else {"n_workers": 2, "chunksize": 5}))
from amorsize_dask.engines import shared_engine
print(json.dumps({"engine": res.plan.engine, "results": res.results, "start_method": shared_engine().start_method}))
"""


@pytest.mark.parametrize(("engine", "start_method"), [("processes", None), ("auto", None), ("processes", "spawn")])
def test_unguarded_script_is_never_run_by_the_workers(tmp_path, engine, start_method):
    side_effects = tmp_path / "side_effects.txt"
    env = dict(os.environ)
    if start_method:
        env["DASK_AMORSIZE__START_METHOD"] = start_method
    out, proc = run_script(tmp_path, UNGUARDED, "", guard=False, force_processes=engine == "auto",
                           args=[engine, side_effects], env=env)
    assert out["engine"] == "processes"
    assert out["start_method"] == (start_method or out["start_method"])
    assert out["results"] == [x * x for x in range(60)]
    assert proc.stdout.count("TOP-LEVEL-MARKER") == 1
    assert len(side_effects.read_text().split()) == 1  # only the script itself wrote it
    assert "worker processes failed to start" not in proc.stderr


# --- 3. work that cannot travel --------------------------------------------------------
UNTRAVELLED_HEAD = """
import json, sys, threading, warnings
import amorsize_dask as ad
from amorsize_dask.mapping import run_map

ENGINE, CASE = sys.argv[1], sys.argv[2]
LOCK = threading.Lock()
N = 200

def spin(x):
    acc = 0
    for i in range(2000):
        acc += i
    return x

def locked(x):
    with LOCK:
        return spin(x) * 2

def make_adder(k):
    return lambda x: x + k

def describe(x):
    return type(spin(x) if isinstance(x, int) else x).__name__

def lock_on_150(x):
    return threading.Lock() if spin(x) == 150 else x * 2

CASES = {
    "func": (locked, list(range(N)), [2 * x for x in range(N)]),
    "closure_items": (lambda f: f(spin(1)), [make_adder(k) for k in range(N)], [k + 1 for k in range(N)]),
    "item": (describe, [threading.Lock() if i == 150 else i for i in range(N)],
             ["lock" if i == 150 else "int" for i in range(N)]),
    "result": (lock_on_150, list(range(N)), None),
}
"""

UNTRAVELLED_MAIN = """
import os, tempfile
func, items, expected = CASES[CASE]
out = {}
train = tempfile.mkdtemp(dir=os.getcwd())  # in the test's tmp_path
with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    try:
        res = run_map(func, items, engine=ENGINE, training_dir=train,
                      **({} if ENGINE == "auto" else {"n_workers": 2, "chunksize": 10}))
        results = res.results
        if CASE == "result":
            results = ["lock" if hasattr(r, "acquire") else r for r in results]
            expected = ["lock" if i == 150 else 2 * i for i in range(N)]
        out["ok"] = results == expected
        out["engine"] = res.plan.engine
        out["reasons"] = list(res.plan.reasons)
        from amorsize_dask import TrainingStore
        out["ran_locally"] = [r["features"].get("ran_locally", 0) for r in TrainingStore(train).records()]
    except TypeError as exc:
        out["error"] = str(exc)
out["warnings"] = [str(w.message) for w in caught if "amorsize" in str(w.message) or "pickle" in str(w.message)]
print(json.dumps(out))
"""


FORKSERVER = {**os.environ, "DASK_AMORSIZE__START_METHOD": "forkserver"}


@pytest.mark.parametrize("case", ["func", "closure_items", "item", "result"])
def test_auto_never_fails_on_work_that_cannot_travel(tmp_path, case):
    out, _ = run_script(tmp_path, UNTRAVELLED_HEAD, UNTRAVELLED_MAIN, guard=False, force_processes=True,
                        args=["auto", case], env=FORKSERVER if case == "func" else None)
    assert "error" not in out, out
    assert out["ok"] is True
    if case == "func":
        assert out["engine"] != "processes"  # the planner never offered processes it cannot reach
    if case in ("item", "result"):
        assert len(out["warnings"]) == 1, out["warnings"]
        assert "item 150" in out["warnings"][0]
        assert any("item 150" in reason for reason in out["reasons"]), out["reasons"]
        assert out["ran_locally"] == [1]  # and the record says so


@pytest.mark.parametrize("case", ["func", "item", "result"])
def test_fixed_process_engine_still_raises_a_clear_type_error(tmp_path, case):
    out, _ = run_script(tmp_path, UNTRAVELLED_HEAD, UNTRAVELLED_MAIN, guard=False, args=["processes", case],
                        env=FORKSERVER if case == "func" else None)  # a fork needs no pickle of func
    assert "error" in out, out
    assert ("locked" in out["error"]) if case == "func" else ("item 150" in out["error"])
    assert "engine='threads'" in out["error"]


def test_closures_as_items_travel_to_worker_processes(tmp_path):
    out, _ = run_script(tmp_path, UNTRAVELLED_HEAD, UNTRAVELLED_MAIN, guard=False, args=["processes", "closure_items"])
    assert out.get("ok") is True, out


# --- 6. stale worker state -------------------------------------------------------------
STALE = """
import importlib, json, os, sys
import amorsize_dask as ad

sys.path.insert(0, sys.argv[1])
MODULE = os.path.join(sys.argv[1], "user_mod.py")
with open(MODULE, "w") as f:
    f.write("def f(x):\\n    return x + 1\\n")
import user_mod

def run(func):
    return ad.map(func, range(8), engine="processes", n_workers=2, chunksize=2, learn=False)

out = {"before": run(user_mod.f)}
with open(MODULE, "w") as f:
    f.write("def f(x):\\n    return x * 1000  # edited\\n")
importlib.reload(user_mod)
out["reloaded"] = run(user_mod.f)

def cwd_and_env(x):
    return [os.path.basename(os.getcwd()), os.environ.get("USER_SETTING")]

out["cwd_before"] = run(cwd_and_env)[0]
os.makedirs(os.path.join(sys.argv[1], "elsewhere"), exist_ok=True)
os.chdir(os.path.join(sys.argv[1], "elsewhere"))
os.environ["USER_SETTING"] = "changed"
out["cwd_after"] = run(cwd_and_env)[0]
print(json.dumps(out))
"""


def test_pool_never_runs_with_stale_code_cwd_or_environment(tmp_path):
    moddir = tmp_path / "mods"
    moddir.mkdir()
    env = {k: v for k, v in os.environ.items() if k != "USER_SETTING"}
    out, _ = run_script(tmp_path, STALE, "", guard=False, args=[moddir], env=env)
    assert out["before"] == [x + 1 for x in range(8)]
    assert out["reloaded"] == [x * 1000 for x in range(8)]
    assert out["cwd_before"] == [tmp_path.name, None]
    assert out["cwd_after"] == ["elsewhere", "changed"]


# --- 7. speculation safety -------------------------------------------------------------
SPECULATION_HEAD = """
import json, os, sys, time
import amorsize_dask as ad
from amorsize_dask.target.target import Target

N = 16
PIDS = sys.argv[2]

def warm(x):
    return x

def die_on_last(x):
    if x == N - 1:
        os._exit(3)  # in the caller, this would end the user's script
    return x

def fail_first(x):
    if x == 0:  # in the caller, once the speculated last item runs in a worker
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and not any(
                line.split()[0] != str(os.getpid()) for line in _lines(PIDS)):
            time.sleep(0.01)
        raise ValueError("item zero is bad")
    return sleepy(x)

def _lines(path):
    return open(path).read().splitlines() if os.path.exists(path) else []

def sleepy(x):
    with open(PIDS, "a") as f:
        f.write(f"{os.getpid()} {x}\\n")
    time.sleep(60)
    return x
"""

SPECULATION_MAIN = """
cores = Target.local(warm).cores
if cores < 2:
    print(json.dumps({"skip": "one usable core: nothing is speculated"}))
    sys.exit(0)
ad.map(warm, range(8), engine="processes", n_workers=cores, chunksize=4, learn=False)  # a warm pool
out = {}
if sys.argv[1] == "die":
    try:
        ad.map(die_on_last, range(N), learn=False)
        out["error"] = None
    except Exception as exc:
        out["error"] = type(exc).__name__
        out["message"] = str(exc)
elif sys.argv[1] == "error":
    try:
        ad.map(fail_first, range(N), learn=False)
    except ValueError as exc:
        out["error"] = str(exc)
    out["speculated"] = any(line.split()[0] != str(os.getpid()) for line in _lines(PIDS))
else:
    print("started", flush=True)
    try:
        ad.map(sleepy, range(N), learn=False)
    except KeyboardInterrupt:
        print("interrupted", flush=True)
        raise
print(json.dumps(out))
"""


@pytest.mark.parametrize("guard", [True, False], ids=["guarded", "unguarded"])
def test_item_that_kills_its_worker_is_never_run_in_the_caller(tmp_path, guard):
    out, _ = run_script(tmp_path, SPECULATION_HEAD, SPECULATION_MAIN, guard=guard, args=["die", tmp_path / "pids"])
    if "skip" in out:
        pytest.skip(out["skip"])
    assert out["error"] == "WorkerLostError", out
    assert "item 15" in out["message"]


def _speculated_started(pids_file, caller_pid):
    """True once an item runs in a process other than the caller (the speculated one)."""
    if not pids_file.exists():
        return False
    return any(int(line.split()[0]) != caller_pid for line in pids_file.read_text().splitlines() if line.strip())


def test_ctrl_c_while_sampling_stops_speculated_items_and_leaves_no_processes(tmp_path):
    pids_file = tmp_path / "pids"
    path = tmp_path / "user_script.py"
    path.write_text(script_text(SPECULATION_HEAD, SPECULATION_MAIN, guard=True))
    proc = subprocess.Popen([sys.executable, str(path), "sleep", pids_file], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, cwd=str(tmp_path))
    try:
        parent = psutil.Process(proc.pid)
        for _ in range(600):  # wait (up to ~60 s under load) for the speculated item to start
            if _speculated_started(pids_file, proc.pid) or proc.poll() is not None:
                break
            psutil.wait_procs([parent], timeout=0.1)
        if proc.poll() is not None:
            out, err = proc.communicate()
            if "skip" in out:
                pytest.skip(out)
            pytest.fail(out + err)
        assert _speculated_started(pids_file, proc.pid), "no item was speculated"
        children = parent.children(recursive=True)
        proc.send_signal(signal.SIGINT)
        # The items sleep 60 s: exiting well before that means they were stopped.
        out, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert "interrupted" in out, err
    assert proc.returncode != 0
    _, alive = psutil.wait_procs(children, timeout=15)
    assert alive == []


def test_exit_after_an_error_does_not_wait_for_speculated_items(tmp_path):
    # The speculated last item sleeps 60 s; the script must end before (timeout 50 s).
    out, _ = run_script(tmp_path, SPECULATION_HEAD, SPECULATION_MAIN, args=["error", tmp_path / "pids"], timeout=50)
    if "skip" in out:
        pytest.skip(out["skip"])
    assert out["error"] == "item zero is bad"
    assert out["speculated"] is True


# --- 6. code run by exec() in a namespace of its own (not a module) ---------------------
EXEC_HEAD = """
import json
import amorsize_dask as ad

CELL = '''
class Rec:
    def __init__(self, v):
        self.v = v

class CellError(Exception):
    pass

def work(x):
    if x == 1999:
        raise CellError(x)
    return Rec(x)
'''
"""

EXEC_MAIN = """
ns = {"__name__": "notebook_cell"}  # a cell run by exec() in a fresh namespace
exec(CELL, ns)
out = {}
try:
    ad.map(ns["work"], range(2000), engine="processes", n_workers=2, chunksize=100)
except ns["CellError"] as exc:
    out["caught"] = exc.args[0]
results = ad.map(ns["work"], range(1999), engine="processes", n_workers=2, chunksize=100)
out["own_class"] = sum(type(r) is ns["Rec"] for r in results)
print(json.dumps(out))
"""


@pytest.mark.parametrize("guard", [True, False], ids=["guarded", "unguarded"])
def test_classes_of_an_exec_namespace_come_back_as_the_callers_own(tmp_path, guard):
    """A pool forked for the run (nothing sampled: the configuration fixed) sent results
    of a class it never received back as copies of it: 0 of 2,000 were ``ns["Rec"]``."""
    out, _ = run_script(tmp_path, EXEC_HEAD, EXEC_MAIN, guard=guard)
    assert out == {"caught": 1999, "own_class": 1999}, out


UNWRITABLE_HEAD = """
import json, os, sys
import dask  # a call with dask loaded is planned, and recorded (a short one done in its head is not)
import amorsize_dask as ad
"""

UNWRITABLE_MAIN = """
out = ad.map(abs, range(-50, 50), training_dir="/proc/not-a-dir")  # the line the warning names
print(json.dumps({"ok": out == [abs(x) for x in range(-50, 50)]}))
"""


def test_an_unwritable_training_dir_is_one_warning_at_the_scripts_line(tmp_path):
    """Printed once (a RuntimeWarning; no log line beside it in a script without logging
    set up), naming the script's own line, not the library's."""
    out, proc = run_script(tmp_path, UNWRITABLE_HEAD, UNWRITABLE_MAIN)
    assert out == {"ok": True}
    assert proc.stderr.count("cannot write to the training directory") == 1, proc.stderr
    assert "user_script.py" in proc.stderr and "learner.py" not in proc.stderr, proc.stderr


AT_EXIT_HEAD = """
import atexit, json, sys
import amorsize_dask as ad

def work(x):
    return sum(i * x for i in range(300))

def at_exit():
    out = {}
    for engine in ("auto", "processes", "threads"):
        out[engine] = ad.map(work, range(2000), engine=engine) == [work(x) for x in range(2000)]
    out["imap"] = list(ad.imap(work, range(500))) == [work(x) for x in range(500)]
    print(json.dumps(out), flush=True)
"""

AT_EXIT_MAIN = """
ad.map(work, range(2000), engine="processes")  # a pool is running when the exit begins
atexit.register(at_exit)
"""


def test_a_map_in_an_atexit_handler_runs_as_builtins_map_would(tmp_path):
    """Pools refuse new work once the interpreter exits ("cannot schedule new futures
    after interpreter shutdown"); ``Pool().map`` and ``builtins.map`` still work there."""
    out, proc = run_script(tmp_path, AT_EXIT_HEAD, AT_EXIT_MAIN)
    assert out == {"auto": True, "processes": True, "threads": True, "imap": True}
    assert proc.stderr.count("the interpreter is exiting") == 2, proc.stderr  # the engines asked for by name


CACHED_HEAD = """
import functools, json, sys, threading, time
from amorsize_dask.mapping import run_map

@functools.cache
def score(x):
    return sum(i * i for i in range(x % 50 + 200))

@functools.lru_cache(maxsize=128)
def fib(n):  # reads itself through the module's global: the cached wrapper
    return n if n < 2 else fib(n - 1) + fib(n - 2)
"""

CACHED_MAIN = """
threading.Thread(target=time.sleep, args=(60,), daemon=True).start()  # a heartbeat: no fork then
out = {}
for name, func in [("score", score), ("fib", fib)]:
    res = run_map(func, list(range(300)), engine=sys.argv[1], learn=False,
                  **({} if sys.argv[1] == "auto" else {"n_workers": 2, "chunksize": 50}))
    out[name] = [res.plan.engine, res.results == [func(x) for x in range(300)]]
from amorsize_dask.engines import shared_engine
out["start_method"] = shared_engine().last_start_method
print(json.dumps(out))
"""


@pytest.mark.parametrize("engine", ["processes", "auto"])
def test_a_functools_cache_function_runs_on_workers_that_never_imported_the_script(tmp_path, engine):
    """``@functools.cache`` on a script's function, with another thread alive (a heartbeat,
    a Jupyter kernel's): the pool's workers come from the forkserver, which never imports
    ``__main__``, and pickle sends a cached function by name: every chunk failed with
    ``AttributeError: Can't get attribute 'score' on <module '__main__'>``."""
    out, _ = run_script(tmp_path, CACHED_HEAD, CACHED_MAIN, force_processes=engine == "auto", args=[engine])
    assert out["start_method"] == "forkserver", out
    assert out["score"][1] and out["fib"][1], out
    if engine == "processes":  # auto may have computed every item while sampling (fib's are cached)
        assert out["score"][0] == out["fib"][0] == "processes", out


TRACEBACK_HEAD = """
import json, sys, threading, time, traceback
from amorsize_dask.mapping import run_map

def prepare(x):
    return x + 1

def parse(x):
    if x == 250:
        raise ValueError(f"bad record {x}")  # THE LINE THE USER NEEDS
    return x
"""

TRACEBACK_MAIN = """
if sys.argv[1] == "thread":
    threading.Thread(target=time.sleep, args=(60,), daemon=True).start()  # the forkserver's workers
run_map(prepare, list(range(300)), engine="processes", n_workers=2, chunksize=50, learn=False)  # starts the pool
try:
    run_map(parse, list(range(300)), engine="processes", n_workers=2, chunksize=50, learn=False)  # reuses it
except ValueError as exc:
    text = "".join(traceback.format_exception(exc))
print(json.dumps({"file": __file__ in text, "line": "THE LINE THE USER NEEDS" in text,
                  "dynamic": "<dynamic-code>" in text}))
"""


@pytest.mark.parametrize("case", ["warm pool", "thread"])
def test_a_worker_traceback_shows_the_scripts_file_and_line(tmp_path, case):
    """A function sent to running workers by value: its traceback named ``<dynamic-code>``
    with no source line (cloudpickle names every code object's file so); ``Pool`` (fork)
    and ``builtins.map`` show the script's file and the line that raised."""
    out, _ = run_script(tmp_path, TRACEBACK_HEAD, TRACEBACK_MAIN, args=[case.split()[0]])
    assert out == {"file": True, "line": True, "dynamic": False}, out

"""A call never runs a user module's body again: ``builtins.map`` does not.

1. A module that calls ``ad.map`` as it is imported (a table computed at import time, no
   ``__main__`` guard: it is not a script), its function and items defined there. Workers
   that import modules afresh (the forkserver's: set, or chosen because another thread
   runs beside the caller) imported it by name to find the function, ran its body again,
   and with it the map, whose workers did the same: 200 items of 5 ms took 22.6 s and left
   135 leaked semaphores, or ran until killed, with hundreds of processes (hunt 20). A
   forked worker finds the module half-imported, as the caller has it. Its code goes by
   value while its body runs, as ``__main__``'s does.
2. A module run by ``runpy.run_module`` (not in ``sys.modules``) whose function returns
   instances of its class: measuring the sample's results with ``pickle`` imported it by
   name, running its body a second time in the caller (hunt 20).
"""

import json
import textwrap

import pytest

from tests.helpers.scripts import run_script

TABLES = textwrap.dedent("""
    import json, os, sys, time
    import amorsize_dask as ad

    with open(os.environ["BODY_LOG"], "a") as log:  # a line per run of this body
        log.write(f"{os.getpid()}\\n")

    class Cell:
        def __init__(self, x):
            self.x = x

    def entry(cell):
        end = time.perf_counter() + 0.005
        while time.perf_counter() < end:
            pass
        return cell.x * cell.x

    TABLE = ad.map(entry, [Cell(x) for x in range(200)], engine=os.environ["ENGINE"])
""")

MAIN = """
import json, os, sys, threading
how, engine = sys.argv[1:3]
os.environ.update(BODY_LOG="body.log", ENGINE=engine, DASK_AMORSIZE__TRAINING_DIR="training")
if how == "forkserver":
    os.environ["DASK_AMORSIZE__START_METHOD"] = "forkserver"
stop = threading.Event()
if how == "thread":  # another thread alive (a Client, a watchdog): not fork
    threading.Thread(target=stop.wait, daemon=True).start()
import tables
stop.set()
print(json.dumps(tables.TABLE == [x * x for x in range(200)]))
"""


@pytest.mark.parametrize("how", ["forkserver", "thread"])
@pytest.mark.parametrize("engine", ["processes", "auto"])
def test_a_module_that_maps_as_it_is_imported_runs_its_body_once(tmp_path, how, engine):
    (tmp_path / "tables.py").write_text(TABLES)
    done = run_script(tmp_path, MAIN, how, engine, deadline=90, name="main.py")  # kills all it started
    assert done.returncode == 0, done.stderr[-3000:]
    assert json.loads(done.stdout.strip().splitlines()[-1]) is True
    assert len((tmp_path / "body.log").read_text().split()) == 1, (tmp_path / "body.log").read_text()
    assert "leaked" not in done.stderr, done.stderr[-3000:]


RUN_MODULE = """
import json, os, runpy, sys
import amorsize_dask as ad
os.environ["BODY_LOG"] = "body.log"
ns = runpy.run_module("points")  # as a tool runs a plug-in: not put in sys.modules
out = ad.map(ns["make"], range(300), engine=sys.argv[1], training_dir="training")
print(json.dumps([p.v for p in out] == list(range(300)) and all(isinstance(p, ns["Point"]) for p in out)))
"""

POINTS = textwrap.dedent("""
    import os, time

    with open(os.environ["BODY_LOG"], "a") as log:
        log.write(f"{os.getpid()}\\n")

    class Point:
        def __init__(self, v):
            self.v = v

    def make(x):
        end = time.perf_counter() + 0.001
        while time.perf_counter() < end:
            pass
        return Point(x)
""")


@pytest.mark.parametrize("engine", ["auto", "threads", "processes"])
def test_a_module_run_by_runpy_is_not_imported_by_the_call(tmp_path, engine):
    (tmp_path / "points.py").write_text(POINTS)
    done = run_script(tmp_path, RUN_MODULE, engine, deadline=90, name="main.py")
    assert done.returncode == 0, done.stderr[-3000:]
    assert json.loads(done.stdout.strip().splitlines()[-1]) is True
    assert len((tmp_path / "body.log").read_text().split()) == 1, (tmp_path / "body.log").read_text()

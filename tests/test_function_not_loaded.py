"""A function whose module the workers cannot import even by value: one served by an import
hook the script installed (pyximport's Cython modules, a plugin system's finder), which
a forkserver's worker lacks. ``Pool().map`` forks (the hook and the module come along)
and runs it; the process engine raised ``ModuleNotFoundError`` from the worker.

Under ``engine="auto"`` its chunks run here, as those of an unpicklable function do (the
plan says so); ``engine="processes"`` asked for is an error that says why and what to do.
"""

import os

import pytest

from .test_user_scripts import run_script

HEAD = '''
import importlib.abc, importlib.util, json, sys, threading, time
import amorsize_dask as ad

SOURCE = """
def work(x):
    s = 0
    for i in range(3000):
        s += i
    return x * 3
"""

class Served(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """A module from a string: only this process's import system knows it."""
    def find_spec(self, name, path=None, target=None):
        return importlib.util.spec_from_loader(name, self) if name == "served" else None
    def create_module(self, spec):
        return None
    def exec_module(self, module):
        exec(SOURCE, module.__dict__)

sys.meta_path.insert(0, Served())
import served
'''

MAIN = """
threading.Thread(target=time.sleep, args=(60,), daemon=True).start()  # fork is not safe: the forkserver
try:
    out = ad.map(served.work, range(600), engine=sys.argv[1]) == [3 * x for x in range(600)]
except Exception as exc:
    out = f"{type(exc).__name__}: {exc}"
print(json.dumps({"out": out}))
"""


@pytest.mark.parametrize("engine", ["auto", "processes"])
def test_a_function_the_workers_cannot_load(tmp_path, engine):
    env = {**os.environ, "DASK_AMORSIZE__TRAINING_DIR": str(tmp_path / "training")}
    out, _ = run_script(tmp_path, HEAD, MAIN, args=[engine], env=env, force_processes=engine == "auto")
    if engine == "auto":
        assert out == {"out": True}, out
    else:
        assert "could not be loaded in a worker process" in out["out"] and "engine='threads'" in out["out"], out

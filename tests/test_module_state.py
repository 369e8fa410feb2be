"""A function of an importable module runs with that module's values as the caller has
them now, on a process pool that was running before (forked earlier, or a forkserver's
workers that imported the module afresh): as ``builtins.map`` would. So does a script's
own function that calls into the module (1,999 of 2,000 results were old, in a notebook)."""

import os

import pytest

from .test_user_scripts import run_script

MODULE_HEAD = '''
import functools, json, os, sys, tempfile
import amorsize_dask as ad

folder = tempfile.mkdtemp(prefix="jobmod-", dir=os.getcwd())  # in the test's tmp_path
with open(os.path.join(folder, "jobmod.py"), "w") as fh:
    fh.write("""
FACTOR = 2
CONFIG = {"offset": 0}

def _scaled(x):
    return x * FACTOR

def work(x, extra=0):
    return _scaled(x) + CONFIG["offset"] + extra

class Scaler:
    def __call__(self, x):
        return _scaled(x) + CONFIG["offset"]

    def scale(self, x):
        return x * FACTOR
""")
sys.path.insert(0, folder)
import jobmod
'''

MODULE_MAIN = '''
items = list(range(400))
wrong = {}

def check(label, expected, func=jobmod.work):
    got = ad.map(func, items, engine="processes", n_workers=2, chunksize=50)
    wrong[label] = sum(a != b for a, b in zip(got, expected))

check("first", [2 * x for x in items])
jobmod.FACTOR = 5                       # read through another function of the module
check("factor changed", [5 * x for x in items])
jobmod.CONFIG["offset"] = 1             # a dict changed in place
check("dict changed in place", [5 * x + 1 for x in items])
jobmod.FACTOR = 2                       # back to a state the workers have seen before
check("factor back", [2 * x + 1 for x in items])
check("a partial", [2 * x + 1 + 3 for x in items], functools.partial(jobmod.work, extra=3))
jobmod.FACTOR = 3
check("a callable instance", [3 * x + 1 for x in items], jobmod.Scaler())
check("a bound method", [3 * x for x in items], jobmod.Scaler().scale)
from jobmod import _scaled

def through_the_module(x):              # a script's function: jobmod.work by name
    return jobmod.work(x) - jobmod.FACTOR

def through_an_import(x):               # jobmod's function imported into the script
    return _scaled(x)

jobmod.FACTOR = 4
check("a script's function calling the module", [4 * x + 1 - 4 for x in items], through_the_module)
check("a script's lambda calling the module", [4 * x + 1 for x in items], lambda x: jobmod.work(x))
jobmod.FACTOR = 6
check("a function imported from the module", [6 * x for x in items], through_an_import)
jobmod.FACTOR = 7
streamed = list(ad.imap(jobmod.work, items, engine="processes"))
wrong["imap"] = sum(a != 7 * x + 1 for a, x in zip(streamed, items))
print(json.dumps(wrong))
'''


@pytest.mark.parametrize("guard", [True, False], ids=["guarded", "unguarded"])
@pytest.mark.parametrize("start_method", ["auto", "forkserver"])
def test_a_module_function_runs_with_the_callers_module_values_on_a_running_pool(tmp_path, start_method, guard):
    env = {**os.environ, "DASK_AMORSIZE__START_METHOD": start_method}
    wrong, _ = run_script(tmp_path, MODULE_HEAD, MODULE_MAIN, guard=guard, env=env)
    assert all(n == 0 for n in wrong.values()), str(wrong)


EDITED_HEAD = '''
import json, os, sys, tempfile, threading, time
import amorsize_dask as ad

folder = tempfile.mkdtemp(prefix="editmod-", dir=os.getcwd())  # in the test's tmp_path
path = os.path.join(folder, "editmod.py")
with open(path, "w") as fh:
    fh.write("def _step(x):\\n    return x + 1\\n\\ndef work(x):\\n    return _step(x)\\n")
sys.path.insert(0, folder)
import editmod
'''

EDITED_MAIN = '''
items = list(range(3000))
first = ad.map(editmod.work, items, engine="processes")
time.sleep(0.02)
with open(path, "w") as fh:  # edited on disk; this process keeps the code it imported
    fh.write("def _step(x):\\n    return x + 1000\\n\\ndef work(x):\\n    return _step(x)\\n\\n# longer\\n")
os.utime(path, None)
expected = list(map(editmod.work, items))  # the code the caller holds: x + 1
got = ad.map(editmod.work, items, engine="processes")
import importlib
importlib.reload(editmod)  # now the caller runs the new code: so do the workers
reloaded = ad.map(editmod.work, items, engine="processes")
print(json.dumps({"first": first == expected, "old": sum(a == b for a, b in zip(got, expected)),
                  "new": sum(a == x + 1000 for a, x in zip(got, items)),
                  "reloaded": reloaded == [x + 1000 for x in items]}))
'''


@pytest.mark.parametrize("start_method", ["auto", "forkserver"])
def test_a_module_edited_on_disk_runs_as_the_caller_imported_it(tmp_path, start_method):
    """Without ``importlib.reload`` the caller runs the code it imported, as
    ``builtins.map`` does; workers that import the module afresh (a pool started for the
    new file that could not fork) ran the new code: 28-33 of 3,000 results old (the
    sample), the rest new. After a reload, the new code everywhere."""
    env = {**os.environ, "DASK_AMORSIZE__START_METHOD": start_method,
           "DASK_AMORSIZE__TRAINING_DIR": str(tmp_path / "training")}
    out, _ = run_script(tmp_path, EDITED_HEAD, EDITED_MAIN, env=env)
    assert out == {"first": True, "old": 3000, "new": 0, "reloaded": True}, out


EDITED_THROUGH_A_SCRIPT_MAIN = '''
items = list(range(3000))

def pipeline(x):  # the script's own function, calling the user's module
    return editmod.work(x) * 2

first = ad.map(pipeline, items, engine="processes")
time.sleep(0.02)
with open(path, "w") as fh:
    fh.write("def _step(x):\\n    return x + 1000\\n\\ndef work(x):\\n    return _step(x)\\n\\n# longer\\n")
os.utime(path, None)
expected = list(map(pipeline, items))  # not reloaded: the caller's code is (x + 1) * 2
got = ad.map(pipeline, items, engine="processes")
import importlib
importlib.reload(editmod)
reloaded = ad.map(pipeline, items, engine="processes")
print(json.dumps({"first": first == expected, "old": sum(a == b for a, b in zip(got, expected)),
                  "reloaded": reloaded == [(x + 1000) * 2 for x in items]}))
'''


@pytest.mark.parametrize("start_method", ["auto", "forkserver"])
def test_a_module_edited_on_disk_that_a_scripts_function_calls_runs_as_the_caller_has_it(tmp_path, start_method):
    """A notebook's ``pipeline`` calling ``helpers.clean``, the helper fixed on disk and
    reloaded (``%autoreload``): 1,999 of 2,000 results came from the workers' old helper.
    Before the reload, the caller's old code, as ``builtins.map``; after it, the new."""
    env = {**os.environ, "DASK_AMORSIZE__START_METHOD": start_method,
           "DASK_AMORSIZE__TRAINING_DIR": str(tmp_path / "training")}
    out, _ = run_script(tmp_path, EDITED_HEAD, EDITED_THROUGH_A_SCRIPT_MAIN, env=env)
    assert out == {"first": True, "old": 3000, "reloaded": True}, out


BUILTINS_ADDED_HEAD = '''
import builtins, json, textwrap
import amorsize_dask as ad

builtins.shorten_it = textwrap.shorten   # as IPython adds display() and get_ipython()

def work(x):
    return shorten_it("word " * x, width=12)
'''

BUILTINS_ADDED_MAIN = '''
items = list(range(300))
got = ad.map(work, items, engine="processes", n_workers=2, chunksize=30)
print(json.dumps({"same": got == [work(x) for x in items]}))
'''


def test_a_name_the_caller_added_to_builtins_reaches_workers_that_did_not_fork(tmp_path):
    """A notebook's function calling ``display()`` (IPython puts it in builtins) raised
    NameError once its job was large enough for processes: forkserver workers never had
    it (``Pool().map`` forks, and has it)."""
    env = {**os.environ, "DASK_AMORSIZE__START_METHOD": "forkserver",
           "DASK_AMORSIZE__TRAINING_DIR": str(tmp_path / "training")}
    out, _ = run_script(tmp_path, BUILTINS_ADDED_HEAD, BUILTINS_ADDED_MAIN, env=env)
    assert out == {"same": True}

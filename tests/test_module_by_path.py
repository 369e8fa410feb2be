"""A script's function from a module it loaded by path (``importlib.util.spec_from_file_location``,
the module not on ``sys.path``): a worker that imports modules afresh (the forkserver's,
when another thread runs beside the caller) cannot import it by name.

``Pool().map`` forks and runs it; the process engine raised ``ModuleNotFoundError: No
module named 'helpers'``. Such a module's functions, and the items of its classes, go to
the workers by value, as ``__main__``'s do.
"""

import os

import pytest

from .test_user_scripts import run_script

HELPERS = '''
from dataclasses import dataclass

SCALE = 3

@dataclass
class Point:
    x: int

def work(p):
    return Point(p.x * SCALE)
'''

HEAD = """
import importlib.util, json, sys, threading, time
import amorsize_dask as ad

spec = importlib.util.spec_from_file_location("helpers", "elsewhere/helpers.py")
helpers = importlib.util.module_from_spec(spec)
sys.modules["helpers"] = helpers
spec.loader.exec_module(helpers)
"""

MAIN = """
threading.Thread(target=time.sleep, args=(60,), daemon=True).start()  # fork is not safe: the forkserver
items = [helpers.Point(i) for i in range(3000)]
got = ad.map(helpers.work, items, engine=sys.argv[1])
print(json.dumps({"same": got == list(map(helpers.work, items)),
                  "classes": all(type(p) is helpers.Point for p in got)}))
"""


@pytest.mark.parametrize("engine", ["processes", "auto"])
def test_a_function_of_a_module_loaded_by_path_runs_on_workers_that_cannot_import_it(tmp_path, engine):
    (tmp_path / "elsewhere").mkdir()
    (tmp_path / "elsewhere" / "helpers.py").write_text(HELPERS)
    env = {**os.environ, "DASK_AMORSIZE__TRAINING_DIR": str(tmp_path / "training")}
    out, proc = run_script(tmp_path, HEAD, MAIN, args=[engine], env=env, force_processes=engine == "auto")
    assert out == {"same": True, "classes": True}, proc.stderr[-2000:]


DYNAMIC_HEAD = """
import importlib.util, json, sys, threading, time, types
import amorsize_dask as ad

dynmod = types.ModuleType("dynmod")  # a module made at run time: no file, no finder
exec("def work(x):\\n    return 2 * x\\n", dynmod.__dict__)
sys.modules["dynmod"] = dynmod

spec = importlib.util.spec_from_file_location("helpers", "elsewhere/helpers.py")
helpers = importlib.util.module_from_spec(spec)
sys.modules["helpers"] = helpers
spec.loader.exec_module(helpers)

def getx(p):  # names no module: only its items are the by-path module's
    return p.x + 1
"""

DYNAMIC_MAIN = """
threading.Thread(target=time.sleep, args=(60,), daemon=True).start()  # the forkserver
out = {"dynamic": ad.map(dynmod.work, range(500), engine="processes") == [2 * x for x in range(500)],
       "items": ad.map(getx, [helpers.Point(i) for i in range(500)], engine="processes") == list(range(1, 501))}
print(json.dumps(out))
"""


def test_a_module_made_at_run_time_and_items_of_a_by_path_class(tmp_path):
    """Hunt 17: a ``types.ModuleType`` module put in ``sys.modules`` went by name (the
    forkserver's workers: ModuleNotFoundError); items of a by-path module's class, mapped by
    a function that does not name the module, failed the same way."""
    (tmp_path / "elsewhere").mkdir()
    (tmp_path / "elsewhere" / "helpers.py").write_text(HELPERS)
    env = {**os.environ, "DASK_AMORSIZE__TRAINING_DIR": str(tmp_path / "training")}
    out, proc = run_script(tmp_path, DYNAMIC_HEAD, DYNAMIC_MAIN, env=env)
    assert out == {"dynamic": True, "items": True}, proc.stderr[-2000:]

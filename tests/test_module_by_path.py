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

"""stdlib ``pickle`` inside an item, of a class (or function) the script defines: it pickles
by name (``__main__.Point``), so the worker's ``__main__`` must hold the very class the
function uses.

Hunt 15: on a pool that was running (the second call), or from the forkserver (another
thread alive), ``pickle.dumps(Point(x))`` in the item raised ``PicklingError: Can't pickle
<class '__main__.Point'>: it's not the same object as __main__.Point`` (or "attribute
lookup Point on __main__ failed"); so did an item starting its own ``ProcessPoolExecutor``
over a script function. ``builtins.map``, ``Pool().map``, ``ProcessPoolExecutor().map``: ran.
Hunt 17: a class reached through a dict global, a default argument, a function in a list.
"""

import os

import pytest

from .test_user_scripts import run_script

HEAD = """
import json, pickle, sys
import amorsize_dask as ad

class Point:
    def __init__(self, x):
        self.x = x

def double(x):
    return 2 * x

KINDS = {"point": Point}
HELPERS = [double]

def work(x, cls=Point):
    s = 0
    for i in range(3000):
        s += i
    by_dict = pickle.loads(pickle.dumps(KINDS["point"](x))).x - x
    by_list = pickle.loads(pickle.dumps(HELPERS[0]))(x) - 2 * x
    return pickle.loads(pickle.dumps(cls(x))).x + pickle.loads(pickle.dumps(double))(x) + by_dict + by_list
"""

MAIN = """
out = []
for _ in range(2):  # the second call runs on the pool the first started
    try:
        out.append(ad.map(work, range(300), engine="processes") == [3 * x for x in range(300)])
    except Exception as exc:
        out.append(f"{type(exc).__name__}: {exc}"[:300])
print(json.dumps({"calls": out}))
"""


@pytest.mark.parametrize("start_method", ["auto", "forkserver"])
def test_stdlib_pickle_of_the_scripts_classes_in_an_item(tmp_path, start_method):
    env = {**os.environ, "DASK_AMORSIZE__TRAINING_DIR": str(tmp_path / "training"),
           "DASK_AMORSIZE__START_METHOD": start_method}
    out, _ = run_script(tmp_path, HEAD, MAIN, env=env)
    assert out == {"calls": [True, True]}, out

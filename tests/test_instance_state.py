"""Mapping a method of the user's object leaves the object as fast as it was.

CPython 3.11 keeps an instance's attributes inline until something asks for its
``__dict__``; from then on every attribute access on that instance is slower (a method
reading ``self.table`` 200 times per item: 40 -> 55 ms for 3,000 items, measured in a
script that called ``ad.map(index.score, ...)`` once, engine="serial"). The workload key
and the fork-copy estimate read the instance's state; they must read it without building
that dictionary. A script checks it with :func:`gc.get_referents`: the attributes' values
while they are inline, one dictionary once it was built.
"""

import sys

import pytest

from tests.test_user_scripts import run_script

pytestmark = pytest.mark.skipif(sys.implementation.name != "cpython" or sys.version_info < (3, 11),
                                reason="inline instance attributes are CPython 3.11+")

HEAD = """
import gc, json, sys
import amorsize_dask as ad

class Index:
    def __init__(self, n):
        self.table = {i: str(i) for i in range(n)}
        self.offset = 7
        self.name = "index"

    def score(self, x):
        return len(self.table[(x + self.offset) % len(self.table)])

    def __call__(self, x):
        return self.score(x)

def inline(obj):
    '''Are obj's attributes still inline (its __dict__ never built)?'''
    return len(gc.get_referents(obj)) == 4  # three values and the type; else [its dict, the type]

INDEX = Index(50_000)

def reads_the_global(x):
    return INDEX.score(x)
"""

MAIN = """
engine = sys.argv[1]
out = {}
for name in ("method", "instance", "global"):
    index = Index(50_000) if name != "global" else INDEX
    func = {"method": index.score, "instance": index, "global": reads_the_global}[name]
    results = ad.map(func, range(3000), engine=engine)
    out[name] = [results == [index.score(x) for x in range(3000)], inline(index)]
print(json.dumps(out))
"""


@pytest.mark.parametrize("engine", ["serial", "threads", "auto"])
def test_mapping_a_method_never_builds_the_instances_dict(tmp_path, engine):
    out, _ = run_script(tmp_path, HEAD, MAIN, args=[engine])
    assert out == {"method": [True, True], "instance": [True, True], "global": [True, True]}, out


def test_a_forked_pool_inherits_the_instance_without_building_its_dict(tmp_path):
    out, _ = run_script(tmp_path, HEAD, """
import os
from amorsize_dask.engines import shared_engine
index = Index(50_000)
# A first call in a fresh process forks its pool: nothing of the function is pickled.
results = ad.map(index.score, range(3000), engine="processes", n_workers=2)
print(json.dumps({"ok": results == [index.score(x) for x in range(3000)], "inline": inline(index),
                  "forked": shared_engine().last_start_method == "fork"}))
""")
    assert out["ok"]
    if out["forked"]:
        assert out["inline"], out

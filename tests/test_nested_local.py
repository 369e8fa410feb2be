"""``amorsize_dask`` called inside work it is running, or inside other pools, on one
machine: scripts run as ``__main__``, as users run them (hunt 13).
"""

from __future__ import annotations

import pytest

from tests.helpers.scripts import run_script

THREADS_IN_THREADS = """
import json, sys
import amorsize_dask as ad

def inner(x):
    return x + 1

def outer(x):
    if sys.argv[1] == "imap":
        return sum(ad.imap(inner, range(x, x + 10), engine="threads", n_workers=2, chunksize=5))
    return sum(ad.map(inner, range(x, x + 10), engine="threads", n_workers=2, chunksize=5))

if __name__ == "__main__":
    out = ad.map(outer, range(8), engine="threads", n_workers=2, chunksize=1, training_dir="training")
    print(json.dumps(out == [sum(range(x + 1, x + 11)) for x in range(8)]))
"""


@pytest.mark.parametrize("inner", ["map", "imap"])
def test_a_map_on_threads_inside_a_map_on_threads_does_not_deadlock(tmp_path, inner):
    """Both levels on pools of two threads: the inner map's chunks went to the pool whose
    threads all ran outer items waiting for them, for ever (a user's ThreadPoolExecutor
    outside: 0.6 s)."""
    done = run_script(tmp_path, THREADS_IN_THREADS, inner, deadline=60)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip().splitlines()[-1] == "true"


IMAP_IN_A_POOL_WORKER = """
import json, multiprocessing, warnings
import amorsize_dask as ad

def inner(x):
    return x * 2

def outer(n):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        out = list(ad.imap(inner, range(n), engine="processes", training_dir="training"))
    return out, [str(w.message)[:200] for w in caught]

if __name__ == "__main__":
    with multiprocessing.get_context("spawn").Pool(1) as pool:
        out, caught = pool.apply(outer, (30,))
    print(json.dumps({"same": out == [2 * x for x in range(30)], "warned": caught}))
"""


def test_imap_on_processes_in_a_daemonic_process_runs_as_map_does(tmp_path):
    """A ``Pool`` worker may not start processes: ``map(engine="processes")`` warns and runs
    on threads there; ``imap`` raised ``AssertionError: daemonic processes are not allowed
    to have children``."""
    done = run_script(tmp_path, IMAP_IN_A_POOL_WORKER, deadline=60)
    assert done.returncode == 0, done.stderr[-2000:]
    found = __import__("json").loads(done.stdout.strip().splitlines()[-1])
    assert found["same"], found
    assert any("processes" in w for w in found["warned"]), found


CALLERS_CONTEXT = """
import decimal, json, sys
import numpy as np
import amorsize_dask as ad

def root(x):
    return float(np.sqrt(x))

def third(x):
    return str(decimal.Decimal(1) / decimal.Decimal(x))

def outcome(call):
    try:
        return call()
    except Exception as exc:
        return type(exc).__name__

if __name__ == "__main__":
    mapper = {"map": ad.map, "imap": lambda f, xs, **kw: list(ad.imap(f, xs, **kw))}[sys.argv[1]]
    kw = dict(engine="threads", n_workers=2, chunksize=2, training_dir="training")
    found = {}
    with np.errstate(invalid="raise"):
        found["errstate"] = [outcome(lambda: list(map(root, [1.0, 4.0, -1.0]))),
                             outcome(lambda: mapper(root, [1.0, 4.0, -1.0], **kw))]
    with decimal.localcontext(prec=40):
        found["decimal"] = [list(map(third, [3, 7])), mapper(third, [3, 7], **kw)]
    print(json.dumps(found))
"""


@pytest.mark.parametrize("how", ["map", "imap"])
def test_threads_run_items_in_the_callers_context(tmp_path, how):
    """numpy's error state and decimal's context live in context variables: on threads the
    items ran without them (a negative square root gave nan where ``builtins.map`` raised
    ``FloatingPointError``; 40 digits came back as 28), as a plain ThreadPoolExecutor
    runs them; ``asyncio.to_thread`` copies the context, and so do these threads."""
    done = run_script(tmp_path, CALLERS_CONTEXT, how, deadline=60)
    assert done.returncode == 0, done.stderr[-2000:]
    found = __import__("json").loads(done.stdout.strip().splitlines()[-1])
    assert found["errstate"] == ["FloatingPointError", "FloatingPointError"], found
    assert found["decimal"][0] == found["decimal"][1], found


PROCESSES_IN_PROCESSES = """
import json, os
import amorsize_dask as ad

def inner(x):
    return x * x

def outer(x):
    return sum(ad.map(inner, range(x, x + 40), engine="processes", n_workers=2, chunksize=10,
                      training_dir="training"))

if __name__ == "__main__":
    out = ad.map(outer, range(4), engine="processes", n_workers=2, chunksize=1, training_dir="training")
    print(json.dumps(out == [sum(y * y for y in range(x, x + 40)) for x in range(4)]))
"""


def test_a_map_on_processes_inside_one_exits_without_leaking_its_pools(tmp_path):
    """Each outer worker keeps a pool of its own; at the script's exit the outer workers
    were killed, before their own exit could stop it: the resource tracker warned of 7
    leaked semaphores per outer worker (hunt 13's leftover). A script that exits cleanly
    prints nothing (a cached ``ProcessPoolExecutor`` in one hangs at exit here)."""
    import psutil

    done = run_script(tmp_path, PROCESSES_IN_PROCESSES, deadline=90)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip().splitlines()[-1] == "true"
    assert "leaked" not in done.stderr, done.stderr[-2000:]
    left = [p for p in psutil.process_iter(["cmdline"]) if str(tmp_path) in " ".join(p.info["cmdline"] or [])]
    assert left == [], left

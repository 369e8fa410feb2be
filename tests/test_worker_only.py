"""On a cluster ``func`` runs only on the workers (sampling included), as ``Client.map`` does.

A worker plugin sets a marker only in the workers' processes; a function that raises
without it must succeed whatever amorsize plans. Running in the client is an opt-in.
"""

import os
import subprocess
import sys

import dask
import pytest
from distributed import Client, WorkerPlugin

import amorsize_dask as ad
from tests.helpers.cluster import local_cluster

MARKER = "AMORSIZE_TEST_ON_A_WORKER"
DEADLINE = 120


class MarkWorkers(WorkerPlugin):
    """Sets the marker in each worker process (never in the client's)."""

    name = "mark-workers"

    def setup(self, worker):
        os.environ[MARKER] = "1"


def needs_worker(x):
    if os.environ.get(MARKER) != "1":
        raise RuntimeError(f"needs_worker({x!r}) ran outside a worker (pid {os.getpid()})")
    return x * 2


def spin_on_worker(x):
    acc = 0
    for i in range(2000):
        acc += i
    return needs_worker(x) + acc - acc


@pytest.fixture(scope="module")
def client():
    assert MARKER not in os.environ
    with local_cluster() as lc, Client(lc) as c:
        c.register_plugin(MarkWorkers())
        assert all(c.run(lambda: os.environ.get(MARKER) == "1").values())
        yield c


def test_the_marker_is_only_on_workers(client):
    with pytest.raises(RuntimeError, match="outside a worker"):
        needs_worker(1)


@pytest.mark.parametrize("n", [1, 5, 300, 3000])
@pytest.mark.parametrize("engine", ["auto", "dask"])
def test_func_runs_only_on_workers(client, tmp_path, engine, n):
    items = list(range(n))
    func = needs_worker if n < 1000 else spin_on_worker
    assert ad.map(func, items, client=client, engine=engine, training_dir=tmp_path) == [2 * x for x in items]
    # Again, now that the model has a measured run to plan from.
    assert ad.map(func, items, client=client, engine=engine, training_dir=tmp_path) == [2 * x for x in items]


def test_plan_of_a_tiny_job_is_one_task_on_one_worker(client, tmp_path):
    plan = ad.plan(needs_worker, range(5), client=client, training_dir=tmp_path)
    assert plan.engine == "dask" and plan.n_workers == 1
    assert plan.n_tasks <= 1
    assert "worker" in plan.explain()


def test_bag_of_a_sequence_runs_only_on_workers(client, tmp_path):
    b = ad.bag.map(needs_worker, range(40), client=client, training_dir=tmp_path)
    assert b.compute() == [2 * x for x in range(40)]


def test_in_process_plan_only_when_opted_in(client, tmp_path):
    plan = ad.plan(abs, range(5), client=client, training_dir=tmp_path, allow_local=True)
    assert plan.engine == "serial"
    assert "allow-local" in plan.explain() or "in-process" in plan.explain()
    with dask.config.set({"amorsize.cluster.allow-local": True}):
        assert ad.plan(abs, range(5), client=client, training_dir=tmp_path).engine == "serial"
    assert ad.plan(abs, range(5), client=client, training_dir=tmp_path).engine == "dask"


def test_allow_local_must_be_a_bool(client):
    with pytest.raises(TypeError, match="allow_local"):
        ad.map(abs, [1], client=client, allow_local="yes")


def test_failure_in_the_sampling_task_keeps_type_and_names_item(client, tmp_path):
    from tests.helpers.funcs import fail_on_seven

    with pytest.raises(ValueError, match="seven is bad") as info:
        ad.map(fail_on_seven, range(20), client=client, training_dir=tmp_path)
    notes = "\n".join(getattr(info.value, "__notes__", []))
    assert "item 7" in notes


SCRIPT = """
import os
from dataclasses import dataclass
from distributed import Client, LocalCluster, WorkerPlugin
import amorsize_dask as ad

class OnlyHere(Exception):
    pass

@dataclass
class Point:  # items and results of a class of the script's own, on the workers
    x: int

class Seven(Exception):
    pass

def shift(p):
    if os.environ.get("SCRIPT_MARKER") != "1":
        raise OnlyHere(f"ran in the client on {{p}}")
    if p.x == 7:
        raise Seven(p.x)
    return Point(p.x + 1)

class Mark(WorkerPlugin):
    def setup(self, worker):
        os.environ["SCRIPT_MARKER"] = "1"

def func(x):
    if os.environ.get("SCRIPT_MARKER") != "1":
        raise OnlyHere(f"ran in the client on {{x}}")
    return x + 1

def main():
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=":0") as lc, \\
            Client(lc) as c:
        c.register_plugin(Mark())
        assert ad.map(func, range(3)) == [1, 2, 3]
        assert ad.map(func, range(500), engine="dask") == list(range(1, 501))
        got = ad.map(shift, [Point(i) for i in range(10, 3010)], engine="dask")  # small items: packed
        assert got == [Point(i + 1) for i in range(10, 3010)] and all(type(p) is Point for p in got)
        try:
            ad.map(shift, [Point(i) for i in range(3000)], engine="dask")
        except Seven as exc:  # the script's own exception class, as Client.map raises it
            assert exc.args == (7,)
        else:
            raise AssertionError("Seven was not raised")
        print("ok")

{call}
"""


def test_script_with_worker_only_function(tmp_path):
    script = tmp_path / "user_script.py"
    script.write_text(SCRIPT.format(call='if __name__ == "__main__":\n    main()'))
    env = dict(os.environ, DASK_AMORSIZE__TRAINING_DIR=str(tmp_path / "training"))
    out = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=DEADLINE,
                         cwd=tmp_path, env=env)
    assert out.returncode == 0 and out.stdout.strip() == "ok", out.stderr[-3000:]

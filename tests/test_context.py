"""``target.context``: the distributed context a call runs in, told apart without importing distributed."""

import subprocess
import sys

from distributed import get_client

from amorsize_dask.target import context

DEADLINE = 60


def where_am_i(_):
    worker = context.current_worker()
    return worker.address if worker is not None else None, context.can_start_processes()


def inner(x):
    return x + 1


def wait_for_another_task(x):
    """Holds its worker's only thread, then waits for a task that needs a thread too."""
    with context.off_the_worker_pool():
        return get_client().submit(inner, x, pure=False).result(timeout=DEADLINE)


def test_outside_a_task_there_is_no_worker_and_the_client_is_the_default(client):
    assert context.current_worker() is None
    assert context.active_client() is client
    assert context.can_start_processes()


def test_inside_a_task_the_worker_is_known_and_may_not_start_processes(client):
    workers = set(client.scheduler_info()["workers"])
    found = client.gather(client.map(where_am_i, range(4), pure=False))
    assert {address for address, _ in found} <= workers and all(address for address, _ in found)
    assert [may_start for _, may_start in found] == [False] * 4   # a worker process is daemonic


def test_leaving_the_pool_lets_a_waiting_task_run_where_it_holds_every_thread(client):
    # two workers of one thread: both outer tasks hold both threads while they wait
    futures = client.map(wait_for_another_task, [10, 20], pure=False)
    assert [f.result(timeout=DEADLINE) for f in futures] == [11, 21]


def test_outside_a_task_leaving_the_pool_does_nothing():
    with context.off_the_worker_pool():
        inside = context.current_worker()
    assert inside is None


def test_no_distributed_import_when_nothing_imported_it():
    code = ("import sys; from amorsize_dask.target import context; "
            "print(context.active_client(), context.current_worker(), 'distributed' in sys.modules)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["None", "None", "False"]

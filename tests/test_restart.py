"""A map whose cluster is restarted under it (``client.restart()``) loses nothing: the
cancelled chunks are run again from the items the client still holds; a map whose
scheduler goes away raises a clear error naming what was lost. Never a hang.

Each scenario is a user's script run in its own process group under a hard deadline
(:func:`tests.helpers.scripts.run_script`): a hang fails the test with the script's
stacks (faulthandler) instead of blocking the suite.
"""

import textwrap

from amorsize_dask.errors import LostTasksError
from tests.helpers.scripts import run_script

# The scenario's own stack dump comes before the test's kill (see run_script).
DEADLINE = 120

# A user's script: a slow function class defined in it, a map in a thread on the
# cluster ``cluster()`` yields with ``disturb``, called once four items are done.
# Prints RESULTS ok / ERROR <type>: <message>.
SCENARIO = """
import contextlib, os, subprocess, sys, threading, time, traceback
from distributed import Client, LocalCluster
import amorsize_dask as ad


class SlowLogged:
    def __init__(self, path):
        self.path = path

    def __call__(self, x):
        time.sleep(0.05)
        with open(self.path, "a") as f:
            f.write(f"{{x}}\\n")
        return x * 3


def n_done(path):
    try:
        with open(path) as f:
            return len(f.read().split())
    except FileNotFoundError:
        return 0


{cluster}


def main():
    marker, items, outcome = sys.argv[1], list(range(40)), {{}}
    with cluster() as (c, disturb):

        def run():
            try:
                outcome["results"] = ad.map(SlowLogged(marker), items, client=c, engine="dask",
                                            n_workers=2, chunksize=2)
            except BaseException as exc:
                outcome["error"] = exc

        runner = threading.Thread(target=run)
        runner.start()
        try:
            while n_done(marker) < 4:
                assert runner.is_alive(), outcome
                time.sleep(0.01)  # polling a file the workers write; the test's deadline bounds it
            disturb()
        except BaseException:
            traceback.print_exc()
            sys.stderr.flush()
            raise
        runner.join()
        if "error" in outcome:
            print("ERROR", type(outcome["error"]).__name__ + ":", outcome["error"], flush=True)
        else:
            print("RESULTS", "ok" if outcome["results"] == [x * 3 for x in items] else outcome["results"],
                  flush=True)


if __name__ == "__main__":
    main()
"""

RESTART = """
@contextlib.contextmanager
def cluster():
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=":0") as lc, \\
            Client(lc) as c:
        yield c, c.restart
"""

# A real lost scheduler: its process is killed. (Closing an in-process scheduler under
# load can fail half-way in distributed itself, "Cannot change state of expiring
# Timeout", and leave it answering without workers: not a lost scheduler.) The client
# gives up reconnecting after its 5 s timeout; the workers after the 3 s connect timeout.
LOSE_SCHEDULER = """
@contextlib.contextmanager
def cluster():
    dask = os.path.join(os.path.dirname(sys.executable), "dask")
    env = dict(os.environ, DASK_DISTRIBUTED__COMM__TIMEOUTS__CONNECT="3s")
    common = ["--host", "127.0.0.1", "--dashboard-address", ":0", "--scheduler-file", "scheduler.json"]
    procs = [subprocess.Popen([dask, "scheduler", "--port", "0", *common], env=env)]
    try:
        procs += [subprocess.Popen([dask, "worker", "--nthreads", "1", "--no-nanny", *common], env=env)
                  for _ in range(2)]
        while not os.path.exists("scheduler.json"):
            assert procs[0].poll() is None, "the scheduler did not start"
            time.sleep(0.05)  # the scheduler writes it once it listens; the test's deadline bounds this
        c = Client(scheduler_file="scheduler.json", timeout="5s")
        c.wait_for_workers(2)
        yield c, procs[0].kill
        c.close(timeout=5)
    finally:
        for proc in procs:
            proc.kill()
            proc.wait()
"""


def _scenario(cluster: str) -> str:
    return SCENARIO.format(cluster=textwrap.dedent(cluster))


def test_restart_mid_map_recomputes_the_lost_chunks(tmp_path):
    out = run_script(tmp_path, _scenario(RESTART), str(tmp_path / "done.txt"), deadline=DEADLINE)
    assert "RESULTS ok" in out.stdout, out.stdout + out.stderr
    done = [int(x) for x in (tmp_path / "done.txt").read_text().split()]
    assert set(done) == set(range(40))


def test_lost_scheduler_mid_map_is_a_clear_error(tmp_path):
    out = run_script(tmp_path, _scenario(LOSE_SCHEDULER), str(tmp_path / "done.txt"), deadline=DEADLINE)
    assert "ERROR LostTasksError:" in out.stdout, out.stdout + out.stderr
    assert "were lost" in out.stdout and "SlowLogged" in out.stdout


def test_lost_tasks_error_names_the_lost_items():
    err = LostTasksError.of([(0, 2), (4, 6)], 10, abs, 4)
    text = str(err)
    assert "2 task(s)" in text and "10..11" in text and "14..15" in text and "builtins.abs" in text
    assert "wait_for_workers" in text

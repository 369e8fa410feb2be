"""A function that changes what every thread of a process shares — the working directory,
the environment — runs on no threads under ``engine="auto"``: two items at once would each
see the other's.

Hunt 15: an item that ``os.chdir``-ed into its own folder to read a relative path (and
back) returned another item's data for 298 of 300 items on threads, and left the script in
some item's folder; one that set ``os.environ["ITEM_ID"]`` before shelling out read others'
ids in 70-98 of 200. ``builtins.map``, ``Pool().map`` and ``ProcessPoolExecutor().map``: right.
"""

import os
import sys

import pytest

from amorsize_dask.planning.thread_safety import changes_process_state

from .test_user_scripts import run_script

HEAD = """
import json, os, subprocess, sys, time
import amorsize_dask as ad

BASE = os.path.abspath("items")  # the working directory is the test's tmp_path
if not os.path.exists(BASE):  # a worker importing this script finds them made
    for i in range(200):
        os.makedirs(os.path.join(BASE, str(i)))
        with open(os.path.join(BASE, str(i), "data.txt"), "w") as fh:
            fh.write(str(i))

def read_in_dir(i):
    old = os.getcwd()
    os.chdir(os.path.join(BASE, str(i)))
    try:
        time.sleep(0.001)  # some I/O
        with open("data.txt") as fh:
            return int(fh.read())
    finally:
        os.chdir(old)

def tool_with_env(i):
    os.environ["ITEM_ID"] = str(i)
    return int(subprocess.run(["sh", "-c", "sleep 0.002; echo $ITEM_ID"], capture_output=True, text=True).stdout)
"""

MAIN = """
func = globals()[sys.argv[1]]
start = os.getcwd()
runs = [ad.map(func, range(200)) == list(range(200)) for _ in range(2)]
print(json.dumps({"right": runs, "cwd kept": os.getcwd() == start}))
"""


@pytest.mark.parametrize("func", ["read_in_dir", "tool_with_env"])
def test_a_function_changing_process_wide_state_gives_builtins_maps_results(tmp_path, func):
    env = {**os.environ, "DASK_AMORSIZE__TRAINING_DIR": str(tmp_path / "training")}
    out, _ = run_script(tmp_path, HEAD, MAIN, args=[func], env=env, timeout=180)
    assert out == {"right": [True, True], "cwd kept": True}, out


TIMEOUTS = """
import json, signal, sys, time
import amorsize_dask as ad

class Timeout(Exception):
    pass

def on_alarm(signum, frame):
    raise Timeout()

signal.signal(signal.SIGALRM, on_alarm)  # the script's, once

def with_timeout(x):  # a per-item time limit: every 10th item runs past it
    signal.setitimer(signal.ITIMER_REAL, 0.05)
    try:
        time.sleep(0.2 if x % 10 == 5 else 0.002)
        return x
    except Timeout:
        return -1
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)

if __name__ == "__main__":
    expected = [-1 if x % 10 == 5 else x for x in range(int(sys.argv[1]))]
    print(json.dumps({"right": [ad.map(with_timeout, range(int(sys.argv[1]))) == expected for _ in range(2)]}))
"""


@pytest.mark.parametrize("n", [20, 200])
def test_a_per_item_time_limit_by_signal_alarm_gives_builtins_maps_results(tmp_path, n):
    """A process has one alarm timer, and its signal goes to the main thread: on threads, an
    item's ``setitimer(0)`` cancelled another's limit (items 5, 15, ... came back as values,
    not -1), or the alarm raised the user's exception out of the map; the probe's two
    threads did the same on the way to processes (hunt 21). ``builtins.map``, ``Pool().map``
    (fork): right."""
    env = {**os.environ, "DASK_AMORSIZE__TRAINING_DIR": str(tmp_path / "training")}
    out, _ = run_script(tmp_path, TIMEOUTS, "", guard=False, args=[n], env=env, timeout=180)
    assert out == {"right": [True, True]}, out


SIGNALLED = """
import json, os, signal, time
import amorsize_dask as ad

def signalled(x):  # as a timer's signal with no handler in this process ends it
    if x == 7:
        os.kill(os.getpid(), signal.SIGUSR1)
        time.sleep(1)
    return x

if __name__ == "__main__":
    os.environ["DASK_AMORSIZE__START_METHOD"] = "fork"
    try:
        ad.map(signalled, range(20), engine="processes", n_workers=2, chunksize=5)
        print(json.dumps({"error": None}))
    except ad.errors.WorkerLostError as exc:
        print(json.dumps({"error": str(exc)}))
"""


def test_a_worker_killed_by_a_signal_is_said_so(tmp_path):
    """A handler the script set in its main block is not a forkserver worker's: a timer's
    SIGALRM ended the worker, and the error blamed a segfault, os._exit or memory (hunt
    21). It names the signal, and where a handler must be set. (Here a signal with no
    handler anywhere, on fork: a forkserver's worker's status can read 255, unknown.)"""
    env = {**os.environ, "DASK_AMORSIZE__TRAINING_DIR": str(tmp_path / "training")}
    out, _ = run_script(tmp_path, SIGNALLED, "", guard=False, env=env, timeout=180)
    assert "item 7" in out["error"] and "SIGUSR1" in out["error"] and "handler" in out["error"], out


def _chdir_and_back(d):
    old = os.getcwd()
    os.chdir(d)
    os.chdir(old)


def _sets_env(k):
    os.environ[k] = "1"


def _pops_env(k):
    return os.environ.pop(k, None)


def _reads_env(k):
    return os.environ.get(k), os.environ[k], os.getenv(k)


def _names_them_in_strings(k):
    return {"chdir": k, "environ": "umask"}, f"setlocale {k}"


def _calls_a_changer(d):
    return _chdir_and_back(d)


from os import environ as ENV  # noqa: E402

from .helpers import funcs  # noqa: E402


def _alias(k):
    ENV[k] = "1"


def _local_alias(k):
    env = os.environ
    env[k] = "1"


def _in_place_or(k):
    os.environ |= {k: "1"}


def _setattr_stdout(buf):
    setattr(sys, "stdout", buf)


def _imports_in_the_function(d):
    import os as system

    system.chdir(d)


def _imports_the_name_in_the_function(d):
    from os import chdir

    chdir(d)


def _calls_another_modules_helper(x):
    funcs.set_env_item(x)


class _Remote:
    def chdir(self, d):
        return d


_REMOTE = _Remote()


def _own_objects_chdir(d):
    return _REMOTE.chdir(d)


def _a_locale_query(x):
    import locale

    return locale.setlocale(locale.LC_ALL), x


def _a_wsgi_environ(request):
    request.environ["x"] = 1


def _a_subprocess_env(x):
    import subprocess

    return subprocess.run(["true"], env=dict(os.environ, X=str(x)))


def test_aliases_and_other_ways_of_changing_it_are_found():
    """Hunt 17: each of these ran on threads (198 of 200 results wrong; ``sys.stdout`` left
    pointing at an item's buffer)."""
    for func in (_alias, _local_alias, _in_place_or, _calls_another_modules_helper):
        assert changes_process_state(func) == "the environment (os.environ)", func
    assert changes_process_state(_setattr_stdout) == "sys.stdout"
    assert "working directory" in changes_process_state(_imports_in_the_function)
    assert "working directory" in changes_process_state(_imports_the_name_in_the_function)


def test_what_is_not_the_process_state_keeps_threads():
    """Hunt 17: these lost threads (I/O 3x slower): a method ``chdir`` of the user's own
    object (an SFTP client), a locale query, a WSGI request's ``environ``, a subprocess's
    ``env=``."""
    for func in (_own_objects_chdir, _a_locale_query, _a_wsgi_environ, _a_subprocess_env):
        assert changes_process_state(func) is None, (func, changes_process_state(func))


def test_what_a_function_changes_is_read_from_its_code():
    assert "working directory" in changes_process_state(_chdir_and_back)
    assert "environment" in changes_process_state(_sets_env)
    assert "environment" in changes_process_state(_pops_env)
    assert "working directory" in changes_process_state(_calls_a_changer)  # a function of its module it calls
    assert changes_process_state(_reads_env) is None
    assert changes_process_state(_names_them_in_strings) is None
    assert changes_process_state(len) is None

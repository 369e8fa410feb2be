"""Process-wide settings a script changes between two calls reach the workers of the pool
that was running, as they reach a pool started after the change (``Pool().map``,
``ProcessPoolExecutor().map``) and ``builtins.map``: the umask, resource limits, the
locale, the nice value. Hunt 15: after ``os.umask(0o077)`` the reused pool's files were
still created world-readable (0o644)."""

import os

import pytest

from .test_user_scripts import run_script

HEAD = """
import json, locale, os, resource, stat, sys
import amorsize_dask as ad

FOLDER = os.path.abspath(".")  # the test's tmp_path (the working directory)

def settings(x):
    path = os.path.join(FOLDER, f"f-{os.getpid()}-{x}")
    with open(path, "w") as fh:
        fh.write("secret")
    mode = oct(stat.S_IMODE(os.stat(path).st_mode))
    os.remove(path)
    return (mode, resource.getrlimit(resource.RLIMIT_NOFILE)[0], locale.setlocale(locale.LC_CTYPE), os.nice(0))
"""

MAIN = """
items = list(range(400))
first = set(ad.map(settings, items, engine="processes"))  # the pool starts
os.umask(0o077)
soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
resource.setrlimit(resource.RLIMIT_NOFILE, (min(soft, 512), hard))
try:
    locale.setlocale(locale.LC_ALL, "C")
except locale.Error:
    pass
os.nice(3)
print(json.dumps({"first": sorted(map(list, first)),
                  "workers": sorted(map(list, set(ad.map(settings, items, engine="processes")))),
                  "stream": sorted(map(list, set(ad.imap(settings, items, engine="processes")))),
                  "here": sorted(map(list, set(map(settings, items))))}))
"""


@pytest.mark.parametrize("start_method", ["auto", "forkserver"])
def test_settings_changed_between_calls_reach_the_running_pools_workers(tmp_path, start_method):
    env = {**os.environ, "DASK_AMORSIZE__TRAINING_DIR": str(tmp_path / "training"),
           "DASK_AMORSIZE__START_METHOD": start_method}
    out, _ = run_script(tmp_path, HEAD, MAIN, env=env)
    assert len(out["here"]) == 1 and out["here"][0][0] == "0o600", out
    assert out["workers"] == out["stream"] == out["here"], out

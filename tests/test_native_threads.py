"""Functions whose own native code runs threads (OpenMP: numba ``parallel=True``, torch,
scikit-learn), run as users run them: a script, in a fresh process.

GNU OpenMP keeps a pool of threads; a process forked after it ran has that pool's state
and none of its threads, and its first parallel region waits for them for ever (hunt 12:
torch and numba scripts hung or crashed with ``WorkerLostError``; ``Pool().map`` hangs
too, ``builtins.map`` runs). The library compiled here stands in for them.
"""

from __future__ import annotations

import json
import shutil
import subprocess

import pytest

from tests.helpers.scripts import run_script

OPENMP_SOURCE = """
double spin(long n) {
    double total = 0;
    #pragma omp parallel for reduction(+:total)
    for (long i = 0; i < n; i++) total += (double)(i % 7) * 0.5;
    return total;
}
"""

SCRIPT = """
import ctypes, json, os, sys
import amorsize_dask as ad

LIBRARY = os.path.abspath("libspin.so")
os.environ.pop("OMP_NUM_THREADS", None)  # as a user's shell has it (a LocalCluster in the tests' process sets it)

def spin(n):
    lib = ctypes.CDLL(LIBRARY)
    lib.spin.restype, lib.spin.argtypes = ctypes.c_double, [ctypes.c_long]
    return lib.spin(n)

def main():
    spin(10)  # the OpenMP pool runs: its threads exist from now on
    items = [200_000 + i for i in range(40)]
    expected = [spin(n) for n in items]
    out = ad.map(spin, items, engine=sys.argv[1], training_dir="training")
    print(json.dumps({"same": out == expected}))

if __name__ == "__main__":
    main()
"""


@pytest.fixture(scope="module")
def openmp_library(tmp_path_factory):
    gcc = shutil.which("gcc")
    if gcc is None:
        pytest.skip("needs gcc to build an OpenMP library")
    folder = tmp_path_factory.mktemp("openmp")
    (folder / "spin.c").write_text(OPENMP_SOURCE)
    built = subprocess.run([gcc, "-O1", "-fopenmp", "-shared", "-fPIC", "spin.c", "-o", "libspin.so"],
                           cwd=folder, capture_output=True, text=True)
    if built.returncode != 0:
        pytest.skip(f"gcc could not build an OpenMP library: {built.stderr[-300:]}")
    return folder / "libspin.so"


@pytest.mark.parametrize("engine", ["processes", "auto"])
def test_a_pool_started_after_openmp_ran_does_not_hang(tmp_path, openmp_library, engine):
    shutil.copy(openmp_library, tmp_path / "libspin.so")
    done = run_script(tmp_path, SCRIPT, engine, deadline=60)
    assert done.returncode == 0, done.stderr[-2000:]
    assert '{"same": true}' in done.stdout


PLAN_SCRIPT = SCRIPT.replace('''    out = ad.map(spin, items, engine=sys.argv[1], training_dir="training")
    print(json.dumps({"same": out == expected}))''', '''    plans = [ad.plan(spin, [30_000_000] * 30, training_dir=f"training{i}") for i in range(2)]
    print(json.dumps({"engines": [p.engine for p in plans], "explain": plans[0].explain()}))''')


def test_a_function_that_keeps_the_cores_busy_itself_runs_serially(tmp_path, openmp_library):
    """Its OpenMP threads already use both cores: workers beside each other only share
    them (hunt 12: BLAS-threaded numpy and torch ran on processes, 1.05-18x serial; the
    sample timed the calling thread's CPU alone and saw one core). Two first plans, one of
    them serial: on a loaded machine the OpenMP thread, queued behind other processes, may
    leave a one-item sample reading less than a core."""
    shutil.copy(openmp_library, tmp_path / "libspin.so")
    done = run_script(tmp_path, PLAN_SCRIPT, "auto", deadline=60)
    assert done.returncode == 0, done.stderr[-2000:]
    found = json.loads(done.stdout.strip().splitlines()[-1])
    assert "serial" in found["engines"], found["explain"]

"""``ad.map`` from several threads at once: every call gives its own correct results
(issue 10, case 9), including while the first calibration of this machine happens."""

import os
import subprocess
import sys
import textwrap

SCRIPT = """
import logging, os, sys, threading, time
import amorsize_dask as ad

def spin(x):
    end = time.perf_counter() + 1e-3
    while time.perf_counter() < end:
        pass
    return x * 3 + 1

def slow(x):
    time.sleep(0.005)
    return -x

class FirstResult:
    # a progress stream: the first write means the run has results back from its workers
    def __init__(self):
        self.event = threading.Event()
    def write(self, text):
        done = text.strip("\\r\\n ").split("/")[0]
        if done.isdigit() and int(done) > 0:
            self.event.set()
    def flush(self):
        pass

class Count(logging.Handler):
    def __init__(self):
        super().__init__()
        self.measured = 0
    def emit(self, record):
        self.measured += record.getMessage().startswith("measured overheads")

def eight_at_once(train):
    count = Count()
    logging.getLogger("amorsize_dask").addHandler(count)
    logging.getLogger("amorsize_dask").setLevel(logging.INFO)
    out, errors = [None] * 8, []
    barrier = threading.Barrier(8)
    def call(i):
        items = list(range(1000 * i, 1000 * i + 250))
        barrier.wait()
        try:
            out[i] = ad.map(spin, items, training_dir=train)
        except BaseException as exc:
            errors.append(f"thread {i}: {exc!r}")
    threads = [threading.Thread(target=call, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    for i in range(8):
        assert out[i] == [spin(x) for x in range(1000 * i, 1000 * i + 250)], i
    assert len(ad.TrainingStore(train).records()) == 8
    from amorsize_dask.planning import overheads
    assert overheads.join_background(120)   # measured after the calls, never during them
    assert count.measured == 1, count.measured  # once, whichever call asked first

def calibration_beside_a_running_pool(train):
    # A runs on the process pool; B's auto call measures this machine's overheads meanwhile.
    stream, result, errors = FirstResult(), [], []
    def a():
        try:
            result.extend(ad.map(slow, range(300), engine="processes", n_workers=2, chunksize=1,
                                 training_dir=train, progress=stream))
        except BaseException as exc:
            errors.append(repr(exc))
            stream.event.set()
    t = threading.Thread(target=a, daemon=True)
    t.start()
    assert stream.event.wait(120)
    b = ad.map(spin, range(300), training_dir=train)
    t.join(120)
    if t.is_alive():  # its pool was shut down under it: it waits for ever
        print("A never finished", flush=True)
        os._exit(1)
    assert not errors, errors
    assert result == [-x for x in range(300)]
    assert b == [spin(x) for x in range(300)]

if __name__ == "__main__":
    globals()[sys.argv[1]](sys.argv[2])
    print("ok")
"""


def _run(tmp_path, case: str):
    script = tmp_path / "user.py"
    script.write_text(textwrap.dedent(SCRIPT))
    env = dict(os.environ, XDG_CACHE_HOME=str(tmp_path / "cache"))  # not calibrated yet
    out = subprocess.run([sys.executable, str(script), case, str(tmp_path / "train")], capture_output=True,
                         text=True, timeout=300, cwd=tmp_path, env=env)
    assert out.returncode == 0 and out.stdout.strip() == "ok", out.stdout + out.stderr


def test_eight_threads_at_once_with_the_first_calibration(tmp_path):
    _run(tmp_path, "eight_at_once")


def test_first_calibration_leaves_a_pool_in_use_alone(tmp_path):
    _run(tmp_path, "calibration_beside_a_running_pool")

"""The process engine leaves nothing running: after errors, Ctrl-C, or exit."""

import os
import signal
import subprocess
import sys
import textwrap
import time

import psutil


def _alive(pids):
    out = []
    for pid in pids:
        try:
            p = psutil.Process(pid)
            if p.status() != psutil.STATUS_ZOMBIE:
                out.append(pid)
        except psutil.NoSuchProcess:
            pass
    return out


def _wait_gone(pids, timeout=15.0):
    deadline = time.monotonic() + timeout
    while _alive(pids) and time.monotonic() < deadline:
        time.sleep(0.05)
    return _alive(pids)


SCRIPT = textwrap.dedent(
    """
    import os, sys, time
    import amorsize_dask as ad

    PIDS = sys.argv[1]

    def work(x):
        with open(PIDS, "a") as f:
            f.write(f"{os.getpid()}\\n")
        if sys.argv[2] == "error" and x == 5:
            raise ValueError("boom")
        time.sleep(0.2)
        return x

    if __name__ == "__main__":
        try:
            ad.map(work, range(60), engine="processes", n_workers=2, chunksize=1)
        except ValueError:
            print("caught", flush=True)
        except KeyboardInterrupt:
            print("interrupted", flush=True)
            raise
    """
)


def _run_script(tmp_path, mode):
    script = tmp_path / "script.py"
    script.write_text(SCRIPT)
    pids_file = tmp_path / "pids.txt"
    proc = subprocess.Popen(
        [sys.executable, str(script), str(pids_file), mode],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=os.getcwd(),
    )
    return proc, pids_file


def _worker_pids(pids_file):
    if not pids_file.exists():
        return set()
    return {int(line) for line in pids_file.read_text().split() if line.strip()}


def test_no_orphans_after_error_and_exit(tmp_path):
    proc, pids_file = _run_script(tmp_path, "error")
    out, err = proc.communicate(timeout=60)
    assert "caught" in out, err
    pids = _worker_pids(pids_file)
    assert pids and proc.pid not in pids
    assert _wait_gone(pids) == []


def test_ctrl_c_returns_promptly_and_leaves_no_processes(tmp_path):
    proc, pids_file = _run_script(tmp_path, "sleep")
    deadline = time.monotonic() + 60
    while len(_worker_pids(pids_file)) < 2 and time.monotonic() < deadline:
        time.sleep(0.02)
    pids = _worker_pids(pids_file)
    assert pids, "workers never started"
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=30)
    assert "interrupted" in out, err
    assert len(pids_file.read_text().split()) < 60  # it did not wait: the rest never started
    assert proc.returncode != 0
    assert _wait_gone(pids) == []


SLIM_SCRIPT = textwrap.dedent("""
    import json, sys
    import pandas  # the user's script imports what it likes; its workers must not pay for it
    import amorsize_dask as ad

    def loaded(_):
        import sys
        return sorted(m for m in ("dask", "distributed", "pandas", "numpy") if m in sys.modules)

    print(json.dumps(ad.map(loaded, range(4), engine="processes", n_workers=2, chunksize=1)))
""")


def test_workers_import_neither_dask_nor_the_users_main_module(tmp_path):
    script = tmp_path / "slim.py"
    script.write_text(SLIM_SCRIPT)
    env = {**os.environ, "DASK_AMORSIZE__TRAINING_DIR": str(tmp_path / "training")}
    done = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=120,
                          env=env, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    import json

    assert json.loads(done.stdout.strip().splitlines()[-1]) == [[], [], [], []]


def test_forkserver_preloads_the_public_worker_module():
    from amorsize_dask.engines import process_worker
    from amorsize_dask.engines.worker_start import forkserver_preload

    assert forkserver_preload(process_worker.__name__) == ["amorsize_dask.engines.process_worker"]
    assert callable(process_worker.run_pickled_chunk) and callable(process_worker.initialize_worker)

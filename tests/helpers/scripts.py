"""Run a user's script in its own process group under a hard deadline.

``subprocess.run(..., timeout=...)`` kills only the script: its children (a
LocalCluster's nannies and workers) keep the output pipes open, and reading them then
blocks forever. Here the whole group is killed, and the script dumps its threads' stacks
(faulthandler) shortly before, so a hang fails with where it hung.
"""

import os
import signal
import subprocess
import sys

import pytest

# Seconds between the script's stack dump and the kill of its process group.
DUMP_MARGIN = 15


def run_script(tmp_path, code: str, *args: str, deadline: float = 120, name: str = "scenario.py"):
    """``subprocess.CompletedProcess`` of ``python tmp_path/name *args`` (text output);
    fails the test, with the script's stacks and output, if it runs past ``deadline``."""
    script = tmp_path / name
    dump_after = max(1, int(deadline - DUMP_MARGIN))
    script.write_text(f"import faulthandler\nfaulthandler.dump_traceback_later({dump_after}, exit=True)\n{code}")
    proc = subprocess.Popen([sys.executable, str(script), *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, start_new_session=True, cwd=str(tmp_path))
    try:
        out, err = proc.communicate(timeout=deadline)
    except subprocess.TimeoutExpired:
        _kill_group(proc.pid)
        out, err = proc.communicate()
        pytest.fail(f"{name} ran past its {deadline} s deadline and was killed\n--- stdout\n{out}\n--- stderr\n{err}")
    finally:
        _kill_group(proc.pid)  # nothing of it outlives the test (workers left by a crash)
    if proc.returncode != 0 and "Timeout (" in err:
        pytest.fail(f"{name} hung (stacks dumped after {dump_after} s)\n--- stdout\n{out}\n--- stderr\n{err}")
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


def _kill_group(pgid: int) -> None:
    try:
        os.killpg(pgid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass

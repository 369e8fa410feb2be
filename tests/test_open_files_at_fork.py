"""A script's file open for writing, that the sample's items wrote to in the caller, is
flushed before the pool forks: each forked worker would otherwise hold a copy of its
unwritten buffer and write it again with its own lines.

Hunt 15: items appending to a module-level ``OUT = open(..., "a")`` left 3,020 lines for
2,964 items, lines 0-7 (the sample's) several times; ``builtins.map``: each once.
``Pool().map`` and ``ProcessPoolExecutor().map`` lose what their workers had not flushed
(their exit does not flush), as ours do: no line may come twice.
"""

import collections
import os

from .test_user_scripts import run_script

# A file open for appending in a module's globals, and a function writing to it.
WRITER = """
import sys

OUT = open(sys.argv[1], "a")

def work(x):
    s = 0
    for i in range(3000):
        s += i
    OUT.write(f"{x}\\n")
    return x
"""

HEAD = """
import json
import amorsize_dask as ad
""" + WRITER

MAIN = """
ad.map(work, range(3000), engine=sys.argv[2])
OUT.flush()
print(json.dumps({"done": True}))
"""


def test_no_line_the_caller_buffered_is_written_again_by_forked_workers(tmp_path):
    out_path = tmp_path / "out.txt"
    env = {**os.environ, "DASK_AMORSIZE__TRAINING_DIR": str(tmp_path / "training")}
    run_script(tmp_path, HEAD, MAIN, args=[out_path, "auto"], env=env, force_processes=True)
    counts = collections.Counter(out_path.read_text().split())
    assert len(counts) > 0 and max(counts.values()) == 1, [line for line, n in counts.items() if n > 1][:20]


MODULE_HEAD = """
import json, sys
import amorsize_dask as ad
import outmod
"""

MODULE_MAIN = """
for i in range(100):
    outmod.OUT.write(f"before-{i}\\n")  # in the buffer as the pool forks
ad.map(outmod.work, range(10000), engine="processes")
outmod.OUT.flush()
print(json.dumps({"done": True}))
"""


def test_a_user_modules_open_file_is_flushed_before_the_fork_too(tmp_path):
    """Lines a user module's global file held unwritten as the pool forked came out once
    per worker that wrote to it (``Pool()`` forked then does the same)."""
    (tmp_path / "outmod.py").write_text(WRITER)
    out_path = tmp_path / "out.txt"
    env = {**os.environ, "DASK_AMORSIZE__TRAINING_DIR": str(tmp_path / "training")}
    run_script(tmp_path, MODULE_HEAD, MODULE_MAIN, args=[out_path], env=env)
    counts = collections.Counter(out_path.read_text().split())
    assert len(counts) > 0 and max(counts.values()) == 1, [line for line, n in counts.items() if n > 1][:20]

"""The scheduler plugin's first look at a large training directory, done by another process.

Parsing records is pure Python: on a thread of the scheduler's process it holds the GIL,
and every GIL release of the scheduler's event loop (a socket call, a ``/proc`` read of
distributed's system monitor) then waits up to the switch interval for it to come back
(measured: the loop held 57-140 ms while 20,000 records were parsed on a thread, ~1 s with
200,000; tests/test_plugin_loop.py). So when the directory is large, a child interpreter
(``python -c``: it never imports the scheduler's ``__main__``) parses it and writes the
host's snapshot of the index (:mod:`amorsize_dask.learning.snapshot`), after the upkeep
a writer's first append does (sealing, pruning past the budget); the plugin's
learner then resumes from that snapshot and reads only what was appended since.

>>> index_elsewhere_if_large(None, "/nonexistent/training") is False
True
"""

from __future__ import annotations

import logging
import subprocess
import sys

from ..learning.compaction import segment_bytes
from ..learning.reader import SEGMENTS

__all__ = ["LARGE_BYTES", "index_elsewhere_if_large"]

logger = logging.getLogger("amorsize_dask")

# Segment bytes past which the first index is built in a child: ~3,000 records of ~660
# bytes (bench/store.py's records), which a thread parses in ~0.1 s (bench --store:
# 12-30 us per record) — a loop held longer than the 20 ms bound of issue 11 (case 6).
LARGE_BYTES = 2 << 20
# The child's deadline: 1,000,000 records parse in ~30 s (bench --store); past this the
# learner indexes in-process, as without a child.
CHILD_SECONDS = 600.0

# The child is background work: on a machine with fewer free cores than runnable
# threads it yields the CPU to the scheduler's (nice 10: a tenth of a nice-0 share).
CHILD_NICENESS = 10
# The child first does the upkeep a writer's first append does (sealing others' settled
# segments, pruning past amorsize.store.max-bytes), which would otherwise be the plugin's
# first record's, with a full parse in the scheduler's process.
_CHILD = """
import os, sys
getattr(os, "nice", lambda n: 0)(CHILD_NICENESS)  # not on Windows
from amorsize_dask.learning import snapshot
from amorsize_dask.learning.learner import Learner
from amorsize_dask.learning.store import TrainingStore
TrainingStore(sys.argv[1]).upkeep()
learner = Learner(sys.argv[1])
learner.refresh()
sys.exit(0 if snapshot.save(learner) else 1)
""".replace("CHILD_NICENESS", str(CHILD_NICENESS))


def index_elsewhere_if_large(learner, path) -> bool:
    """If ``path``'s segments hold more than :data:`LARGE_BYTES` and ``learner`` has not
    read them yet, have a child process write the snapshot it resumes from. True if it
    did; False otherwise (too small, already read, or the child failed: logged). Blocks
    its caller: call it from a thread, never on the event loop."""
    import pathlib

    if learner is None or learner.store.bytes_read or learner.index_state()[0]:
        return False
    try:
        if segment_bytes(pathlib.Path(path) / SEGMENTS) <= LARGE_BYTES:
            return False
        done = subprocess.run([sys.executable, "-c", _CHILD, str(path)], capture_output=True, text=True,
                              timeout=CHILD_SECONDS)
    except (OSError, subprocess.SubprocessError) as exc:
        logger.warning("amorsize plugin: could not index %s in a child process (%s); indexing here", path, exc)
        return False
    if done.returncode != 0:
        logger.warning("amorsize plugin: the child indexing %s failed (exit %s): %s; indexing here",
                       path, done.returncode, done.stderr[-2000:])
        return False
    return True

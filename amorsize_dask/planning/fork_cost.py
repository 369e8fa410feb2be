"""What a process plan pays when its pool forks for the run: the pool's start, and each
worker's copying of this process's objects that the function reads
(:mod:`..engines.fork_copy`), which a sample timed here never pays. The planner adds it
to a sampled plan's process candidates, the model to the configurations it may explore.
"""

from __future__ import annotations

import dataclasses

from ..engines import shared_engine
from ..engines.fork_copy import copy_seconds
from ..engines.function_parcel import forks_for
from .overheads import Overheads
from .plan import format_bytes, format_seconds

__all__ = ["forked_start", "NOTED_FORK_COPY_SECONDS"]

# A plan names the copying from this many seconds, and only then does the planner pickle
# a function to learn whether a running pool forks again for it: a tenth of a forked
# pool's start (~10 ms: bench --fresh's pool start line).
NOTED_FORK_COPY_SECONDS = 0.001


def forked_start(func, overheads: Overheads, n_workers: int, *, find_out: bool) -> tuple[Overheads, str] | None:
    """``overheads`` whose start is what a run of ``func`` on ``n_workers`` pays to fork its
    pool (the start, then the copying) and what a plan should say of it ("" when the
    copying is negligible); None when the run would not fork its pool. ``find_out``: pickle
    ``func`` to learn whether a running pool forks again for it (when the copying counts)."""
    nbytes, seconds = copy_seconds(func)
    noted = seconds >= NOTED_FORK_COPY_SECONDS
    if not forks_for(shared_engine(), func, n_workers, find_out=find_out and noted):
        return None
    note = (f"a forked worker copies ~{format_bytes(nbytes)} of this process's objects that the function reads "
            f"(~{format_seconds(seconds)}, counted with the pool's start)") if noted else ""
    # A pool forks (for a large function an idle one forks again): its start, then the copying.
    return dataclasses.replace(overheads, start_seconds=overheads.start_seconds + seconds), note

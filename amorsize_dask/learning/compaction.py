"""Compaction of the training directory: what a prune keeps (written as sealed files,
atomically), old files removed only when unchanged since read, and the size of what is there.

No locks (the directory may be on NFS): a writer that appends to a segment while it is
compacted makes it grow, so it is not removed, and ids deduplicate the copies.

>>> import tempfile, pathlib
>>> with tempfile.TemporaryDirectory() as d:
...     segment_bytes(pathlib.Path(d) / "segments")
0
"""

from __future__ import annotations

import sys

import collections
import os
import pathlib
import stat

from amorsize_dask.learning.records import encode_line
from amorsize_dask.learning.reader import identity
from amorsize_dask.learning.segments import O_READ

__all__ = ["segment_bytes", "records_to_keep", "on_event_loop", "newest_within", "remove_if_unchanged"]


def segment_bytes(seg_dir: pathlib.Path) -> int:
    """Bytes in the segment and sealed files of ``seg_dir`` (0 when it cannot be listed)."""
    total = 0
    try:
        with os.scandir(seg_dir) as it:
            for entry in it:
                if entry.name.endswith(".jsonl") and not entry.name.startswith("."):  # sealed too
                    try:
                        total += entry.stat(follow_symlinks=False).st_size
                    except OSError:
                        pass
    except OSError:
        return 0
    return total


def records_to_keep(merged: list[dict], segments: dict, removable: list[str], keep: int,
                    max_bytes: int | None) -> tuple[list[dict], set]:
    """What compacting the ``removable`` segments writes: (records, identities dropped).

    The newest ``keep`` records of each (fingerprint, workload) in ``merged`` (oldest
    first) stay, except those in segments that are not compacted (they stay there);
    with ``max_bytes``, the oldest are dropped too until all segments fit in it.
    """
    groups: dict[tuple, list] = collections.defaultdict(list)
    for rec in merged:                    # deduplicated, oldest first
        groups[(rec["fingerprint"], rec["workload"])].append(rec)
    kept = {identity(r) for recs in groups.values() for r in recs[max(0, len(recs) - keep):]}
    staying = {identity(r) for n, s in segments.items() if n not in removable for r in s.records}
    out, dropped = [], set()
    for rec in merged:
        key = identity(rec)
        if key in staying:
            continue
        if key in kept:
            out.append(rec)
        else:
            dropped.add(key)
    if max_bytes is not None:
        out = newest_within(out, max_bytes - sum(s.size for n, s in segments.items() if n not in removable),
                            dropped, identity)
    return out, dropped


def on_event_loop() -> bool:
    """Is this thread running an asyncio event loop (which file I/O must not block)?"""
    asyncio = sys.modules.get("asyncio")
    if asyncio is None:
        return False  # no loop runs without it; importing it would cost a script's first call ~45 ms
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return False
    return True


def newest_within(records: list[dict], n_bytes: int, dropped: set, identity) -> list[dict]:
    """The newest of ``records`` (oldest first) whose lines fit in ``n_bytes``; the
    ``identity`` of the others is added to ``dropped``."""
    total, start = 0, len(records)
    while start > 0:
        total += len(encode_line(records[start - 1]))
        if total > n_bytes:
            break
        start -= 1
    dropped.update(identity(r) for r in records[:start])
    return records[start:]


def remove_if_unchanged(seg_dir: pathlib.Path, segments: dict) -> None:
    """Unlink the segments ({name: reader}) still exactly as read; a grown one stays (its
    records' ids deduplicate them against their compacted copies)."""
    for name, seg in segments.items():
        path = seg_dir / name
        try:
            fd = os.open(path, O_READ)   # open + fstat: revalidates NFS attributes
            try:
                st = os.fstat(fd)
            finally:
                os.close(fd)
            if stat.S_ISREG(st.st_mode) and (st.st_ino, st.st_size) == (seg.ino, seg.size):
                os.unlink(path)
        except OSError:
            pass                          # gone already, or not ours to remove

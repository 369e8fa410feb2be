"""Sealing: writers rewrite settled JSON segments as sealed files, so that readers parse
few lines (:mod:`amorsize_dask.learning.sealed`).

A writer seals its own segment once it holds ``amorsize.store.seal-bytes`` (it closes it
first, so nobody appends to it any more), and — on its first append and then every
``seal-bytes`` it appends — the segments of other writers that have been quiet for the
store's ``settle_seconds`` (most processes write a few records and exit: their segments
never fill), once those hold ``seal-bytes`` or number :data:`MANY_SEGMENTS`. The records
are written as sealed files (temporary name, atomic rename), then each segment is removed
only if still exactly as read; a writer that appended meanwhile keeps its segment (ids
deduplicate the copies), and a writer whose segment was removed writes its line again
into a new one (:meth:`~amorsize_dask.learning.store.TrainingStore.append`). A segment
with anything skipped in it (corrupt lines, a newer schema) is left for ``prune``. Then
the merges due run (:mod:`amorsize_dask.learning.merging`).

>>> import tempfile, pathlib
>>> with tempfile.TemporaryDirectory() as d:
...     seal_settled(pathlib.Path(d), settled=lambda name, mtime: True, max_line=65536,
...                  seal_bytes=1 << 20, limit=1 << 30)
0
"""

from __future__ import annotations

import os
import pathlib
import stat

from . import merging, sealed
from .compaction import remove_if_unchanged
from .segments import O_READ, Segment

__all__ = ["MANY_SEGMENTS", "read_whole", "seal", "seal_settled"]

# Settled segments sealed even when they hold less than seal-bytes: a reader pays an open
# and a stat for each (~50 us), so many small ones cost more than their lines.
MANY_SEGMENTS = 64


def read_whole(path: pathlib.Path, max_line: int) -> Segment:
    """The segment at ``path``, read to its end (OSError when it cannot be)."""
    fd = os.open(path, O_READ)
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise OSError(None, "not a regular file", str(path))
        seg = Segment(st.st_ino)
        seg.read(fd, st.st_size, max_line)
    finally:
        os.close(fd)
    return seg


def seal(seg_dir: pathlib.Path, segments: dict, seal_bytes: int, limit: int) -> int:
    """Seal the segments read ({name: Segment}) that are whole, remove them if unchanged,
    run the merges due; returns the records sealed. Raises OSError (nothing removed then)."""
    clean = {name: seg for name, seg in segments.items() if not any(seg.skipped.values())}
    records, seen = [], set()
    for seg in clean.values():
        for rec in seg.records:
            key = rec.get("id") or id(rec)
            if key not in seen:
                seen.add(key)
                records.append(rec)
    if records:
        sealed.write(seg_dir, records, limit)
    remove_if_unchanged(seg_dir, clean)
    merging.merge_due(seg_dir, seal_bytes, limit)
    return len(records)


def seal_settled(seg_dir: pathlib.Path, *, settled, max_line: int, seal_bytes: int, limit: int) -> int:
    """Seal the segments for which ``settled(name, mtime)`` holds, once they hold
    ``seal_bytes`` or number :data:`MANY_SEGMENTS`; returns the records sealed."""
    names, total = [], 0
    try:
        with os.scandir(seg_dir) as it:
            for entry in it:
                if entry.name.endswith(".jsonl") and not sealed.is_sealed(entry.name) \
                        and not entry.name.startswith("."):
                    st = entry.stat(follow_symlinks=False)
                    if stat.S_ISREG(st.st_mode) and settled(entry.name, st.st_mtime):
                        names.append(entry.name)
                        total += st.st_size
    except OSError:
        return 0
    if total < seal_bytes and len(names) < MANY_SEGMENTS:
        return 0
    segments = {}
    for name in sorted(names)[: 4 * MANY_SEGMENTS]:   # a bounded share of the work per call
        try:
            segments[name] = read_whole(seg_dir / name, max_line)
        except OSError:
            continue                                  # removed or replaced meanwhile
    return seal(seg_dir, segments, seal_bytes, limit)

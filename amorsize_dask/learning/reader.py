"""Reading a training directory: every segment merged, each read only past where it was.

A :class:`SegmentReader` lists ``segments/*.jsonl`` (never following a symlink), reads
each segment only past the offset it reached before, and either merges all records
(deduplicated by id, oldest first) or, ``compact``, hands each new record out once and
keeps only an 8-byte key per record seen.

>>> import tempfile, pathlib
>>> with tempfile.TemporaryDirectory() as d:
...     reader = SegmentReader(pathlib.Path(d), compact=False)
...     reader.refresh(max_line=65536, max_segment=1 << 20)
...     reader.merged, reader.n_segments
([], 0)
"""

from __future__ import annotations

import collections
import errno
import hashlib
import json
import os
import pathlib
import stat
from typing import Any

from amorsize_dask.learning.segments import O_READ, Segment, real_directory

__all__ = ["SEGMENTS", "SKIP_REASONS", "SegmentReader", "identity", "seen_key"]

SEGMENTS = "segments"
SKIP_REASONS = ("torn", "not-json", "too-long", "invalid", "future-schema",
                "oversized-file", "not-regular-file", "unreadable")


def seen_key(record: dict) -> Any:
    """:func:`identity` in 8 bytes: the id as an int, else a hash of the content (a
    record without an id is rare: written by hand or by an old version)."""
    rid = record.get("id")
    if rid is not None:
        return int(rid, 16)
    return -int.from_bytes(hashlib.blake2b(identity(record).encode(), digest_size=8).digest(), "big") - 1


def identity(record: dict) -> Any:
    """Deduplication key: the record id, else its whole content."""
    rid = record.get("id")
    return rid if rid is not None else json.dumps(record, sort_keys=True)


class SegmentReader:
    """The reading state of one training directory (not thread-safe: the store locks).

    ``segments``: name -> :class:`Segment` as last read; ``merged``: all records, oldest
    first (not ``compact``); ``seen``/``fresh`` (``compact``): keys of the records handed
    out, and the records read but not handed out yet; ``bytes_read``: in all.
    """

    def __init__(self, path: pathlib.Path, compact: bool):
        self.path, self.compact = path, compact
        self.segments: dict[str, Segment] = {}
        self.file_skips: collections.Counter = collections.Counter()
        self.n_segments = self.n_bytes = 0
        self.merged: list[dict] = []
        self.bytes_read = 0
        self.seen: set = set()
        self.fresh: list[dict] = []

    def skipped(self) -> dict:
        """Lines and files skipped, by reason (every reason of :data:`SKIP_REASONS`)."""
        skipped = dict.fromkeys(SKIP_REASONS, 0)
        for counts in [self.file_skips, *(s.skipped for s in self.segments.values())]:
            for reason, count in counts.items():
                skipped[reason] += count
        skipped["torn"] += sum(s.torn for s in self.segments.values())
        return skipped

    def take_fresh(self) -> list[dict]:
        fresh, self.fresh = self.fresh, []
        return fresh

    def _take(self, seg: Segment) -> None:
        """Compact: move ``seg``'s newly read records to the fresh ones, once per id."""
        seen, fresh = self.seen, self.fresh
        for rec in seg.records:
            key = seen_key(rec)
            if key not in seen:
                seen.add(key)
                fresh.append(rec)
        seg.records = []

    def _entries(self, seg_dir: pathlib.Path, skips: collections.Counter) -> list:
        if os.path.lexists(seg_dir) and not real_directory(seg_dir):
            skips["not-regular-file"] += 1    # a symlinked segments/ is never followed
            return []
        try:
            with os.scandir(seg_dir) as it:
                return list(it)
        except OSError:
            return []

    def refresh(self, *, max_line: int, max_segment: int) -> None:
        """Read what was appended since, and notice segments added, replaced or removed."""
        present: dict[str, Segment] = {}
        skips: collections.Counter = collections.Counter()
        n_segments = n_bytes = 0
        changed = False
        for entry in self._entries(self.path / SEGMENTS, skips):
            if not entry.name.endswith(".jsonl") or entry.name.startswith("."):
                continue                      # only segments/*.jsonl is ever opened
            try:
                st = entry.stat(follow_symlinks=False)
            except OSError:
                continue                      # removed since listed
            if not stat.S_ISREG(st.st_mode):
                skips["not-regular-file"] += 1
                continue
            n_segments += 1
            n_bytes += st.st_size
            if st.st_size > max_segment:
                skips["oversized-file"] += 1
                continue
            seg = self.segments.get(entry.name)
            if seg is None or seg.ino != st.st_ino or seg.size != st.st_size:
                try:
                    seg = self._read_segment(entry.path, seg, max_line)
                except OSError as exc:        # ELOOP: became a symlink since lstat
                    skips["not-regular-file" if exc.errno in (errno.ELOOP, None)
                          else "unreadable"] += 1
                    continue
                changed = True
                if self.compact:
                    self._take(seg)
            seg.mtime = st.st_mtime
            present[entry.name] = seg
        changed = changed or present.keys() != self.segments.keys()
        self.segments, self.file_skips = present, skips
        self.n_segments, self.n_bytes = n_segments, n_bytes
        if changed and not self.compact:
            self._merge()

    def _read_segment(self, path: str, seg: Segment | None, max_line: int) -> Segment:
        fd = os.open(path, O_READ)
        try:
            st = os.fstat(fd)
            if not stat.S_ISREG(st.st_mode):
                raise OSError(None, "not a regular file", path)
            if seg is None or seg.ino != st.st_ino or st.st_size < seg.offset:
                seg = Segment(st.st_ino)     # new, replaced or truncated: from the start
            self.bytes_read += seg.read(fd, st.st_size, max_line)
        finally:
            os.close(fd)
        return seg

    def _merge(self) -> None:
        seen, merged = set(), []
        for name in sorted(self.segments):
            for rec in self.segments[name].records:
                key = identity(rec)
                if key not in seen:
                    seen.add(key)
                    merged.append(rec)
        merged.sort(key=lambda r: r["time"])  # stable; future times sort as newest
        self.merged = merged

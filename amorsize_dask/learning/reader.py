"""Reading a training directory: every segment merged, each read only past where it was.

A :class:`SegmentReader` lists ``segments/*.jsonl`` — appendable segments and sealed files
(``*.sealed.jsonl``) — never following a symlink, reads each segment only past the offset
it reached before and each sealed file once, and either merges all records (deduplicated by id, oldest
first) or, ``compact``, hands each new record out once — a sealed file's as columns
(:class:`~amorsize_dask.learning.sealed.Columns`), without parsing a line — and keeps
only an 8-byte key per record seen. A damaged sealed file is skipped with a warning and
counted (``corrupt-sealed``); it is never pruned.

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
import logging
import os
import pathlib
import stat
from typing import Any

import numpy as np

from amorsize_dask.learning import sealed
from amorsize_dask.learning.segments import O_READ, Segment, real_directory

__all__ = ["SEGMENTS", "SKIP_REASONS", "SEALED_SIZE_FACTOR", "SegmentReader", "identity", "seen_key",
           "is_sealed", "sealed_limit", "MAX_SEALED_LINE_BYTES"]

logger = logging.getLogger("amorsize_dask")

SEGMENTS = "segments"
SKIP_REASONS = ("torn", "not-json", "too-long", "invalid", "future-schema",
                "oversized-file", "not-regular-file", "unreadable", "corrupt-sealed")
# A sealed file may be this many times amorsize.store.max-segment-bytes before it is
# skipped as oversized: it holds its records' lines plus ~105 bytes of columns (base64 of
# 78 bytes) per record (a line is ~620 bytes), and a reader loads only the columns.
SEALED_SIZE_FACTOR = 16


# ... and at most this many bytes of lines, whatever max-segment-bytes says: a reader parses
# a sealed file's header in one json.loads call, which holds the GIL (~1 ns per byte of
# header, ~105 bytes per record). A file of 64 MiB of lines (110,000 records, an 11.5 MB
# header) took 11-13 ms; one of the 512 MiB the factor allows would take ~100 ms, and the
# scheduler plugin's event loop may wait no longer than 20 ms for the GIL (issue 13).
MAX_SEALED_LINE_BYTES = 64 << 20


def sealed_limit(max_segment: int) -> int:
    """Bytes of lines a writer puts in one sealed file (merged ones too): half of what a
    reader accepts, at most :data:`MAX_SEALED_LINE_BYTES`.

    >>> sealed_limit(1 << 20) >> 20, sealed_limit(64 << 20) >> 20
    (8, 64)
    """
    return min(max_segment * SEALED_SIZE_FACTOR // 2, MAX_SEALED_LINE_BYTES)


is_sealed = sealed.is_sealed


def _member(keys: np.ndarray, sorted_keys: np.ndarray) -> np.ndarray:
    """Which of ``keys`` are in ``sorted_keys`` (ascending)."""
    if not len(sorted_keys):
        return np.zeros(len(keys), bool)
    at = np.minimum(np.searchsorted(sorted_keys, keys), len(sorted_keys) - 1)
    return sorted_keys[at] == keys


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
    first (not ``compact``); ``seen``/``sealed_keys``/``fresh``/``fresh_columns``
    (``compact``): keys of the records handed out (a set, and a sorted uint64 array of
    the sealed files' keys), and the records and columns read but not handed out yet;
    ``bytes_read``: in all.
    """

    def __init__(self, path: pathlib.Path, compact: bool):
        self.path, self.compact = path, compact
        self.segments: dict[str, Segment] = {}
        self.file_skips: collections.Counter = collections.Counter()
        self.n_segments = self.n_bytes = 0
        self.merged: list[dict] = []
        self.bytes_read = 0
        self.seen: set = set()
        self.sealed_keys = np.empty(0, np.uint64)
        self.fresh: list[dict] = []
        self.fresh_columns: list[sealed.Columns] = []

    @property
    def n_seen(self) -> int:
        return len(self.seen) + len(self.sealed_keys)

    def seen_keys(self) -> np.ndarray:
        """The keys handed out, ascending (uint64: :func:`~amorsize_dask.learning.sealed.key_of`)."""
        ids = np.fromiter((sealed.key_of(key) for key in self.seen), np.uint64, len(self.seen))
        return sealed.unique_keys(np.concatenate([ids, self.sealed_keys]))[0]

    def restore_seen(self, keys) -> None:
        self.seen, self.fresh, self.fresh_columns = set(), [], []
        self.sealed_keys = sealed.unique_keys(np.asarray(keys, dtype=np.uint64))[0]

    def skipped(self) -> dict:
        """Lines and files skipped, by reason (every reason of :data:`SKIP_REASONS`)."""
        skipped = dict.fromkeys(SKIP_REASONS, 0)
        for counts in [self.file_skips, *(s.skipped for s in self.segments.values())]:
            for reason, count in counts.items():
                skipped[reason] += count
        skipped["torn"] += sum(s.torn for s in self.segments.values())
        return skipped

    def take_fresh(self) -> tuple[list[sealed.Columns], list[dict]]:
        columns, fresh, self.fresh_columns, self.fresh = self.fresh_columns, self.fresh, [], []
        return columns, fresh

    def _take(self, seg: Segment) -> None:
        """Compact: move ``seg``'s newly read records to the fresh ones, once per id."""
        seen, fresh = self.seen, []
        for rec in seg.records:
            key = seen_key(rec)
            if key not in seen:
                seen.add(key)
                fresh.append((key, rec))
        seg.records = []
        if fresh and len(self.sealed_keys):   # sealed already (read from a sealed file)?
            known = _member(np.array([sealed.key_of(k) for k, _ in fresh], np.uint64), self.sealed_keys)
            fresh = [pair for pair, old in zip(fresh, known.tolist()) if not old]
        self.fresh.extend(rec for _, rec in fresh)

    def _take_columns(self, new: list[sealed.Columns]) -> None:
        """Compact: hand out the rows of newly read sealed files not seen before (once each)."""
        keys = np.concatenate([c.keys for c in new])
        uniq, first = sealed.unique_keys(keys)
        if self.seen:  # keys of segments' records: folded into the sorted array from now on
            self.sealed_keys = self.seen_keys()
            self.seen = set()
        fresh = ~_member(uniq, self.sealed_keys)
        keep = np.zeros(len(keys), bool)
        keep[first[fresh]] = True
        self.sealed_keys = np.sort(np.concatenate([self.sealed_keys, uniq[fresh]]), kind="stable")
        start = 0
        for cols in new:
            cols.keep, start = keep[start: start + len(cols.keys)], start + len(cols.keys)
            self.fresh_columns.append(cols)

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
        new_columns: list[sealed.Columns] = []
        for entry in self._entries(self.path / SEGMENTS, skips):
            if not entry.name.endswith(".jsonl") or entry.name.startswith("."):
                continue                      # only segments/*.jsonl (sealed ones too) are ever opened
            try:
                st = entry.stat(follow_symlinks=False)
            except OSError:
                continue                      # removed since listed
            if not stat.S_ISREG(st.st_mode):
                skips["not-regular-file"] += 1
                continue
            n_segments += 1
            n_bytes += st.st_size
            if st.st_size > max_segment * (SEALED_SIZE_FACTOR if is_sealed(entry.name) else 1):
                skips["oversized-file"] += 1
                continue
            seg = self.segments.get(entry.name)
            if seg is None or seg.ino != st.st_ino or seg.size != st.st_size:
                try:
                    if is_sealed(entry.name):
                        seg = self._read_sealed(entry.path, st, max_line, new_columns)
                    else:
                        seg = self._read_segment(entry.path, seg, max_line)
                except OSError as exc:        # ELOOP: became a symlink since lstat
                    if exc.errno != errno.ENOENT:  # ENOENT: merged or pruned since listed
                        skips["not-regular-file" if exc.errno in (errno.ELOOP, None)
                              else "unreadable"] += 1
                    continue
                changed = True
                if self.compact:
                    self._take(seg)
            seg.mtime = st.st_mtime
            present[entry.name] = seg
        if new_columns:
            self._take_columns(new_columns)
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

    def _read_sealed(self, path: str, st: os.stat_result, max_line: int, new_columns: list) -> Segment:
        """A sealed file, whole: its columns (``compact``) or its records."""
        seg = Segment(st.st_ino)
        seg.size = seg.offset = seg.scan = st.st_size
        try:
            if self.compact:
                new_columns.append(sealed.load_columns(path))
            else:
                seg.read_lines(sealed.load_lines(path), max_line)
            self.bytes_read += st.st_size
        except sealed.FutureSealedError:
            seg.skipped["future-schema"] += 1
        except sealed.SealedError as exc:     # never a crash, never pruned; JSON left stays read
            seg.skipped["corrupt-sealed"] += 1
            logger.warning("amorsize_dask: skipping damaged sealed file %s of the training directory: %s",
                           path, exc)
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

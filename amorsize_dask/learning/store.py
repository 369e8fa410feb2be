"""The training directory: JSON-lines segments written by many processes, merged on read.

Each writer process appends whole lines to its own segment
``<path>/segments/<host>-<pid>-<random>.jsonl`` and never touches another's file
except through an atomic rename in :meth:`TrainingStore.prune`. Readers merge all
segments and skip (and count) whatever is torn, corrupt, oversized or from a newer
schema. Nothing in the directory is ever unpickled, imported or executed.

Readers remember per segment how far they read it: a refresh costs only the bytes
appended since. A ``compact`` store (the learner's) keeps no records, only the ids it
handed out (:meth:`TrainingStore.read_new_columns`). A writer whose segment reaches
``amorsize.store.seal-bytes`` closes it and *seals* it: rewrites it as a sealed file
(:mod:`amorsize_dask.learning.sealed`: a header line of the model's columns, which a
reader loads without parsing a record line, then the same lines) by atomic rename, then
removes the segment if unchanged.
Growth is bounded without anyone running ``prune``: past ``amorsize.store.max-bytes`` a
writer prunes the directory itself, by the same rules (settled segments only, compaction
into sealed files by atomic rename, removal only of files unchanged since read).
Writers also seal other writers' settled segments (:mod:`amorsize_dask.learning.sealing`);
pruning, the size budget and sealing live in :mod:`amorsize_dask.learning.upkeep`.

Sizes come from the :class:`~amorsize_dask.settings.Settings` a method is given (read from
dask.config once per call when none is).

>>> import tempfile
>>> from amorsize_dask.learning.records import make_record
>>> rec = make_record(fingerprint="a1b2c3d4e5f6a7b8", fingerprint_fields={"cores": 2},
...                   workload="0123456789abcdef", function="mymodule.work",
...                   features={"n_items": 2000}, engine="serial", n_workers=1,
...                   chunksize=2000, source="default", wall_seconds=0.5,
...                   compute_seconds=0.4)
>>> with tempfile.TemporaryDirectory() as tmp:
...     store = TrainingStore(tmp)
...     store.append(rec), len(store), store.records()[0]["plan"]["engine"]
(True, 1, 'serial')
"""

from __future__ import annotations

import collections
import dataclasses
import errno
import os
import pathlib
import secrets
import threading

from amorsize_dask import config
from amorsize_dask.errors import warn_once
from amorsize_dask.learning import sealed
from amorsize_dask.learning.records import RecordError, encode_line, validate_record
from amorsize_dask.learning.reader import SEGMENTS, SKIP_REASONS, SegmentReader, seen_key
from amorsize_dask.learning.segments import O_COMMON, OPEN_SEGMENTS, Segment, new_segment_name, real_directory
from amorsize_dask.learning.upkeep import BUDGET_CHECKS, Upkeep
from amorsize_dask.settings import Settings, current

__all__ = ["SEGMENTS", "SKIP_REASONS", "BUDGET_CHECKS", "StoreStats", "TrainingStore"]


# Errors a fresh segment would hit too: retrying would only leave empty files behind.
_NO_RETRY = {errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC), errno.EROFS,
             errno.EACCES, errno.EPERM}


@dataclasses.dataclass(frozen=True)
class StoreStats:
    """What :meth:`TrainingStore.stats` found; ``skipped`` maps reason -> count."""

    path: pathlib.Path
    n_records: int
    n_segments: int
    n_bytes: int
    skipped: dict
    per_fingerprint: dict
    per_workload: dict


class TrainingStore(Upkeep):
    """Read, append to and prune a training directory.

    Parameters
    ----------
    path : str or pathlib.Path, optional
        The directory; default :func:`amorsize_dask.config.default_training_dir`.
        Created on the first :meth:`append`, never by reading.
    compact : bool
        Keep no records in memory: :meth:`read_new` hands each new record out once (the
        learner keeps what its model needs, in arrays), and only the ids seen are kept
        for deduplication. :meth:`records` and :meth:`stats` then read the directory
        afresh, on demand.
    """

    def __init__(self, path: str | os.PathLike | None = None, *, compact: bool = False):
        self.path = pathlib.Path(config.default_training_dir() if path is None else path)
        self.compact = compact
        self._init_state()

    def _init_state(self) -> None:
        self._lock, self._lock_pid = threading.Lock(), os.getpid()
        self._fd: int | None = None           # our segment, open for appending
        self._fd_pid = 0
        self._written = 0                     # bytes written to it
        self._seg_path: pathlib.Path | None = None
        self._warned = False
        self._reader = SegmentReader(self.path, self.compact)
        self._unchecked = 0                   # bytes appended since the size budget was checked
        self._checked = False
        self._unsealed = 0                    # bytes appended since segments were last sealed
        self._seal_checked = False
        self._pruning: threading.Thread | None = None  # a prune off the event loop

    def __getstate__(self) -> dict:
        return {"path": self.path, "compact": self.compact}

    def __setstate__(self, state: dict) -> None:
        self.path = state["path"]
        self.compact = state.get("compact", False)
        self._init_state()

    def __repr__(self) -> str:
        return f"TrainingStore({str(self.path)!r})"

    def __len__(self) -> int:
        return len(self.records())

    def _locked(self) -> threading.Lock:
        if self._lock_pid != os.getpid():     # forked, maybe while another thread held it
            self._lock, self._lock_pid = threading.Lock(), os.getpid()
        return self._lock

    # -- writing -----------------------------------------------------------------------
    def append(self, record: dict, settings: Settings | None = None) -> bool:
        """Validate ``record``, give it a random ``id`` and append it to our segment.

        Returns False, after one warning per store, when the directory cannot be
        written (read-only, full, removed...); never raises OSError.

        Raises
        ------
        RecordError
            ``record`` does not follow the schema, or encodes to a line longer
            than ``amorsize.store.max-line-bytes``.
        """
        settings = current(settings)
        clean = validate_record(record)
        clean["id"] = secrets.token_hex(8)
        line = encode_line(clean)
        max_line = settings.size("max_line_bytes")
        if len(line) - 1 > max_line:
            raise RecordError(f"record encodes to {len(line) - 1} bytes, more than "
                              f"amorsize.store.max-line-bytes={max_line}; shorten its strings")
        seal = settings.size("seal_bytes")
        with self._locked():
            try:
                self._write_line(line, settings.size("max_segment_bytes") // 2)
            except OSError as exc:
                self._close_writer(discard_empty=True)
                self._warn_once(exc)
                return False
            if self.compact:
                self._reader.seen.add(seen_key(clean))   # the caller indexed it already
            self._unchecked += len(line)
            self._unsealed += len(line)
            full = self._seg_path if seal is not None and self._written >= seal else None
            if full is not None:
                self._close_writer()
            check = seal is not None and (full is not None or not self._seal_checked or self._unsealed >= seal)
            if check:
                self._seal_checked, self._unsealed = True, 0
        if check:
            self._off_loop(self._seal, full, settings)
        self._keep_within_budget(settings)
        return True

    def _write_line(self, line: bytes, max_written: int) -> None:
        for attempt in range(2):
            if self._fd is not None and (self._fd_pid != os.getpid()   # forked child
                                         or self._written > max_written):  # roll over
                self._close_writer()
            if self._fd is None:
                self._seg_path = None
                self._fd, self._fd_pid, self._written = self._open_segment(), os.getpid(), 0
            try:
                n = os.write(self._fd, line)  # one write of one whole line, O_APPEND
                self._written += n
                if n != len(line):
                    raise OSError(errno.EIO, f"short write ({n} of {len(line)} bytes)")
                if os.fstat(self._fd).st_nlink > 0:
                    return
                # Our segment was unlinked (directory removed, or a prune raced us):
                # the line went nowhere, so write it again into a new segment.
                self._close_writer()
                if attempt:
                    raise OSError(errno.ENOENT, "segment removed while writing")
            except OSError as exc:
                self._close_writer(discard_empty=True)
                if attempt or exc.errno in _NO_RETRY:
                    raise

    def _open_segment(self) -> int:
        """Create a new segment for this process; return a descriptor open for appending.

        Tests may override this (e.g. to open ``/dev/full`` for a real ENOSPC).
        """
        seg_dir = self.path / SEGMENTS
        os.makedirs(seg_dir, exist_ok=True)
        if not real_directory(seg_dir):
            raise OSError(errno.ELOOP, "not a real directory (a symlink?): refusing to write through it",
                          str(seg_dir))
        path = seg_dir / new_segment_name()
        flags = os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_EXCL | O_COMMON
        fd = os.open(path, flags, 0o666)      # mode: 0o666 minus the umask
        self._seg_path = path
        OPEN_SEGMENTS.add(path.name)
        return fd

    def _close_writer(self, discard_empty: bool = False) -> None:
        fd, path, self._fd, self._seg_path = self._fd, self._seg_path, None, None
        if fd is None:
            return
        if path is not None:
            OPEN_SEGMENTS.discard(path.name)
        try:
            os.close(fd)
            if discard_empty and self._written == 0 and path is not None \
                    and self._fd_pid == os.getpid():
                os.unlink(path)               # our own empty file: nobody loses anything
        except OSError:
            pass

    def _warn_once(self, exc: OSError) -> None:
        if not self._warned:
            self._warned = True
            msg = (f"amorsize_dask cannot write to the training directory {self.path} "
                   f"({exc}); runs are not recorded, so nothing is learned from them. "
                   "Point amorsize.training-dir at a writable directory.")
            warn_once(msg)

    # -- reading -----------------------------------------------------------------------
    def records(self, settings: Settings | None = None) -> list[dict]:
        """All valid records of all segments and sealed files, deduplicated by id, oldest first.

        Incremental: only bytes appended since the previous call are read. The
        dicts are shared with the store's cache; do not mutate them. A ``compact``
        store reads the directory afresh (it keeps no records).
        """
        if self.compact:
            return TrainingStore(self.path).records(settings)
        with self._locked():
            self._refresh(settings)
            return list(self._reader.merged)

    def stats(self, settings: Settings | None = None) -> StoreStats:
        """Counts of records, segments (sealed files included), bytes and skipped
        lines/files by reason."""
        if self.compact:
            return TrainingStore(self.path).stats(settings)
        with self._locked():
            self._refresh(settings)
            reader = self._reader
            merged = reader.merged
            return StoreStats(
                path=self.path, n_records=len(merged), n_segments=reader.n_segments,
                n_bytes=reader.n_bytes, skipped=reader.skipped(),
                per_fingerprint=dict(collections.Counter(r["fingerprint"] for r in merged)),
                per_workload=dict(collections.Counter(
                    (r["fingerprint"], r["workload"]) for r in merged)))

    def read_new_columns(self, settings: Settings | None = None) -> tuple[list[sealed.Columns], list[dict]]:
        """What a ``compact`` store has not handed out before: the rows of new sealed files
        (:class:`~amorsize_dask.learning.sealed.Columns`, ``keep`` marking the rows not seen
        before; no line parsed) and the new records of segments, in file order.

        Costs only the bytes appended since the previous call; a record seen before (in
        a compacted copy, a re-read segment, or appended by this store) is not repeated.
        """
        if not self.compact:
            raise TypeError("read_new_columns() needs TrainingStore(path, compact=True)")
        with self._locked():
            self._refresh(settings)
            return self._reader.take_fresh()

    def read_new(self, settings: Settings | None = None) -> list[dict]:
        """:meth:`read_new_columns` as records (a sealed file's new ones parsed from its lines)."""
        columns, records = self.read_new_columns(settings)
        max_line = current(settings).size("max_line_bytes")
        out = []
        for cols in columns:
            wanted = set(cols.keys[cols.keep].tolist())
            seg = Segment(0)
            try:
                seg.read_lines(sealed.load_lines(cols.path), max_line)
            except (sealed.SealedError, OSError):  # removed or replaced since its columns were read
                continue
            out += [rec for rec in seg.records if sealed.key_of(seen_key(rec)) in wanted]
        return out + records

    @property
    def n_seen(self) -> int:
        """Records a compact store has handed out (or appended) so far."""
        return self._reader.n_seen

    def reader_state(self) -> tuple[dict, object]:
        """A compact store's reading state: {segment: how far it was read}, the keys seen
        (a uint64 array)."""
        with self._locked():
            return ({name: seg.state() for name, seg in self._reader.segments.items()},
                    self._reader.seen_keys())

    def restore_reader_state(self, segments: dict, ids) -> None:
        """Resume a compact store from :meth:`reader_state` (records before it are not
        handed out again; a segment replaced or truncated since is read from its start)."""
        with self._locked():
            reader = self._reader
            reader.segments = {str(name): Segment.from_state(state) for name, state in segments.items()}
            reader.restore_seen(ids)

    def _refresh(self, settings: Settings | None = None) -> None:
        settings = current(settings)
        self._reader.refresh(max_line=settings.size("max_line_bytes"),
                             max_segment=settings.size("max_segment_bytes"))

    @property
    def bytes_read(self) -> int:
        """Bytes this store has read from segments so far (a refresh reads only new ones)."""
        return self._reader.bytes_read

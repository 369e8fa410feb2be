"""Segment files of the training directory: their names, and reading one in bounded blocks.

A :class:`Segment` remembers how far its file was read, so reading it again costs only
the bytes appended since; a torn last line is left for later, an over-long one skipped.

>>> import os, tempfile
>>> from amorsize_dask.learning.records import encode_line, make_record
>>> rec = make_record(fingerprint="0" * 16, fingerprint_fields={}, workload="1" * 16,
...                   function="f", features={"n_items": 1}, engine="serial", n_workers=1,
...                   chunksize=1, source="default", wall_seconds=0.5, compute_seconds=0.4)
>>> with tempfile.TemporaryFile() as f:
...     _ = f.write(encode_line(rec) + b'{"torn')
...     f.flush()
...     seg = Segment(0)
...     n = seg.read(f.fileno(), os.fstat(f.fileno()).st_size, 65536)
...     len(seg.records), seg.torn
(1, True)
"""

from __future__ import annotations

import collections
import os
import re
import secrets
import socket
import stat

from amorsize_dask.learning.records import FutureSchemaError, NotJSONError, RecordError, decode_line, decode_written

__all__ = ["O_COMMON", "O_READ", "OPEN_SEGMENTS", "hostname", "new_segment_name", "real_directory", "Segment"]

# Bytes per read(): memory stays below this plus max-line-bytes whatever a file holds.
_BLOCK = 1 << 20
# Lines parsed as one JSON array at most. That parse is one C call, which holds the GIL
# (~4.5 us a line): 4,096 lines held the scheduler plugin's event loop 28.8 ms in
# test_plugin_loop (bound: 20 ms); 256 hold it ~1.2 ms and keep most of the gain of
# parsing together (bench --store refresh +1,000).
_PARSED_TOGETHER = 256
O_COMMON = (getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0)
             | getattr(os, "O_BINARY", 0))
# O_NOFOLLOW: never follow a symlink; O_NONBLOCK: never hang on a FIFO.
O_READ = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | O_COMMON
# Names of the segments this process's stores have open for appending.
OPEN_SEGMENTS: set[str] = set()


# Compiled with the module: compiling it on a first record took ~0.3 ms of a script's first call.
_NOT_IN_NAMES = re.compile(r"[^A-Za-z0-9_-]")


def hostname() -> str:
    """This host's name reduced to ``[A-Za-z0-9_-]``, at most 32 chars."""
    return _NOT_IN_NAMES.sub("_", socket.gethostname())[:32] or "host"


def new_segment_name() -> str:
    return f"{hostname()}-{os.getpid()}-{secrets.token_hex(4)}.jsonl"


def real_directory(path) -> bool:
    """A directory itself, not a symlink to one."""
    try:
        return stat.S_ISDIR(os.lstat(path).st_mode)
    except OSError:
        return False


class Segment:
    """Reader state of one segment file: what has been consumed, and what it held."""

    __slots__ = ("ino", "mtime", "size", "offset", "scan", "long_line", "records", "skipped")

    def __init__(self, ino: int):
        self.ino, self.mtime = ino, 0.0
        self.size = 0            # bytes of the file seen so far
        self.offset = 0          # end of the last complete line consumed
        self.scan = 0            # where scanning resumes inside an over-long line
        self.long_line = False   # the line at ``offset`` is known to be too long
        self.records: list[dict] = []
        self.skipped: collections.Counter = collections.Counter()

    @property
    def torn(self) -> bool:
        return self.size > self.offset

    def state(self) -> list:
        """How far the file was read, as JSON values (for a snapshot of the reader)."""
        return [self.ino, self.size, self.offset, self.scan, self.long_line, dict(self.skipped)]

    @classmethod
    def from_state(cls, state: list) -> "Segment":
        """The reader of :meth:`state`, without its records (they were handed out).

        >>> Segment.from_state(Segment(7).state()).state()
        [7, 0, 0, 0, False, {}]
        """
        ino, size, offset, scan, long_line, skipped = state
        seg = cls(int(ino))
        seg.size, seg.offset, seg.scan, seg.long_line = int(size), int(offset), int(scan), bool(long_line)
        seg.skipped.update({str(k): int(v) for k, v in skipped.items()})
        return seg

    def read(self, fd: int, size: int, max_line: int) -> int:
        """Consume the complete lines up to ``size``, in bounded blocks; bytes read."""
        pos, long_line = self.offset, self.long_line
        at = first = self.scan if long_line else pos
        pending = bytearray()                 # head of the current line, <= max_line
        os.lseek(fd, at, os.SEEK_SET)
        while at < size:
            data = os.read(fd, min(_BLOCK, size - at))
            if not data:
                break                         # truncated meanwhile
            base, at, start = at, at + len(data), 0
            lines = []
            while (nl := data.find(b"\n", start)) >= 0:
                if long_line or len(pending) + nl - start > max_line:
                    self.skipped["too-long"] += 1
                    long_line = False
                elif pending:
                    lines.append(bytes(pending + data[start:nl]))
                else:
                    lines.append(data[start:nl])
                pending.clear()
                start = nl + 1
                pos = base + start
            self._add_all(lines)
            if not long_line:
                if len(pending) + len(data) - start > max_line:
                    long_line = True
                    pending.clear()
                else:
                    pending += data[start:]
        self.offset, self.long_line, self.scan, self.size = pos, long_line, at, at
        return at - first

    def read_lines(self, data: bytes, max_line: int) -> None:
        """Consume whole lines held in memory (a sealed file's); a last line without its
        newline is taken too (the file was written whole)."""
        lines = []
        for line in data.split(b"\n"):
            if len(line) > max_line:
                self.skipped["too-long"] += 1
            elif line:
                lines.append(line)
        self._add_all(lines)

    def _add_all(self, lines: list[bytes]) -> None:
        """Add the records of ``lines``, in order: those this version wrote parsed together,
        :data:`_PARSED_TOGETHER` lines at a time (each parse holds the GIL; and a sealed
        file's 64 MiB of lines are never copied into one array text)."""
        for start in range(0, len(lines), _PARSED_TOGETHER):
            batch = lines[start: start + _PARSED_TOGETHER]
            for line, record in zip(batch, decode_written(batch)):
                if record is not None:
                    self.records.append(record)
                else:
                    self._add(line)

    def _add(self, line: bytes) -> None:
        try:
            self.records.append(decode_line(line))
        except NotJSONError:
            self.skipped["not-json"] += 1
        except FutureSchemaError:
            self.skipped["future-schema"] += 1
        except RecordError:
            self.skipped["invalid"] += 1

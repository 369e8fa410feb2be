"""Sealed files of the training directory: settled records, in columns a reader loads at once.

A sealed file ``segments/<host>-<pid>-<random>.sealed.jsonl`` is JSON lines, like a
segment (nothing in it is ever unpickled or executed). It is written once (temporary
name, fsync, atomic rename: readers see it whole or not at all) and never appended to.

- Line 1, the header: one JSON object ``{"amorsize_sealed": VERSION, "groups": ...,
  "fields": ..., "n": rows, "lines_bytes": ..., "columns": {name: {"dtype": "<f8",
  "data": base64}}, "bounds": {...}, "keys": {...}}``: what the model needs of each
  record (:data:`~amorsize_dask.learning.index.ROW`, one little-endian column per field),
  grouped by (fingerprint, workload), oldest first within a group; ``bounds``: where each
  group's rows start and end (int64); ``keys``: each row's record key (uint64, for
  deduplication); ``groups``: each group's fingerprint, workload and newest sampled
  features (with their time); ``fields``: each fingerprint's fields; ``lines_bytes``: the
  size of the lines below (a truncated file is noticed).
- Then the records' JSON lines, exactly as a segment holds them (``records()``, the CLI
  and ``prune`` read these: sealing loses nothing).

A learner reads and parses the header line only; no record line is parsed. A column's
dtype comes from a whitelist of plain numeric dtypes and its length is checked against
``n``: anything else is a damaged file (:class:`SealedError`), skipped and counted.

A version that reads only ``segments/*.jsonl`` as segments reads a sealed file as one: the
header (longer than ``amorsize.store.max-line-bytes`` unless the file is small, ~105 bytes
a record) is skipped and counted as ``too-long`` (or ``invalid``: it is no record), and
every record line is read. Files ``segments/*.npz`` (sealed files of development versions
before this format, never released) are not opened, counted or removed: like any other
unknown file, they are ignored, and the records in them are not read.

>>> import tempfile, pathlib
>>> from amorsize_dask.learning.records import make_record
>>> rec = make_record(fingerprint="0" * 16, fingerprint_fields={}, workload="1" * 16,
...                   function="f", features={"n_items": 10}, engine="serial", n_workers=1,
...                   chunksize=10, source="default", wall_seconds=0.5, compute_seconds=0.4)
>>> with tempfile.TemporaryDirectory() as d:
...     (path,) = write(pathlib.Path(d), [dict(rec, id="00000000000000aa")], limit=1 << 20)
...     cols = load_columns(str(path))
...     path.name.endswith(SUFFIX), cols.groups[0][:2], cols.rows["n_items"].tolist(), cols.keys.tolist()
(True, ('0000000000000000', '1111111111111111'), [10], [170])
"""

from __future__ import annotations

import base64
import dataclasses
import json
import math
import os
import pathlib
import stat

import numpy as np

from . import model
from .index import ENGINES, ROW, SOURCES, kept_features, row_of
from .records import encode_line
from .schema import HEX16
from .segments import O_COMMON, O_READ, new_segment_name

__all__ = ["SUFFIX", "VERSION", "SealedError", "FutureSealedError", "Columns", "is_sealed", "key_of", "write",
           "write_atomically", "save", "load_columns", "load_lines", "unique_keys"]

SUFFIX = ".sealed.jsonl"
VERSION = 1
_MASK64 = (1 << 64) - 1
# The only dtypes a column may declare: plain little-endian numbers (never an object).
_DTYPES = {s: np.dtype(s) for s in ("|b1", "|i1", "|u1", "<i2", "<u2", "<i4", "<u4", "<i8", "<u8", "<f4", "<f8")}
# Bytes of the first read for a header, doubled each read up to the last: a header holds
# ~105 bytes a record (~180 KB for a 1 MiB seal): a learner reads at most twice it.
_FIRST_READ, _LAST_READ = 1 << 16, 1 << 23


class SealedError(ValueError):
    """A sealed file that is not one this version wrote whole (damaged, truncated, foreign)."""


class FutureSealedError(SealedError):
    """A sealed file of a newer format (written by a newer amorsize_dask)."""


@dataclasses.dataclass
class Columns:
    """The model's part of one sealed file. ``groups``: [(fingerprint, workload, features,
    features time)]; rows ``bounds[i]:bounds[i + 1]`` are group ``i``'s; ``fields``:
    {fingerprint: its fields}; ``keep``: the rows a reader has not seen before."""

    groups: list
    fields: dict
    rows: np.ndarray
    bounds: np.ndarray
    keys: np.ndarray
    path: str = ""
    keep: np.ndarray | None = None


def is_sealed(name: str) -> bool:
    """Is ``name`` a sealed file's (not an appendable segment's: ``<host>-<pid>-<random>.jsonl``,
    whose host holds no dot)?

    >>> is_sealed("h-1-00aa.sealed.jsonl"), is_sealed("h-1-00aa.jsonl"), is_sealed("h-1-00aa.npz")
    (True, False, False)
    """
    return name.endswith(SUFFIX)


def unique_keys(keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The distinct ``keys``, ascending, and where each first occurs (``np.unique`` without
    the ``numpy.ma`` it imports: ~0.5 MB a learner would keep).

    >>> [a.tolist() for a in unique_keys(np.array([3, 1, 3], np.uint64))]
    [[1, 3], [1, 0]]
    """
    order = np.argsort(keys, kind="stable")
    ordered = keys[order]
    first = np.ones(len(keys), bool)
    first[1:] = ordered[1:] != ordered[:-1]
    return ordered[first], order[first]


def key_of(seen_key: int) -> int:
    """A record key (:func:`~amorsize_dask.learning.reader.seen_key`, negative for a hash)
    as the uint64 a sealed file stores.

    >>> key_of(-1), key_of(5)
    (18446744073709551615, 5)
    """
    return seen_key & _MASK64


def _parts(records: list[dict], lines: list[bytes], keys: list[int]) -> dict:
    """What one sealed file of ``records`` (with their lines and keys) holds."""
    by_group: dict[tuple, list[int]] = {}
    for i, rec in enumerate(records):
        by_group.setdefault((rec["fingerprint"], rec["workload"]), []).append(i)
    order, bounds, groups, fields = [], [0], [], {}
    for (fp, wl), members in by_group.items():
        members.sort(key=lambda i: records[i]["time"])
        order += members
        bounds.append(len(order))
        sampled = [records[i] for i in members if "bytes_in" in records[i]["features"]]
        newest = sampled[-1] if sampled else None
        feats = newest and newest["features"]
        for i in members:  # a thread failure of any run is kept (index.kept_features)
            feats = kept_features(feats, records[i]["features"])
        # Timed by the newest sampled run only: marks alone lose to any sampled features,
        # which take the mark (timed as the file's newest run, they replaced them).
        groups.append([fp, wl, feats, newest and newest["time"]])
        fields.setdefault(fp, records[members[0]]["fingerprint_fields"])
    return {"groups": groups, "fields": fields,
            "rows": np.array([row_of(model.fields_of_record(records[i])) for i in order], dtype=ROW),
            "bounds": np.array(bounds, dtype=np.int64),
            "keys": np.array([key_of(keys[i]) for i in order], dtype=np.uint64),
            "lines": b"".join(lines)}


def _chunks(lines: list[bytes], limit: int) -> list[tuple[int, int]]:
    """(start, stop) of runs of ``lines`` holding about ``limit`` bytes each."""
    bounds, size = [0], 0
    for i, line in enumerate(lines):
        if i > bounds[-1] and size + len(line) > limit:
            bounds.append(i)
            size = 0
        size += len(line)
    bounds.append(len(lines))
    return [(a, b) for a, b in zip(bounds, bounds[1:]) if b > a]


def write(seg_dir: pathlib.Path, records: list[dict], limit: int, lines: list[bytes] | None = None) -> list:
    """Write ``records`` (valid, as :func:`~amorsize_dask.learning.records.validate_record`
    returns them; ``lines``: their :func:`~amorsize_dask.learning.records.encode_line`,
    computed when None) as sealed files of about ``limit`` bytes of lines each, atomically;
    on failure none of them is left behind (OSError raised). Returns their paths."""
    from .reader import seen_key

    if lines is None:
        lines = [encode_line(r) for r in records]
    created: list[pathlib.Path] = []
    try:
        for a, b in _chunks(lines, limit):
            created.append(save(seg_dir, _parts(records[a:b], lines[a:b], [seen_key(r) for r in records[a:b]])))
    except OSError:
        for path in created:
            try:
                os.unlink(path)
            except OSError:
                pass
        raise
    return created


def _encode(array: np.ndarray) -> dict:
    """A column of the header: ``array``'s little-endian bytes in base64."""
    little = np.ascontiguousarray(array, dtype=array.dtype.newbyteorder("<"))
    return {"dtype": little.dtype.str, "data": base64.b64encode(little).decode("ascii")}


def save(seg_dir: pathlib.Path, parts: dict) -> pathlib.Path:
    """A new sealed file of ``parts`` (groups, fields, rows, bounds, keys, lines), atomically."""
    rows, lines = parts["rows"], parts["lines"]
    header = {"amorsize_sealed": VERSION, "groups": parts["groups"], "fields": parts["fields"],
              "n": len(rows), "lines_bytes": len(lines),
              "columns": {name: _encode(rows[name]) for name in rows.dtype.names},
              "bounds": _encode(parts["bounds"]), "keys": _encode(parts["keys"])}
    return write_atomically(seg_dir, [json.dumps(header, separators=(",", ":")).encode() + b"\n", lines])


def write_atomically(seg_dir: pathlib.Path, pieces: list) -> pathlib.Path:
    """``pieces`` (bytes) one after the other as a new sealed file of this process (temp
    file, fsync, rename)."""
    name = new_segment_name().removesuffix(".jsonl") + SUFFIX
    tmp = seg_dir / f".{name}.tmp"           # hidden, not *.jsonl: readers ignore it
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | O_COMMON, 0o666)
    try:
        for data in pieces:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view):]
        os.fsync(fd)
    except OSError:
        os.close(fd)
        os.unlink(tmp)
        raise
    os.close(fd)
    os.replace(tmp, seg_dir / name)
    return seg_dir / name


def _header_line(fd: int, size: int) -> bytearray:
    """The first line of the file ``fd`` of ``size`` bytes, read in growing blocks (never
    more than the file); SealedError when it has no newline."""
    buf, want = bytearray(), _FIRST_READ
    while len(buf) < size:
        data = os.read(fd, min(want, size - len(buf)))
        if not data:
            break                             # truncated since its size was read
        nl = data.find(b"\n")
        if nl >= 0:
            buf += memoryview(data)[:nl]
            return buf
        buf += data
        want = min(2 * want, _LAST_READ)
    raise SealedError("no header line")


def _first_line(data: bytes) -> bytes:
    """The first line of ``data``, without its newline (SealedError when it has none)."""
    nl = data.find(b"\n")
    if nl < 0:
        raise SealedError("no header line")
    return data[:nl]


def _read_all(fd: int, size: int) -> bytes:
    """The ``size`` bytes of the file ``fd``; SealedError if it holds fewer."""
    chunks, got = [], 0
    while got < size:
        data = os.read(fd, min(_LAST_READ, size - got))
        if not data:
            raise SealedError(f"{got} bytes of {size}: truncated")
        chunks.append(data)
        got += len(data)
    return b"".join(chunks)


def _column(entry, n: int, dtype: np.dtype) -> np.ndarray:
    """The column ``entry`` of the header ({"dtype", "data"}): ``n`` values of ``dtype``."""
    if not isinstance(entry, dict) or not isinstance(entry.get("dtype"), str) \
            or not isinstance(entry.get("data"), str) or _DTYPES.get(entry["dtype"]) != dtype.newbyteorder("<"):
        raise SealedError(f"not a column of {n} {dtype.newbyteorder('<').str}")
    raw = base64.b64decode(entry["data"], validate=True)
    if len(raw) != n * dtype.itemsize:
        raise SealedError(f"a column of {len(raw)} bytes, not of {n} values")
    return np.frombuffer(raw, dtype.newbyteorder("<")).astype(dtype, copy=False)


def _columns(header, size: int, path: str) -> tuple[Columns, int]:
    """The Columns of a parsed ``header`` line (of a file of ``size`` bytes), and where its
    lines start."""
    if not isinstance(header, dict) or type(header.get("amorsize_sealed")) is not int:
        raise SealedError("no format version")
    if header["amorsize_sealed"] > VERSION:
        raise FutureSealedError(f"format {header['amorsize_sealed']}, newer than {VERSION}")
    n, lines_bytes, columns = header["n"], header["lines_bytes"], header["columns"]
    if type(n) is not int or type(lines_bytes) is not int or not isinstance(columns, dict) or n < 0:
        raise SealedError("no row count, lines size or columns")
    start = size - lines_bytes
    decoded = [(name, _column(columns.get(name), n, ROW.fields[name][0])) for name in ROW.names]
    rows = np.empty(n, ROW)                   # n is checked against the columns' bytes now
    for name, values in decoded:
        rows[name] = values
    groups = [tuple(g) for g in header["groups"]]
    cols = Columns(groups, header["fields"], rows, _column(header["bounds"], len(groups) + 1, np.dtype(np.int64)),
                   _column(header["keys"], n, np.dtype(np.uint64)), path)
    _check(cols)
    return cols, start


def load_columns(path: str, with_lines: bool = False) -> Columns | tuple[Columns, bytes]:
    """The model's part of the sealed file at ``path`` (and its lines, ``with_lines``), read
    from its header line only (all of it, ``with_lines``); SealedError if it is not whole,
    FileNotFoundError if it is gone, OSError(None) if it is not a regular file."""
    fd = os.open(path, O_READ)                # never through a symlink
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise OSError(None, "not a regular file", path)
        size = st.st_size
        data = _read_all(fd, size) if with_lines else b""
        line = _first_line(data) if with_lines else _header_line(fd, size)
        cols, start = _columns(json.loads(line), size, path)
        if start != len(line) + 1:
            raise SealedError(f"{size} bytes, not the header's {len(line) + 1} and lines' {size - start}")
    except (SealedError, OSError):            # FileNotFoundError: gone since listed (merged)
        raise
    except Exception as exc:                  # bad JSON or base64, a missing key, garbage: never a crash
        raise SealedError(f"{type(exc).__name__}: {exc}") from None
    finally:
        os.close(fd)
    if with_lines:
        lines = data[start:]
        if lines and not lines.endswith(b"\n"):
            raise SealedError("its last line has no newline")
        return cols, lines
    return cols
def _flat(value, numbers_only: bool) -> bool:
    """A dict of str -> finite numbers (>= 0, ``numbers_only``: features) or str/bool too
    (fingerprint fields), as the record schema allows them."""
    if not isinstance(value, dict):
        return False
    for key, item in value.items():
        kind = type(item)
        if not isinstance(key, str) or kind is bool and numbers_only:
            return False
        if kind in (int, float):
            if not (math.isfinite(item) and (item >= 0 or not numbers_only)):
                return False
        elif numbers_only or kind not in (str, bool):
            return False
    return True


def _check(cols: Columns) -> None:
    """Raise SealedError unless ``cols`` is consistent (a damaged file must not reach the model)."""
    rows, bounds = cols.rows, cols.bounds
    ok = (rows.dtype == ROW and cols.keys.dtype == np.uint64 and bounds.dtype == np.int64
          and rows.ndim == cols.keys.ndim == bounds.ndim == 1 and len(cols.keys) == len(rows)
          and len(bounds) == len(cols.groups) + 1 and isinstance(cols.fields, dict)
          and bounds[0] == 0 and bounds[-1] == len(rows) and bool(np.all(np.diff(bounds) >= 0)))
    ok = ok and all(len(g) == 4 and isinstance(g[0], str) and HEX16.fullmatch(g[0])
                    and isinstance(g[1], str) and HEX16.fullmatch(g[1])
                    and (g[2] is None or _flat(g[2], numbers_only=True))
                    and (g[3] is None or type(g[3]) in (int, float) and math.isfinite(g[3])) for g in cols.groups)
    ok = ok and all(isinstance(k, str) and _flat(v, numbers_only=False) for k, v in cols.fields.items())
    live = rows[rows["n_items"] > 0]
    ok = ok and bool(np.all((live["engine"] >= 0) & (live["engine"] < len(ENGINES))
                            & (live["source"] >= 0) & (live["source"] < len(SOURCES))
                            & (live["n_workers"] >= 1) & (live["chunksize"] >= 1)
                            & np.isfinite(live["item_seconds"]) & np.isfinite(live["run_seconds"])
                            & np.isfinite(live["time"])))
    if not ok:
        raise SealedError("inconsistent arrays")


def load_lines(path: str) -> bytes:
    """The JSON lines of the sealed file at ``path``; SealedError if it is not whole (its
    columns are checked too: a file is read whole or not at all, by every reader)."""
    return load_columns(path, with_lines=True)[1]

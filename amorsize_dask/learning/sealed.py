"""Sealed files of the training directory: settled records, in columns a reader loads at once.

A sealed file ``segments/<host>-<pid>-<random>.npz`` is numpy's uncompressed zip of
``.npy`` arrays, read with ``allow_pickle=False`` (nothing in it is ever unpickled or
executed). It is written once (temporary name, fsync, atomic rename: readers see it whole
or not at all) and never appended to. It holds:

- ``lines``: the records' JSON lines, exactly as a segment holds them (``records()``, the
  CLI and ``prune`` read these: sealing loses nothing);
- ``rows``: what the model needs of each record (:data:`~amorsize_dask.learning.index.ROW`),
  grouped by (fingerprint, workload), oldest first within a group; ``bounds``: where each
  group's rows start and end; ``keys``: each row's record key (uint64, for deduplication);
- ``meta``: JSON: the format version, each group's fingerprint, workload and newest sampled
  features (with their time), each fingerprint's fields.

A learner loads ``rows``, ``keys`` and ``meta`` only: no JSON line is parsed.

>>> import tempfile, pathlib
>>> from amorsize_dask.learning.records import make_record
>>> rec = make_record(fingerprint="0" * 16, fingerprint_fields={}, workload="1" * 16,
...                   function="f", features={"n_items": 10}, engine="serial", n_workers=1,
...                   chunksize=10, source="default", wall_seconds=0.5, compute_seconds=0.4)
>>> with tempfile.TemporaryDirectory() as d:
...     (path,) = write(pathlib.Path(d), [dict(rec, id="00000000000000aa")], limit=1 << 20)
...     cols = load_columns(str(path))
...     cols.groups[0][:2], cols.rows["n_items"].tolist(), cols.keys.tolist()
(('0000000000000000', '1111111111111111'), [10], [170])
"""

from __future__ import annotations

import dataclasses
import io
import json
import math
import os
import pathlib
import zipfile

import numpy as np

from . import model
from .index import ENGINES, ROW, SOURCES, row_of
from .records import encode_line
from .schema import HEX16
from .segments import O_COMMON, O_READ, new_segment_name

__all__ = ["SUFFIX", "VERSION", "SealedError", "FutureSealedError", "Columns", "key_of", "write",
           "write_atomically", "save", "load_columns", "load_lines", "unique_keys"]

SUFFIX = ".npz"
VERSION = 1
_MASK64 = (1 << 64) - 1


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


def _arrays(records: list[dict], lines: list[bytes], keys: list[int]) -> dict:
    """The arrays of one sealed file of ``records`` (with their lines and keys)."""
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
        groups.append([fp, wl, newest and newest["features"], newest and newest["time"]])
        fields.setdefault(fp, records[members[0]]["fingerprint_fields"])
    meta = {"version": VERSION, "groups": groups, "fields": fields}
    return {"rows": np.array([row_of(model.fields_of_record(records[i])) for i in order], dtype=ROW),
            "bounds": np.array(bounds, dtype=np.int64),
            "keys": np.array([key_of(keys[i]) for i in order], dtype=np.uint64),
            "meta": np.frombuffer(json.dumps(meta).encode(), np.uint8),
            "lines": np.frombuffer(b"".join(lines), np.uint8)}


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
            created.append(save(seg_dir, _arrays(records[a:b], lines[a:b], [seen_key(r) for r in records[a:b]])))
    except OSError:
        for path in created:
            try:
                os.unlink(path)
            except OSError:
                pass
        raise
    return created


def save(seg_dir: pathlib.Path, arrays: dict) -> pathlib.Path:
    """A new sealed file of ``arrays`` (rows, bounds, keys, meta, lines), atomically."""
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    return write_atomically(seg_dir, buf.getbuffer())


def write_atomically(seg_dir: pathlib.Path, data) -> pathlib.Path:
    """``data`` as a new sealed file of this process (temp file, fsync, rename)."""
    name = new_segment_name().removesuffix(".jsonl") + SUFFIX
    tmp = seg_dir / f".{name}.tmp"           # hidden, not *.npz: readers ignore it
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | O_COMMON, 0o666)
    try:
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


def _open(path: str):
    """The npz at ``path`` (never through a symlink, never a pickle, never a compressed
    member: what it holds is no larger than the file, whose size the reader bounds)."""
    fd = os.open(path, O_READ)
    data = np.load(os.fdopen(fd, "rb"), allow_pickle=False)
    if not hasattr(data, "zip") or any(info.compress_type != zipfile.ZIP_STORED for info in data.zip.infolist()):
        data.close()
        raise SealedError("not an uncompressed npz")
    return data


def load_columns(path: str, with_lines: bool = False) -> Columns | tuple[Columns, np.ndarray]:
    """The model's part of the sealed file at ``path`` (and its lines, ``with_lines``);
    SealedError if it is not whole, FileNotFoundError if it is gone."""
    try:
        with _open(path) as data:
            meta = json.loads(data["meta"].tobytes())
            if not isinstance(meta, dict) or not isinstance(meta.get("version"), int):
                raise SealedError("no format version")
            if meta["version"] > VERSION:
                raise FutureSealedError(f"format {meta['version']}, newer than {VERSION}")
            cols = Columns([tuple(g) for g in meta["groups"]], meta["fields"], data["rows"], data["bounds"],
                           data["keys"], path)
            lines = data["lines"] if with_lines else None
    except (SealedError, FileNotFoundError):  # gone since listed (merged): not damaged
        raise
    except Exception as exc:  # a truncated zip, a damaged member, garbage: never a crash
        raise SealedError(f"{type(exc).__name__}: {exc}") from None
    _check(cols)
    if with_lines:
        if lines.dtype != np.uint8 or lines.ndim != 1:
            raise SealedError("lines are not bytes")
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
    return load_columns(path, with_lines=True)[1].tobytes()

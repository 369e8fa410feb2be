"""Merging sealed files, so that their number stays small (a reader pays ~1-3 ms for each
file it opens, whatever its size).

Size tiers, as log-structured stores keep them: a sealed file of about ``seal_bytes`` is in
tier 0, one of about ``FANOUT`` times that in tier 1, and so on. Once a tier holds
``FANOUT`` files, a writer merges them into one of the next tier: their columns are
concatenated and regrouped, their lines joined (no line is parsed), written as a new sealed file (temporary
name, atomic rename), and the merged files are removed. Sealed files never change, so two
writers merging the same files at once lose nothing: both copies are whole, and readers
drop the rows of records they have seen (by key).

>>> import tempfile, pathlib
>>> with tempfile.TemporaryDirectory() as d:
...     merge_due(pathlib.Path(d), seal_bytes=1 << 20, limit=1 << 30)
0
"""

from __future__ import annotations

import math
import os
import pathlib
import stat

import numpy as np

from . import sealed
from .index import newer_features

__all__ = ["FANOUT", "MAX_MERGES", "tier", "due", "combine", "merge", "merge_due"]

# Files of one tier merged at once: a record is rewritten once per tier (log8 of the
# directory's size in seal_bytes: 4 times for 1M records of 1 MiB seals), and a reader
# opens at most FANOUT - 1 files per tier.
FANOUT = 8
# Merges one writer runs after one seal (each may fill the next tier).
MAX_MERGES = 8


def tier(size: int, seal_bytes: int) -> int:
    """The tier of a sealed file of ``size`` bytes.

    >>> tier(1000, 1000), tier(7999, 1000), tier(8000, 1000), tier(64_000, 1000)
    (0, 0, 1, 2)
    """
    return max(0, int(math.log(max(size, 1) / seal_bytes, FANOUT) + 1e-9))


def due(seg_dir: pathlib.Path, seal_bytes: int, limit: int) -> list[pathlib.Path]:
    """``FANOUT`` sealed files of the lowest full tier whose merge stays within ``limit``
    bytes (none when no tier is full)."""
    tiers: dict[int, list] = {}
    try:
        with os.scandir(seg_dir) as it:
            for entry in it:
                if sealed.is_sealed(entry.name) and not entry.name.startswith("."):
                    st = entry.stat(follow_symlinks=False)
                    if stat.S_ISREG(st.st_mode):
                        tiers.setdefault(tier(st.st_size, seal_bytes), []).append((entry.name, st.st_size))
    except OSError:
        return []
    for level in sorted(tiers):
        files = sorted(tiers[level])[:FANOUT]
        if len(files) == FANOUT and sum(size for _, size in files) <= limit:
            return [seg_dir / name for name, _ in files]
    return []


def combine(parts: list) -> dict:
    """What one sealed file holding ``parts`` ([(Columns, lines)]) holds, each record once."""
    codes: dict[tuple, int] = {}
    groups, fields, group_of = [], {}, []
    for cols, _ in parts:
        local = []
        for fp, wl, feats, when in cols.groups:
            code = codes.setdefault((fp, wl), len(groups))
            if code == len(groups):
                groups.append([fp, wl, feats, when])
            else:
                groups[code][2:] = newer_features(tuple(groups[code][2:]), (feats, when))
            local.append(code)
        group_of.append(np.repeat(np.array(local, np.int64), np.diff(cols.bounds)))
        for fp, value in cols.fields.items():
            fields.setdefault(fp, value)
    group_of = np.concatenate(group_of)
    rows = np.concatenate([cols.rows for cols, _ in parts])
    keys = np.concatenate([cols.keys for cols, _ in parts])
    first = np.sort(sealed.unique_keys(keys)[1])          # a record in two files: once
    group_of, rows, keys = group_of[first], rows[first], keys[first]
    order = np.lexsort((rows["time"], group_of))
    return {"groups": groups, "fields": fields, "rows": rows[order], "keys": keys[order],
            "bounds": np.searchsorted(group_of[order], np.arange(len(groups) + 1)).astype(np.int64),
            "lines": b"".join(lines for _, lines in parts)}


def merge(seg_dir: pathlib.Path, paths: list[pathlib.Path]) -> pathlib.Path | None:
    """Merge the sealed files ``paths`` into one, then remove them (a damaged one is left
    as it is). Returns the new file (None when fewer than two could be read)."""
    loaded = []
    for path in paths:
        try:
            loaded.append((path, sealed.load_columns(str(path), with_lines=True)))
        except (sealed.SealedError, OSError):  # damaged (left as it is), or merged by another
            continue
    if len(loaded) < 2:
        return None
    merged = sealed.save(seg_dir, combine([part for _, part in loaded]))
    for path, _ in loaded:
        try:
            os.unlink(path)
        except OSError:
            pass                      # merged by another writer meanwhile: gone already
    return merged


def merge_due(seg_dir: pathlib.Path, seal_bytes: int, limit: int) -> int:
    """Run the merges due (at most :data:`MAX_MERGES`); returns how many ran."""
    done = 0
    while done < MAX_MERGES and (paths := due(seg_dir, seal_bytes, limit)):
        if merge(seg_dir, paths) is None:
            break
        done += 1
    return done

"""A host-local snapshot of a learner's index: a new process loads it instead of parsing
every record of the training directory again.

One file per training directory, ``<user cache dir>/index/<sha256(path)[:16]>.npz``: the
index's rows (numpy), the group of each row, the record ids seen, and as JSON (bytes in
the same file) how far each segment was read, each group's drift state and features, and
each fingerprint's fields. Loaded with ``allow_pickle=False`` (nothing is ever unpickled);
written to a temporary file and renamed (readers see the old file or the new one, whole).
A missing, unreadable or inconsistent snapshot is ignored: the learner then reads the
directory from the start, as without one. The training directory itself stays JSON only.

>>> import tempfile
>>> from amorsize_dask.learning.learner import Learner
>>> with tempfile.TemporaryDirectory() as d:
...     load(Learner(d), 64)
False
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import os
import pathlib

import numpy as np

from .. import config
from .index import ROW, SavedGroup

__all__ = ["VERSION", "EVERY_RECORDS", "path_for", "due", "save", "load"]

logger = logging.getLogger("amorsize_dask")

VERSION = 1
# A snapshot is written once a refresh has indexed this many records since the last one
# (and a tenth of all those seen, so that its cost stays a small share of the reading it
# saves): parsing 1,000 record lines takes 16-24 ms (bench --store 20000: "refresh, 1,000
# foreign records"), paid by every new process's first call until a snapshot is written;
# writing one took 3.5 ms for an index of 20,000 workloads. At 5,000, a script's 1,000
# records of its own were parsed again by each of its runs (29 ms; 2.7 ms resumed).
EVERY_RECORDS = 1_000


def path_for(training_dir) -> pathlib.Path:
    """Where the snapshot of ``training_dir`` is kept (on this host)."""
    key = hashlib.sha256(os.fsencode(os.path.abspath(os.fspath(training_dir)))).hexdigest()[:16]
    return config.user_cache_dir() / "index" / f"{key}.npz"


def due(new_records: int, seen: int) -> bool:
    """Is a snapshot worth writing after ``new_records`` since the last (``seen`` in all)?

    >>> due(100, 100), due(6000, 10_000), due(6000, 100_000)
    (False, True, False)
    """
    return new_records >= max(EVERY_RECORDS, seen // 10)


def save(learner) -> bool:
    """Write ``learner``'s index (never fails the caller: False when it cannot)."""
    segments, ids = learner.store.reader_state()
    groups, fields = learner.index_state()
    meta = {"version": VERSION, "path": os.path.abspath(os.fspath(learner.store.path)), "segments": segments,
            "groups": [[fp, wl, group.state()] for (fp, wl), group in groups], "fields": fields}
    rows = [group.rows[: group.n] for _, group in groups]
    target = path_for(learner.store.path)
    tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    try:
        os.makedirs(target.parent, exist_ok=True)
        buf = io.BytesIO()
        np.savez(buf, rows=np.concatenate(rows) if rows else np.empty(0, ROW),
                 group=np.repeat(np.arange(len(rows), dtype=np.int32), [len(r) for r in rows]),
                 ids=np.asarray(ids, dtype=np.uint64), meta=np.frombuffer(json.dumps(meta).encode(), np.uint8))
        with open(tmp, "wb") as f:
            f.write(buf.getbuffer())
        os.replace(tmp, target)
        return True
    except (OSError, ValueError, TypeError) as exc:
        logger.debug("amorsize_dask: index snapshot not written to %s: %s", target, exc)
        try:
            os.unlink(tmp)
        except OSError:
            pass
        return False


def load(learner, capacity: int) -> bool:
    """Resume ``learner`` (a new one) from its directory's snapshot, ``capacity`` runs per
    workload; False when there is none usable (the learner is left as it was)."""
    target = path_for(learner.store.path)
    try:
        with np.load(target, allow_pickle=False) as data:
            rows, group_of, ids = data["rows"], data["group"], data["ids"]
            meta = json.loads(data["meta"].tobytes())
        if (meta.get("version") != VERSION or rows.dtype != ROW or ids.dtype != np.uint64
                or meta.get("path") != os.path.abspath(os.fspath(learner.store.path))
                or len(group_of) != len(rows) or (len(rows) and not 0 <= group_of.min() <= group_of.max()
                                                  < len(meta["groups"]))):
            raise ValueError("not a snapshot of this directory")
        order = np.argsort(group_of, kind="stable")
        rows = rows[order]                    # each group's rows together: a slice (a view) each
        bounds = np.searchsorted(group_of[order], np.arange(len(meta["groups"]) + 1)).tolist()
        groups = {(str(fp), str(wl)): SavedGroup(state, rows[bounds[i]:bounds[i + 1]], capacity)
                  for i, (fp, wl, state) in enumerate(meta["groups"])}
        learner.restore_index(groups, {str(k): dict(v) for k, v in meta["fields"].items()})
        learner.store.restore_reader_state(meta["segments"], ids)
        return True
    except FileNotFoundError:
        return False
    except Exception as exc:  # a damaged or foreign file: read the directory instead
        logger.debug("amorsize_dask: index snapshot %s ignored: %s", target, exc)
        return False

"""Sealed files: settled records in columns a learner loads without parsing a line."""

import base64
import json
import logging
import multiprocessing
import os
import pathlib
import pickle
import random

import dask
import numpy as np
import pytest

from amorsize_dask.bench.store import fingerprint, synthetic_record, workload, write_directory
from amorsize_dask.learning import merging, sealed
from amorsize_dask.learning.learner import Learner
from amorsize_dask.learning.store import SEGMENTS, TrainingStore
from amorsize_dask.settings import Settings
from tests.test_cli import run_cli
from tests.test_store import rec

MP = multiprocessing.get_context(
    "forkserver" if "forkserver" in multiprocessing.get_all_start_methods() else "spawn")
GROUPS = [(fingerprint(f), workload(w)) for f in range(10) for w in range(10)]


def sealed_files(path):
    return sorted((pathlib.Path(path) / SEGMENTS).glob("*" + sealed.SUFFIX))


def json_segments(path):
    """The appendable segments (not the sealed files, which are JSON lines too)."""
    return sorted(p for p in (pathlib.Path(path) / SEGMENTS).glob("*.jsonl") if not sealed.is_sealed(p.name))


def index_of(learner):
    """What the learner's model sees of every synthetic group (public views only)."""
    return {g: ([o for o in learner.observations(*g)], learner.drifted(*g), learner.features(*g)) for g in GROUPS}


def n_observed(learner, groups=GROUPS):
    return sum(len(learner.observations(*g)) for g in groups)


def ids(records):
    return sorted(r["id"] for r in records)


def test_a_learner_indexes_sealed_files_exactly_as_the_same_records_in_json(tmp_path):
    as_json, as_sealed = tmp_path / "json", tmp_path / "sealed"
    write_directory(as_json, 2000)
    write_directory(as_sealed, 2000, seal_bytes=20_000)      # ~30 records a file, merged in tiers
    assert sealed_files(as_sealed) and len(sealed_files(as_sealed)) < 2000 // 30  # merged: fewer files
    expected = index_of(Learner(as_json))
    assert sum(len(obs) for obs, _, _ in expected.values()) == 2000
    assert index_of(Learner(as_sealed)) == expected
    assert ids(TrainingStore(as_sealed).records()) == ids(TrainingStore(as_json).records())  # lines kept


def test_a_writer_seals_its_segment_and_nothing_is_lost_or_repeated(tmp_path):
    follower = Learner(tmp_path)                              # refreshes while the writer seals
    writer = TrainingStore(tmp_path)
    with dask.config.set({"amorsize.store.seal-bytes": 3000}):
        for i in range(300):
            assert writer.append(rec(i + 1, workload=f"{i % 3:016x}"))
            if i % 7 == 0:
                follower.refresh()
    groups = [(rec(0)["fingerprint"], f"{w:016x}") for w in range(3)]
    assert len(sealed_files(tmp_path)) < merging.FANOUT * 3   # sealed, and merged in tiers
    assert sum(p.stat().st_size for p in json_segments(tmp_path)) < 3000  # only the open one
    records = TrainingStore(tmp_path).records()
    assert sorted(r["features"]["n_items"] for r in records) == list(range(1, 301))
    assert len(set(ids(records))) == 300
    follower.refresh()
    assert n_observed(follower, groups) == 300               # each once, through seals and merges
    assert n_observed(Learner(tmp_path), groups) == 300
    assert TrainingStore(tmp_path).stats().n_records == 300


def test_a_foreign_append_after_a_sealed_load_indexes_only_the_new_records(tmp_path):
    write_directory(tmp_path, 1000, seal_bytes=50_000)
    learner = Learner(tmp_path)
    assert n_observed(learner) == 1000
    write_directory(tmp_path, 25, start=1000, writers=1)      # another writer's JSON lines
    learner.refresh()
    assert n_observed(learner) == 1025
    writer = TrainingStore(tmp_path)
    with dask.config.set({"amorsize.store.seal-bytes": 1}):   # its next append seals at once
        writer.append(synthetic_record(5000, random.Random(0)))
    learner.refresh()
    assert n_observed(learner) == 1026


def _rewrite_header(path: pathlib.Path, change) -> None:
    """Replace the header line of the sealed file at ``path`` by ``change(header dict)``
    (bytes, or a dict to dump), its record lines kept."""
    header, lines = path.read_bytes().split(b"\n", 1)
    new = change(json.loads(header))
    path.write_bytes((new if isinstance(new, bytes) else json.dumps(new).encode()) + b"\n" + lines)


def _set(header, where, value):
    *keys, last = where
    for key in keys:
        header = header[key]
    header[last] = value


_DAMAGE = {
    "truncated": lambda data: data[: len(data) // 2],               # header whole, lines cut
    "truncated-header": lambda data: data[: data.index(b"\n") // 2],  # no newline: no header line
    "no-newline": lambda data: data[: data.index(b"\n")],           # header only, no newline
    "garbage": lambda data: bytes(range(256)) * 40,
    "pickle": lambda data: pickle.dumps({"rows": np.zeros(3)}),      # never unpickled
}
_HEADER = {
    "not-json": lambda h: b"{not json" + json.dumps(h).encode(),
    "deep-json": lambda h: b"[" * 100_000 + b"]" * 100_000,
    "not-an-object": lambda h: [h],
    "truncated-base64": lambda h: _set(h, ["columns", "time", "data"], h["columns"]["time"]["data"][:-3]) or h,
    "not-base64": lambda h: _set(h, ["keys", "data"], "!" + h["keys"]["data"][1:]) or h,
    "wrong-length": lambda h: _set(h, ["keys", "data"], base64.b64encode(bytes(8 * (h["n"] - 1))).decode()) or h,
    "object-dtype": lambda h: _set(h, ["columns", "n_items", "dtype"], "|O") or h,
    "other-dtype": lambda h: _set(h, ["columns", "n_items", "dtype"], "<f8") or h,
    "huge-n": lambda h: _set(h, ["n"], 10**15) or h,
    "no-column": lambda h: h["columns"].pop("engine") and h,
    "lines-size": lambda h: _set(h, ["lines_bytes"], h["lines_bytes"] + 1) or h,
    "inconsistent": lambda h: _set(h, ["bounds", "data"], base64.b64encode(bytes(8 * len(h["groups"]) + 8)).decode())
    or h,                                                            # all groups empty: rows left over
    "hostile-features": lambda h: _set(h["groups"][0], [2], {"bytes_in": "a lot"}) or h,
}


def _damage(path: pathlib.Path, how: str) -> None:
    if how in _DAMAGE:
        path.write_bytes(_DAMAGE[how](path.read_bytes()))
    else:
        _rewrite_header(path, _HEADER[how])


@pytest.mark.parametrize("how", [*_DAMAGE, *_HEADER])
def test_a_damaged_sealed_file_is_skipped_with_a_warning_and_never_pruned(tmp_path, how, caplog):
    (tmp_path / SEGMENTS).mkdir()
    (damaged,) = sealed.write(tmp_path / SEGMENTS, [synthetic_record(i, random.Random(i)) for i in range(400)],
                              limit=1 << 20)
    _damage(damaged, how)
    write_directory(tmp_path, 30, start=400, writers=1)      # JSON lines still there
    with caplog.at_level(logging.WARNING, logger="amorsize_dask"):
        learner = Learner(tmp_path)
        assert n_observed(learner) == 30                     # the JSON ones; no crash
        store = TrainingStore(tmp_path)
        assert len(store.records()) == 30
        assert store.stats().skipped["corrupt-sealed"] == 1
    assert any("damaged sealed file" in r.getMessage() and damaged.name in r.getMessage() for r in caplog.records)
    with pytest.raises(sealed.SealedError):
        sealed.load_lines(str(damaged))                      # every reader: whole or not at all
    store.prune(keep_per_workload=1)
    assert damaged.exists()                                  # what could not be read is never removed
    result = run_cli("stats", "--dir", tmp_path)
    assert "1 corrupt-sealed" in result.output


def test_a_sealed_file_of_a_newer_format_is_skipped_as_future_schema(tmp_path):
    (tmp_path / SEGMENTS).mkdir()
    (newer,) = sealed.write(tmp_path / SEGMENTS, [synthetic_record(i, random.Random(i)) for i in range(20)],
                            limit=1 << 20)
    _rewrite_header(newer, lambda h: dict(h, amorsize_sealed=sealed.VERSION + 1, columns="elsewhere"))
    assert n_observed(Learner(tmp_path)) == 0
    store = TrainingStore(tmp_path)
    assert store.stats().skipped["future-schema"] == 1 and store.stats().skipped["corrupt-sealed"] == 0
    store.prune(keep_per_workload=1)
    assert newer.exists()                                    # left for the newer version


def test_a_half_written_sealed_file_is_not_read(tmp_path):
    write_directory(tmp_path, 10, writers=1)
    (tmp_path / SEGMENTS / ".h-1-0000.sealed.jsonl.tmp").write_bytes(b'{"amorsize_sealed": 1, "gr')  # a writer died
    store = TrainingStore(tmp_path)
    assert len(store.records()) == 10 and not any(store.stats().skipped.values())


def test_prune_and_stats_work_on_sealed_files_from_the_cli(tmp_path):
    write_directory(tmp_path, 600, seal_bytes=40_000)
    assert sealed_files(tmp_path)
    result = run_cli("stats", "--dir", tmp_path)
    assert result.exit_code == 0, result.output
    assert "records: 600 in " in result.output and "skipped: none" in result.output
    for seg in (tmp_path / SEGMENTS).iterdir():
        os.utime(seg, (1, 1))                               # settled long ago
    result = run_cli("prune", "--dir", tmp_path, "--keep", 2)
    assert "removed 400 record(s); 200 remain" in result.output
    records = TrainingStore(tmp_path).records()
    newest = {}
    for r in TrainingStore(tmp_path).records():
        newest.setdefault((r["fingerprint"], r["workload"]), []).append(r["time"])
    assert all(len(times) == 2 for times in newest.values()) and len(records) == 200
    assert sealed_files(tmp_path) and not json_segments(tmp_path)  # compacted into a sealed file
    assert n_observed(Learner(tmp_path)) == 200


def _append_sealing(path, worker, n, seal_bytes):
    with dask.config.set({"amorsize.store.seal-bytes": seal_bytes}):
        store = TrainingStore(path)
        for i in range(n):
            assert store.append(rec(worker * 1000 + i + 1, function=f"w{worker}"))


def test_concurrent_writers_sealing_and_merging_lose_nothing(tmp_path):
    procs = [MP.Process(target=_append_sealing, args=(str(tmp_path), w, 150, 2500)) for w in range(3)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(120)
        assert p.exitcode == 0
    records = TrainingStore(tmp_path).records()
    assert sorted(r["features"]["n_items"] for r in records) == sorted(
        w * 1000 + i + 1 for w in range(3) for i in range(150))
    assert sealed_files(tmp_path)
    fp_wl = (records[0]["fingerprint"], records[0]["workload"])
    with dask.config.set({"amorsize.store.keep-per-workload": 300}):   # all 450 kept in memory
        assert len(Learner(tmp_path).observations(*fp_wl)) == 450


def test_the_store_and_learner_take_sizes_from_the_settings_given(tmp_path):
    from amorsize_dask.learning.records import RecordError

    tiny = Settings.from_config().replace(max_line_bytes=100, keep_per_workload=50)
    with pytest.raises(RecordError, match="max-line-bytes=100"):
        TrainingStore(tmp_path).append(rec(1), tiny)
    assert TrainingStore(tmp_path).append(rec(1))             # the configured default still holds
    assert Learner.group_capacity(tiny) == 100
    with dask.config.set({"amorsize.store.keep-per-workload": 7}):
        assert Learner.group_capacity() == 2 * 32              # at least MIN_KEPT


def test_sealed_files_hold_what_the_model_needs_and_their_lines(tmp_path):
    import random

    records = [synthetic_record(i, random.Random(i)) for i in range(50)]
    (path,) = sealed.write(tmp_path, records, limit=1 << 20)
    cols = sealed.load_columns(str(path))
    assert sorted(cols.keys.tolist()) == sorted(int(r["id"], 16) for r in records)
    assert {(fp, wl) for fp, wl, _, _ in cols.groups} == {(r["fingerprint"], r["workload"]) for r in records}
    assert sealed.load_lines(str(path)).count(b"\n") == 50


def test_a_writer_seals_other_writers_settled_segments_but_not_active_ones(tmp_path):
    from amorsize_dask.learning.sealing import MANY_SEGMENTS

    n = MANY_SEGMENTS + 6
    write_directory(tmp_path, 2 * n, writers=n)               # many short-lived processes: 2 records each
    for seg in json_segments(tmp_path):
        os.utime(seg, (1, 1))                                 # they exited long ago
    write_directory(tmp_path, 3, start=2 * n, writers=1)      # one still writing
    active = max(json_segments(tmp_path), key=lambda p: p.stat().st_mtime)
    writer = TrainingStore(tmp_path)
    assert writer.append(rec(1))                              # its first append looks around
    (own,) = [p for p in json_segments(tmp_path) if f"-{os.getpid()}-" in p.name]
    assert json_segments(tmp_path) == sorted([active, own])   # the settled ones were sealed
    assert active.exists() and sealed_files(tmp_path)
    records = TrainingStore(tmp_path).records()
    assert len(records) == 2 * n + 3 + 1 and len(set(ids(records))) == len(records)
    assert n_observed(Learner(tmp_path)) == 2 * n + 3


def test_a_sealed_file_gone_since_listed_is_not_called_damaged(tmp_path):
    """Another writer merged it away: its records are in the merged file, nothing to warn about."""
    with pytest.raises(FileNotFoundError):
        sealed.load_columns(str(tmp_path / "gone.sealed.jsonl"))
    (tmp_path / SEGMENTS).mkdir()
    paths = [sealed.write(tmp_path / SEGMENTS, [synthetic_record(i, random.Random(i))], limit=1 << 20)[0]
             for i in range(merging.FANOUT)]
    paths[0].unlink()                                         # merged by someone else meanwhile
    assert merging.merge(tmp_path / SEGMENTS, paths) is not None
    assert len(TrainingStore(tmp_path).records()) == merging.FANOUT - 1

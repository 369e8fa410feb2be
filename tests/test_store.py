"""TrainingStore on real directories: concurrency, corruption, hostile files, full disks."""

import importlib.util
import json
import logging
import multiprocessing
import os
import pathlib
import pickle
import shutil
import sys
import tempfile
import warnings

import dask
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

ROOT = pathlib.Path(__file__).resolve().parents[1]
if importlib.util.find_spec("amorsize_dask") is None:  # not installed: test this checkout
    sys.path.insert(0, str(ROOT))

from amorsize_dask.learning.records import RecordError, make_record, validate_record
from amorsize_dask.learning.store import SKIP_REASONS, StoreStats, TrainingStore

FP = "a1b2c3d4e5f6a7b8"
WL = "0123456789abcdef"
MP = multiprocessing.get_context(
    "forkserver" if "forkserver" in multiprocessing.get_all_start_methods() else "spawn")


def rec(i=0, *, fingerprint=FP, workload=WL, function="mod.work", time=None):
    return make_record(
        fingerprint=fingerprint, fingerprint_fields={"cores": 2, "cpu_model": "AMD EPYC"},
        workload=workload, function=function,
        features={"n_items": i, "item_seconds": 0.001, "bytes_in": 28.0},
        engine="processes", n_workers=2, chunksize=50, source="sample", wall_seconds=1.25,
        compute_seconds=2.5, predicted_seconds=None, time=1_700_000_000.0 + i if time is None
        else time)


def strip(records):
    return [{k: v for k, v in r.items() if k != "id"} for r in records]


def canon(records):
    return sorted(json.dumps(r, sort_keys=True) for r in strip(records))


def segment_files(path):
    """The segments and sealed files (prune and sealing write ``*.sealed.jsonl``)."""
    return sorted((pathlib.Path(path) / "segments").glob("*.jsonl"))


def plant(path, name, data: bytes):
    seg = pathlib.Path(path) / "segments"
    seg.mkdir(parents=True, exist_ok=True)
    (seg / name).write_bytes(data)
    return seg / name


def line(record) -> bytes:
    return json.dumps(record, separators=(",", ":")).encode() + b"\n"


# -- child processes (module level: they travel to forkserver/spawn children) --------
def _write_many(path, worker, n):
    store = TrainingStore(path)
    for i in range(n):
        assert store.append(rec(i, function=f"w{worker}"))


def _write_distinct(path, n, started):
    store = TrainingStore(path)
    for i in range(n):
        assert store.append(rec(i, workload=f"{i:016x}", fingerprint="f" * 16))
        if i == 10:
            started.set()


# -- basics -------------------------------------------------------------------------
def test_round_trip_and_layout(tmp_path):
    store = TrainingStore(tmp_path / "train")
    assert not (tmp_path / "train").exists()             # created lazily
    assert store.records() == [] and len(store) == 0     # reading creates nothing
    assert not (tmp_path / "train").exists()
    written = [rec(i) for i in range(5)]
    assert all(store.append(r) for r in written)
    got = store.records()
    assert strip(got) == written
    assert len({r["id"] for r in got}) == 5
    assert all(len(r["id"]) == 16 for r in got)
    (seg,) = segment_files(tmp_path / "train")
    host, pid, token = seg.stem.rsplit("-", 2)
    assert pid == str(os.getpid()) and len(token) == 8
    assert all(c.isalnum() or c in "-_" for c in host) and len(host) <= 32
    data = seg.read_bytes()
    assert data.count(b"\n") == 5 and data.endswith(b"\n") and b", " not in data
    assert strip(TrainingStore(tmp_path / "train").records()) == written  # a fresh reader


def test_default_path_from_config(tmp_path):
    with dask.config.set({"amorsize.training-dir": str(tmp_path / "cfg")}):
        assert TrainingStore().path == tmp_path / "cfg"
    assert TrainingStore(str(tmp_path)).path == tmp_path


def test_append_rejects_bad_records(tmp_path):
    store = TrainingStore(tmp_path)
    with pytest.raises(RecordError):
        store.append({"schema": 1})
    with pytest.raises(RecordError, match="max-line-bytes"):
        with dask.config.set({"amorsize.store.max-line-bytes": 200}):
            store.append(rec())
    assert store.records() == []


def test_stats(tmp_path):
    store = TrainingStore(tmp_path)
    for i in range(3):
        store.append(rec(i))
    store.append(rec(9, workload="f" * 16))
    store.append(rec(9, fingerprint="0" * 16))
    s = store.stats()
    assert isinstance(s, StoreStats)
    assert (s.path, s.n_records, s.n_segments) == (tmp_path, 5, 1)
    assert s.n_bytes == segment_files(tmp_path)[0].stat().st_size
    assert s.skipped == dict.fromkeys(SKIP_REASONS, 0)
    assert s.per_fingerprint == {FP: 4, "0" * 16: 1}
    assert s.per_workload == {(FP, WL): 3, (FP, "f" * 16): 1, ("0" * 16, WL): 1}


def test_store_pickles_by_path(tmp_path):
    store = TrainingStore(tmp_path)
    store.append(rec())
    clone = pickle.loads(pickle.dumps(store))
    assert clone.path == store.path and strip(clone.records()) == [rec()]


records_strategy = st.builds(
    lambda i, t, fp, wl, fn, extra, wall: make_record(
        fingerprint=fp, fingerprint_fields=extra, workload=wl, function=fn,
        features={"n_items": i}, engine="threads", n_workers=3, chunksize=1 + i % 7,
        source="model", wall_seconds=wall, compute_seconds=wall / 2, time=t),
    st.integers(0, 2**63 - 1),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text("0123456789abcdef", min_size=16, max_size=16),
    st.text("0123456789abcdef", min_size=16, max_size=16),
    st.text(max_size=40).filter(str.isprintable),
    st.dictionaries(st.text(max_size=20).filter(str.isprintable), st.one_of(
        st.text(max_size=40).filter(str.isprintable), st.integers(-(2**63) + 1, 2**63 - 1), st.booleans(),
        st.floats(allow_nan=False, allow_infinity=False)), max_size=8),
    st.floats(min_value=1e-9, max_value=1e9))


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(records_strategy, max_size=20))
def test_any_valid_records_read_back_equal(written):
    with tempfile.TemporaryDirectory() as tmp:
        store = TrainingStore(tmp)
        for r in written:
            assert store.append(r)
        assert canon(store.records()) == canon(written)
        assert canon(TrainingStore(tmp).records()) == canon(written)
        times = [r["time"] for r in store.records()]
        assert times == sorted(times)                 # oldest first


def test_concurrent_writer_processes(tmp_path):
    procs = [MP.Process(target=_write_many, args=(str(tmp_path), w, 500)) for w in range(8)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(120)
        assert p.exitcode == 0
    store = TrainingStore(tmp_path)
    got = store.records()
    assert len(got) == 4000
    assert {(r["function"], r["features"]["n_items"]) for r in got} == {
        (f"w{w}", i) for w in range(8) for i in range(500)}
    s = store.stats()
    assert s.skipped == dict.fromkeys(SKIP_REASONS, 0) and s.n_segments == 8


def test_fork_child_writes_its_own_segment(tmp_path):
    if not hasattr(os, "fork"):
        pytest.skip("no fork")
    store = TrainingStore(tmp_path)
    store.append(rec(1))
    pid = os.fork()
    if pid == 0:                                  # child: exit without pytest teardown
        os._exit(0 if store.append(rec(2)) else 1)
    assert os.waitpid(pid, 0)[1] == 0
    store.append(rec(3))
    assert len(segment_files(tmp_path)) == 2
    assert sorted(r["features"]["n_items"] for r in store.records()) == [1, 2, 3]


def test_rolls_to_new_segment(tmp_path):
    store = TrainingStore(tmp_path)
    with dask.config.set({"amorsize.store.max-segment-bytes": 2000}):
        for i in range(10):
            store.append(rec(i))
    assert len(segment_files(tmp_path)) >= 3
    assert len(store) == 10


# -- incremental reading ------------------------------------------------------------
def test_incremental_refresh_reads_only_new_bytes(tmp_path):
    writer, reader = TrainingStore(tmp_path), TrainingStore(tmp_path)
    for i in range(100):
        writer.append(rec(i))
    assert len(reader.records()) == 100
    first = reader.bytes_read
    assert first == segment_files(tmp_path)[0].stat().st_size
    reader.records()
    reader.stats()
    assert reader.bytes_read == first                # nothing new: nothing read
    writer.append(rec(100))
    assert len(reader.records()) == 101
    assert reader.bytes_read - first == len(line(writer.records()[-1]))


def test_torn_last_line_skipped_then_read_when_completed(tmp_path):
    full = line(validate_record(dict(rec(7), id="00000000000000aa")))
    path = plant(tmp_path, "otherhost-1-deadbeef.jsonl", line(rec(1)) + full[:40])
    store = TrainingStore(tmp_path)
    assert strip(store.records()) == [rec(1)]
    assert store.stats().skipped["torn"] == 1
    with open(path, "ab") as f:                       # the writer finishes its line
        f.write(full[40:])
    assert strip(store.records()) == [rec(1), rec(7)]
    assert store.stats().skipped["torn"] == 0


def test_corrupt_lines_skipped_and_counted(tmp_path):
    good = line(rec(1))
    bad_values = [json.dumps(rec(2)).replace("1.25", v).encode() + b"\n"
                  for v in ("NaN", "Infinity", "-Infinity", "1" * 5000)]
    data = b"".join([
        good, b"not json at all\n", b"\xff\xfe garbage \x00\n", b"\n",
        b"x" * 200_000 + b"\n",                                        # too long
        line(dict(rec(3), schema=2)),                                  # future schema
        line(dict(rec(4), wall_seconds=-1)), line([1, 2]),             # invalid
        line(dict(rec(5), n_workers=10**30)),                          # huge int (dropped key)
        line(dict(rec(6), plan={"engine": "x"})),
        b"[" * 30_000 + b"]" * 30_000 + b"\n",                         # deep nesting
        b'{"schema":1,"time":' + b"9" * 6000 + b"}\n",                 # int too long to parse
        *bad_values, good.replace(b'"n_items":1', b'"n_items":8'),
    ])
    plant(tmp_path, "h-1-00000000.jsonl", data)
    plant(tmp_path, "h-2-00000000.jsonl", bytes(range(256)) * 100)     # binary garbage
    store = TrainingStore(tmp_path)
    items = sorted(r["features"]["n_items"] for r in store.records())
    assert items == [1, 5, 8]
    skipped = store.stats().skipped
    assert skipped["too-long"] == 1 and skipped["future-schema"] == 1
    assert skipped["invalid"] == 3
    assert skipped["not-json"] == 3 + 2 + 4 + 100  # lines + bombs + bad values + binary
    assert skipped["torn"] == 1                   # the binary file has no final newline


def test_json_bombs_parsed_without_crash(tmp_path):
    with dask.config.set({"amorsize.store.max-line-bytes": 10_000_000}):
        plant(tmp_path, "h-1-00000000.jsonl", b"[" * 100_000 + b"]" * 100_000 + b"\n"
              + b'{"a":' * 100_000 + b"1" + b"}" * 100_000 + b"\n" + line(rec(1)))
        store = TrainingStore(tmp_path)
        assert strip(store.records()) == [rec(1)]
        assert store.stats().skipped["not-json"] == 2


def test_long_line_streams_in_bounded_blocks(tmp_path):
    path = plant(tmp_path, "h-1-00000000.jsonl", line(rec(1)) + b"y" * 3_000_000)
    store = TrainingStore(tmp_path)
    assert len(store.records()) == 1 and store.stats().skipped["torn"] == 1
    read = store.bytes_read
    with open(path, "ab") as f:
        f.write(b"y" * 1000 + b"\n" + line(rec(2)))
    assert len(store.records()) == 2
    assert store.bytes_read - read < 10_000          # resumed, not rescanned
    assert store.stats().skipped == dict(dict.fromkeys(SKIP_REASONS, 0), **{"too-long": 1})


def test_oversized_file_not_read(tmp_path):
    plant(tmp_path, "h-1-00000000.jsonl", line(rec(1)) * 50)
    TrainingStore(tmp_path).append(rec(2))
    with dask.config.set({"amorsize.store.max-segment-bytes": 5000}):
        store = TrainingStore(tmp_path)
        assert strip(store.records()) == [rec(2)]
        assert store.stats().skipped["oversized-file"] == 1
        assert store.bytes_read < 1000


def test_truncated_or_replaced_segment_is_reread(tmp_path):
    path = plant(tmp_path, "h-1-00000000.jsonl", line(rec(1)) + line(rec(2)))
    store = TrainingStore(tmp_path)
    assert len(store.records()) == 2
    path.write_bytes(line(rec(3)))                    # shorter: truncated and rewritten
    assert strip(store.records()) == [rec(3)]


# -- hostile directory contents ------------------------------------------------------
class Evil:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_planted_files_never_loaded_or_followed(tmp_path):
    train, outside = tmp_path / "train", tmp_path / "outside"
    marker = tmp_path / "PWNED"
    payload = pickle.dumps(Evil(marker))
    outside.mkdir()
    secret = outside / "secret.jsonl"
    secret.write_bytes(line(rec(99)))
    store = TrainingStore(train)
    store.append(rec(1))
    seg = train / "segments"
    for name in ("x.pkl", "evil.jsonl.pkl", "evil.npy"):
        (seg / name).write_bytes(payload)
        (train / name).write_bytes(payload)
    (seg / "evil.jsonl").write_bytes(payload + b"\n")  # a pickle disguised as a segment
    code = f"open({str(marker)!r}, 'w').close()\n"
    for target in (seg, train):
        (target / "evil.py").write_text(code)
        (target / "evil.pth").write_text("import os; " + code)
        (target / "__init__.py").write_text(code)
    (seg / "link.jsonl").symlink_to(secret)
    (seg / "dir.jsonl").mkdir()
    os.mkfifo(seg / "fifo.jsonl")
    store.settle_seconds = 0
    for s in (store, TrainingStore(train)):
        assert strip(s.records()) == [rec(1)]
        skipped = s.stats().skipped
        assert skipped["not-regular-file"] == 3 and skipped["not-json"] >= 1
    assert store.prune(keep_per_workload=5) == 0
    TrainingStore(train).prune(keep_per_workload=0)
    assert not marker.exists()
    assert secret.read_bytes() == line(rec(99))       # the symlink target is untouched
    assert (seg / "link.jsonl").is_symlink()
    assert "evil" not in sys.modules
    assert {p.name for p in tmp_path.iterdir()} == {"train", "outside"}


def test_created_files_not_world_writable(tmp_path):
    old = os.umask(0o022)
    try:
        store = TrainingStore(tmp_path / "a" / "train")
        store.append(rec())
        store.append(rec(1, workload="f" * 16))
        store.prune(keep_per_workload=1)
    finally:
        os.umask(old)
    for p in [tmp_path / "a", *(tmp_path / "a").rglob("*")]:
        assert p.stat().st_mode & 0o002 == 0, p


# -- unwritable directories -----------------------------------------------------------
def _assert_one_warning(store, caplog, n=3):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with caplog.at_level(logging.WARNING, logger="amorsize_dask"):
            results = [store.append(rec(i)) for i in range(n)]
    assert results == [False] * n
    assert [w.category for w in caught] == [RuntimeWarning]
    assert str(store.path) in str(caught[0].message)
    assert caught[0].filename == __file__             # attributed to the caller of append
    assert len([r for r in caplog.records if r.name == "amorsize_dask"]) == 1


def test_unwritable_directory_returns_false_and_warns_once(tmp_path, caplog):
    (tmp_path / "afile").write_text("a regular file")
    store = TrainingStore(tmp_path / "afile" / "store")
    _assert_one_warning(store, caplog)
    assert store.records() == [] and store.stats().n_records == 0


class FullDiskStore(TrainingStore):
    """Opens /dev/full: every write fails with a real ENOSPC from the kernel."""

    def _open_segment(self):
        return os.open("/dev/full", os.O_WRONLY | os.O_APPEND)


@pytest.mark.skipif(not os.path.exists("/dev/full"), reason="needs /dev/full")
def test_full_disk_returns_false_and_warns_once(tmp_path, caplog):
    _assert_one_warning(FullDiskStore(tmp_path), caplog)


def test_directory_deleted_while_running(tmp_path):
    store = TrainingStore(tmp_path / "train")
    for i in range(3):
        store.append(rec(i))
    shutil.rmtree(tmp_path / "train")
    assert store.records() == []
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert store.append(rec(3))                   # recreated, not lost
    assert strip(store.records()) == [rec(3)]


# -- pruning ---------------------------------------------------------------------------
def test_prune_keeps_newest_per_fingerprint_and_workload(tmp_path):
    store = TrainingStore(tmp_path)
    for wl in ("1" * 16, "2" * 16):
        for i in range(10):
            store.append(rec(i, workload=wl))
    for i in range(3):
        store.append(rec(i, fingerprint="0" * 16))
    store.append(rec(0, workload="1" * 16, time=4e9))  # a clock in the future: newest
    assert store.prune(keep_per_workload=4) == 7 + 6
    got = store.records()
    assert store.stats().per_workload == {(FP, "1" * 16): 4, (FP, "2" * 16): 4,
                                          ("0" * 16, WL): 3}
    assert [r["features"]["n_items"] for r in got if r["workload"] == "1" * 16] == [
        7, 8, 9, 0]
    assert len(segment_files(tmp_path)) == 1
    assert TrainingStore(tmp_path).stats().n_records == 11
    assert store.prune(keep_per_workload=4) == 0
    store.append(rec(20))
    assert len(store) == 12                           # appending after prune still works


def test_prune_default_from_config(tmp_path):
    store = TrainingStore(tmp_path)
    for i in range(5):
        store.append(rec(i))
    with dask.config.set({"amorsize.store.keep-per-workload": 2}):
        assert store.prune() == 3
    assert len(store) == 2


def test_prune_leaves_active_segments_of_other_writers(tmp_path):
    plant(tmp_path, "other-1-00000000.jsonl", b"".join(line(rec(i)) for i in range(5)))
    store = TrainingStore(tmp_path)
    assert store.prune(keep_per_workload=1) == 0      # written just now: may be active
    os.utime(segment_files(tmp_path)[0], (1, 1))      # quiet for decades: settled
    assert store.prune(keep_per_workload=1) == 4
    assert strip(store.records()) == [rec(4)]


def test_prune_never_drops_future_schema_records(tmp_path):
    future = line(dict(rec(1), schema=2, new_field=[1]))
    path = plant(tmp_path, "newer-1-00000000.jsonl", line(rec(0)) + future)
    os.utime(path, (1, 1))
    store = TrainingStore(tmp_path)
    store.append(rec(2))
    assert store.prune(keep_per_workload=1) == 0      # rec(0) stays with its neighbour
    assert path.read_bytes().endswith(future)
    assert store.stats().skipped["future-schema"] == 1


class RacingStore(TrainingStore):
    """Another writer appends to a segment just after prune has read it."""

    def _write_compacted(self, records, settings):
        super()._write_compacted(records, settings)
        with open(self.path / "segments" / "other-1-00000000.jsonl", "ab") as f:
            f.write(line(validate_record(dict(rec(50), id="00000000000000ff"))))


def test_prune_keeps_segment_appended_to_during_compaction(tmp_path):
    plant(tmp_path, "other-1-00000000.jsonl", b"".join(
        line(validate_record(dict(rec(i), id=f"{i:016x}"))) for i in range(5)))
    os.utime(segment_files(tmp_path)[0], (1, 1))
    store = RacingStore(tmp_path)
    store.prune(keep_per_workload=3)
    got = TrainingStore(tmp_path).records()
    assert sorted(r["features"]["n_items"] for r in got) == [0, 1, 2, 3, 4, 50]
    assert len(segment_files(tmp_path)) == 2          # the grown original stays


def test_prune_with_concurrent_writer_process(tmp_path):
    store = TrainingStore(tmp_path)
    for i in range(50):
        store.append(rec(i))
    started = MP.Event()
    writer = MP.Process(target=_write_distinct, args=(str(tmp_path), 300, started))
    writer.start()
    assert started.wait(60)
    prunes = 0
    while writer.is_alive() or prunes < 3:
        store.prune(keep_per_workload=10)
        prunes += 1
    writer.join(60)
    assert writer.exitcode == 0
    store.prune(keep_per_workload=10)
    got = TrainingStore(tmp_path).records()
    assert sorted(r["features"]["n_items"] for r in got if r["fingerprint"] == "f" * 16) == list(
        range(300))
    assert sorted(r["features"]["n_items"] for r in got if r["fingerprint"] == FP) == list(
        range(40, 50))

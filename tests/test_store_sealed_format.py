"""The sealed files' format: JSON lines (a header of base64 columns, then the records' lines)."""

import json
import os
import random

import numpy as np
import pytest

from amorsize_dask.bench.store import synthetic_record, write_directory
from amorsize_dask.learning import model, sealed, sealing
from amorsize_dask.learning.index import ROW, row_of
from amorsize_dask.learning.records import encode_line
from amorsize_dask.learning.segments import Segment, new_segment_name
from amorsize_dask.learning.store import SEGMENTS, TrainingStore
from amorsize_dask.settings import Settings

MAX_LINE = Settings.from_config().size("max_line_bytes")


def records_of(n_bytes: int) -> list[dict]:
    """Synthetic records whose lines hold about ``n_bytes``."""
    records, size = [], 0
    while size < n_bytes:
        records.append(synthetic_record(len(records), random.Random(len(records))))
        size += len(encode_line(records[-1]))
    return records


def test_a_sealed_file_round_trips_its_records_as_columns_and_lines(tmp_path):
    records = [synthetic_record(i, random.Random(i)) for i in range(300)]
    (path,) = sealed.write(tmp_path, records, limit=1 << 20)
    assert sealed.is_sealed(path.name) and path.name.endswith(".sealed.jsonl")
    header = json.loads(path.read_bytes().split(b"\n", 1)[0])
    assert header["amorsize_sealed"] == sealed.VERSION and header["n"] == 300
    assert {c["dtype"] for c in header["columns"].values()} <= {"<i8", "<f8", "|i1", "<i4"}
    cols = sealed.load_columns(str(path))
    by_key = {int(r["id"], 16): r for r in records}
    assert cols.rows.dtype == ROW and sorted(cols.keys.tolist()) == sorted(by_key)
    expected = np.array([row_of(model.fields_of_record(by_key[k])) for k in cols.keys.tolist()], ROW)
    assert cols.rows.tobytes() == expected.tobytes()          # NaNs too, bit for bit
    for i, (fp, wl, features, when) in enumerate(cols.groups):
        group = sorted((r for r in records if (r["fingerprint"], r["workload"]) == (fp, wl)), key=lambda r: r["time"])
        assert cols.keys[cols.bounds[i]: cols.bounds[i + 1]].tolist() == [int(r["id"], 16) for r in group]
        sampled = [r for r in group if "bytes_in" in r["features"]]
        assert (features, when) == ((sampled[-1]["features"], sampled[-1]["time"]) if sampled else (None, None))
        assert cols.fields[fp] == group[0]["fingerprint_fields"]
    assert cols.bounds[-1] == 300 == len(records)
    assert sealed.load_lines(str(path)) == b"".join(encode_line(r) for r in records)
    seg = Segment(0)
    seg.read_lines(sealed.load_lines(str(path)), MAX_LINE)
    assert seg.records == records and not seg.skipped


@pytest.mark.parametrize("n_bytes, reason", [(1 << 20, "too-long"), (1500, "invalid")], ids=["1MiB", "small"])
def test_a_reader_of_segments_only_reads_every_record_of_a_sealed_file(tmp_path, n_bytes, reason):
    """What a version that reads ``*.jsonl`` as segments gets of a sealed file: every record,
    the header skipped and counted (too long for a line, or no record)."""
    records = records_of(n_bytes - 700)
    (path,) = sealed.write(tmp_path, records, limit=n_bytes)
    header_bytes = path.read_bytes().index(b"\n")
    assert (header_bytes > MAX_LINE) == (reason == "too-long")
    seg = Segment(0)
    fd = os.open(path, os.O_RDONLY)
    try:
        seg.read(fd, os.fstat(fd).st_size, MAX_LINE)          # the segment reader, in bounded blocks
    finally:
        os.close(fd)
    assert seg.records == records and not seg.torn
    assert dict(seg.skipped) == {reason: 1}


def test_appendable_segments_and_sealed_files_are_never_taken_for_each_other(tmp_path):
    assert not sealed.is_sealed(new_segment_name()) and new_segment_name().endswith(".jsonl")
    write_directory(tmp_path, 2000, writers=1, seal_bytes=100_000)     # sealed files, one segment
    seg_dir = tmp_path / SEGMENTS
    names = sorted(os.listdir(seg_dir))
    (segment,) = [n for n in names if not sealed.is_sealed(n)]
    sealed_bytes = sum((seg_dir / n).stat().st_size for n in names if sealed.is_sealed(n))
    assert sealed_bytes > (seg_dir / segment).stat().st_size and len(names) > 2
    store = TrainingStore(tmp_path)
    assert len(store.records()) == 2000 and not any(store.stats().skipped.values())
    # Sealing counts only appendable segments: the sealed files' bytes do not make it due.
    assert sealing.seal_settled(seg_dir, settled=lambda name, mtime: True, max_line=MAX_LINE,
                                seal_bytes=sealed_bytes, limit=1 << 30) == 0
    assert sorted(os.listdir(seg_dir)) == names
    in_segment = (seg_dir / segment).read_bytes().count(b"\n")
    assert sealing.seal_settled(seg_dir, settled=lambda name, mtime: True, max_line=MAX_LINE,
                                seal_bytes=1, limit=1 << 30) == in_segment
    assert all(sealed.is_sealed(n) for n in os.listdir(seg_dir))
    assert sorted(r["id"] for r in TrainingStore(tmp_path).records()) == [f"{i + 1:016x}" for i in range(2000)]


def test_sealed_files_of_the_development_npz_format_are_ignored(tmp_path):
    write_directory(tmp_path, 10, writers=1)
    old = tmp_path / SEGMENTS / "h-1-0000aaaa.npz"
    np.savez(old, rows=np.zeros(3), meta=np.frombuffer(b'{"version": 1}', np.uint8))
    store = TrainingStore(tmp_path)
    assert len(store.records()) == 10 and store.stats().n_segments == 1
    assert not any(store.stats().skipped.values())
    store.settle_seconds = 0
    store.prune(keep_per_workload=1)
    assert old.exists()                                       # not ours to remove either


def test_a_learner_parses_a_sealed_files_header_line_only(tmp_path):
    from amorsize_dask.learning.learner import Learner

    (tmp_path / SEGMENTS).mkdir()
    records = [synthetic_record(i, random.Random(i)) for i in range(200)]
    (path,) = sealed.write(tmp_path / SEGMENTS, records, limit=1 << 20)
    header, lines = path.read_bytes().split(b"\n", 1)
    first = lines.index(b"\n")
    path.write_bytes(header + b"\n" + b"x" * first + lines[first:])   # a record line no parser accepts
    learner = Learner(tmp_path)
    assert sum(len(learner.observations(r["fingerprint"], r["workload"]))
               for r in {(r["fingerprint"], r["workload"]): r for r in records}.values()) == 200
    store = TrainingStore(tmp_path)
    assert len(store.records()) == 199 and store.stats().skipped["not-json"] == 1   # whoever reads lines sees it

"""The training directory at scale: incremental reads, a compact index, bounded growth."""

import gc
import os
import tracemalloc

import dask
import pytest

from amorsize_dask.bench.store import FINGERPRINTS, WORKLOADS, fingerprint, workload, write_directory
from amorsize_dask.learning.learner import Learner
from amorsize_dask.learning.records import encode_line, validate_record
from amorsize_dask.learning.store import TrainingStore
from tests.test_store import FP, WL, plant, rec, segment_files

GROUPS = [(fingerprint(f), workload(w)) for f in range(FINGERPRINTS) for w in range(WORKLOADS)]


def indexed(learner, fingerprint, workload):
    """The observations the learner's index holds for one workload (after a refresh)."""
    return learner.observations(fingerprint, workload)


def n_indexed(learner):
    """Observations of all the synthetic directory's workloads (:func:`write_directory`)."""
    return sum(len(learner.observations(*group)) for group in GROUPS)


def _with_id(i, **kwargs):
    return validate_record(dict(rec(i, **kwargs), id=f"{i:016x}"))


def test_compact_reader_hands_out_each_record_once_and_reads_only_new_bytes(tmp_path):
    writer, reader = TrainingStore(tmp_path), TrainingStore(tmp_path, compact=True)
    for i in range(100):
        writer.append(rec(i))
    assert len(reader.read_new()) == 100
    first = reader.bytes_read
    assert reader.read_new() == [] and reader.bytes_read == first  # nothing new: nothing read
    writer.append(rec(100))
    new = reader.read_new()
    assert [r["features"]["n_items"] for r in new] == [100]
    assert reader.bytes_read - first == len(encode_line(writer.records()[-1]))
    writer.prune(keep_per_workload=1000)             # compacted into a new segment: same ids
    assert reader.read_new() == []
    reader.append(rec(101))                           # its own record: the caller has it
    assert reader.read_new() == []
    assert len(reader.records()) == 102               # records() still works (read afresh)
    assert reader.n_seen == 102                       # each handed out (or appended) once


def test_learner_index_is_updated_not_rebuilt_after_a_foreign_append(tmp_path):
    writer = TrainingStore(tmp_path)
    for i in range(50):
        writer.append(rec(1000 + i))
    learner = Learner(tmp_path)
    before = indexed(learner, FP, WL)
    assert len(before) == 50
    read = learner.store.bytes_read
    writer.append(rec(2000))
    assert indexed(learner, FP, WL)[:50] == before and len(indexed(learner, FP, WL)) == 51
    assert learner.store.bytes_read - read == len(encode_line(writer.records()[-1]))  # the new line only


@pytest.mark.parametrize("seal_bytes", [None, 200_000])
def test_a_loaded_learner_keeps_under_400_bytes_per_record(tmp_path, seal_bytes):
    n = 5000
    write_directory(tmp_path, n, seal_bytes=seal_bytes)     # JSON lines, or mostly sealed files
    gc.collect()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        learner = Learner(tmp_path)
        learner.refresh()
        gc.collect()
        kept = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    assert n_indexed(learner) == n
    print(f"{kept / n:.0f} bytes per record")
    assert kept / n <= 400, f"{kept / n:.0f} bytes per record"


def test_writers_keep_the_directory_within_its_budget(tmp_path):
    budget = 40_000
    other = plant(tmp_path, "otherhost-1-00000000.jsonl", b"".join(
        encode_line(_with_id(10_000 + i, workload="f" * 16)) for i in range(5)))  # active, not ours
    store = TrainingStore(tmp_path)
    sizes = []
    with dask.config.set({"amorsize.store.max-bytes": budget}):
        for i in range(600):
            assert store.append(rec(i, workload=f"{i % 7:016x}"))
            sizes.append(sum(p.stat().st_size for p in segment_files(tmp_path)))
    line_bytes = len(encode_line(_with_id(599)))
    assert max(sizes) <= budget + budget // 16 + line_bytes
    assert sum(p.stat().st_size for p in segment_files(tmp_path)) > budget // 4  # pruned, not wiped
    got = TrainingStore(tmp_path).records()
    assert max(r["features"]["n_items"] for r in got if r["workload"] != "f" * 16) == 599  # newest kept
    assert other.exists() and sum(r["workload"] == "f" * 16 for r in got) == 5  # another writer's: kept
    assert store.stats().n_records == len(got)


def test_no_budget_means_no_automatic_pruning(tmp_path):
    store = TrainingStore(tmp_path)
    with dask.config.set({"amorsize.store.max-bytes": None, "amorsize.store.keep-per-workload": 1}):
        for i in range(20):
            store.append(rec(i))
    assert len(store) == 20


def test_a_new_learner_resumes_from_this_host_s_snapshot(tmp_path):
    from amorsize_dask.learning import snapshot

    n = snapshot.EVERY_RECORDS + 10
    write_directory(tmp_path, n, writers=1)
    (seg,) = segment_files(tmp_path)
    first = Learner(tmp_path)
    first.refresh()
    assert snapshot.path_for(tmp_path).exists()      # many records indexed: a snapshot written
    group = GROUPS[11]
    expected = indexed(first, *group)

    second = Learner(tmp_path)
    assert indexed(second, *group) == expected
    assert second.store.bytes_read == 0              # nothing parsed: resumed from the snapshot
    TrainingStore(tmp_path).append(rec(9_999_999, fingerprint=group[0], workload=group[1]))
    assert len(indexed(second, *group)) == len(expected) + 1
    assert second.store.bytes_read < 1000            # the foreign line only

    snapshot.path_for(tmp_path).write_bytes(b"garbage")   # damaged: ignored, the directory is read
    third = Learner(tmp_path)
    assert len(indexed(third, *group)) == len(expected) + 1
    assert third.store.bytes_read >= seg.stat().st_size


def test_a_learner_resumed_from_a_snapshot_builds_only_the_groups_asked_for(tmp_path):
    """Building every workload's group cost a new process ~29 us per workload (20,000
    one-run workloads: ~0.5 s of its first call); asked for, each answers as it did."""
    from amorsize_dask.learning import snapshot
    from amorsize_dask.learning.index import SavedGroup

    write_directory(tmp_path, snapshot.EVERY_RECORDS + 10, writers=1)
    first = Learner(tmp_path)
    first.refresh()
    second = Learner(tmp_path)
    asked = GROUPS[11]
    assert indexed(second, *asked) == indexed(first, *asked)
    assert [key for key, g in second._groups.items() if type(g) is not SavedGroup] == [asked]
    fields = dict(second._fields[fingerprint(3)], cores=99)          # a new machine: borrows
    for fp, wl in GROUPS:
        assert second.features(fp, wl) == first.features(fp, wl)
        assert second.drifted(fp, wl) == first.drifted(fp, wl)
        assert second.predict(fp, wl, 500, cores=2, explore=False) == first.predict(fp, wl, 500, cores=2,
                                                                                    explore=False)
        assert second.predict("f" * 16, wl, 500, cores=2, fields=fields, explore=False) == first.predict(
            "f" * 16, wl, 500, cores=2, fields=fields, explore=False)
    before = len(indexed(second, *asked))
    TrainingStore(tmp_path).append(rec(9_999_999, fingerprint=asked[0], workload=asked[1]))
    assert len(indexed(second, *asked)) == before + 1                        # a new run joins it


def test_a_learner_that_loaded_many_sealed_records_leaves_a_snapshot(tmp_path):
    """Sealed files are indexed without parsing a line, but their headers (each workload's
    features) are decoded and checked per workload: 20,000 one-run workloads (a loop whose
    partial changed each call) took 0.24-0.29 s of every new process's first call, and
    ~5 ms from a snapshot, which was never written while only parsed lines counted."""
    from amorsize_dask.learning import snapshot

    n = snapshot.EVERY_RECORDS + 10
    write_directory(tmp_path, n, writers=1, seal_bytes=100_000, workloads=500)
    sealed_bytes = sum(f.stat().st_size for f in (tmp_path / "segments").glob("*.sealed.jsonl"))
    assert sealed_bytes > 0.9 * sum(f.stat().st_size for f in segment_files(tmp_path))  # nearly all sealed
    first = Learner(tmp_path)
    first.refresh()
    assert snapshot.path_for(tmp_path).exists()      # many records indexed: a snapshot written
    group = (fingerprint(1), workload(11))
    expected = indexed(first, *group)
    assert expected
    second = Learner(tmp_path)
    assert indexed(second, *group) == expected
    assert second.store.bytes_read < 100_000         # no sealed file read again: resumed


def test_sealed_runs_with_nothing_to_learn_from_count_towards_a_snapshot(tmp_path):
    """The loop's calls were 50 items each, all sampled: no row to index, but each
    workload's features are decoded from the header all the same."""
    import random

    from amorsize_dask.bench.store import synthetic_record
    from amorsize_dask.learning import sealed, snapshot

    rng = random.Random(0)
    records = [synthetic_record(i, rng, workloads=snapshot.EVERY_RECORDS + 10)
               for i in range(snapshot.EVERY_RECORDS + 10)]
    for r in records:
        r["features"]["n_sampled"] = r["features"]["n_items"]
    (tmp_path / "segments").mkdir()
    sealed.write(tmp_path / "segments", records, 1 << 20)
    first = Learner(tmp_path)
    first.refresh()
    assert snapshot.path_for(tmp_path).exists()
    assert first.store.bytes_read > 0
    second = Learner(tmp_path)
    second.refresh()
    assert second.store.bytes_read == 0              # resumed: the sealed headers not decoded again


def test_a_snapshot_survives_compaction_without_duplicates(tmp_path):
    from amorsize_dask.learning import snapshot

    n = snapshot.EVERY_RECORDS + 10
    write_directory(tmp_path, n, writers=2)
    segs = segment_files(tmp_path)
    first = Learner(tmp_path)
    expected = {group: indexed(first, *group) for group in GROUPS}
    for seg in segs:
        os.utime(seg, (1, 1))                         # their writers went quiet long ago
    assert TrainingStore(tmp_path).prune(keep_per_workload=100_000) == 0  # compacted, nothing dropped
    assert not any(seg.exists() for seg in segs)
    again = Learner(tmp_path)
    assert {group: indexed(again, *group) for group in GROUPS} == expected  # the same records, none twice
    assert again.store.bytes_read > 0                # the compacted file was read (ids known)


def test_on_an_event_loop_the_automatic_prune_runs_off_it(tmp_path):
    """The scheduler plugin appends on the event loop: pruning must not block it."""
    import asyncio
    import threading

    budget = 40_000
    store = TrainingStore(tmp_path, compact=True)
    pruned_on = []
    real_prune = store.prune

    def prune(*args, **kwargs):
        pruned_on.append(threading.current_thread())
        return real_prune(*args, **kwargs)

    store.prune = prune

    async def appends():
        for i in range(600):
            assert store.append(rec(i, workload=f"{i % 7:016x}"))
        return threading.current_thread()

    with dask.config.set({"amorsize.store.max-bytes": budget}):
        loop_thread = asyncio.run(appends())
        if store._pruning is not None:
            store._pruning.join(60)
        assert pruned_on and loop_thread not in pruned_on
        # Appends went on while it pruned; the next checks (here off any loop) catch up.
        for i in range(600, 700):
            assert store.append(rec(i, workload=f"{i % 7:016x}"))
    assert threading.current_thread() in pruned_on
    line_bytes = len(encode_line(_with_id(699)))
    assert sum(p.stat().st_size for p in segment_files(tmp_path)) <= budget + budget // 16 + line_bytes


def test_compact_reader_deduplicates_records_without_id_by_content(tmp_path):
    from tests.test_store import line

    plant(tmp_path, "a-1-00000000.jsonl", line(rec(1)) + line(rec(2)))
    plant(tmp_path, "b-1-00000000.jsonl", line(rec(2)) + line(rec(3)))  # rec(2) copied, no id
    reader = TrainingStore(tmp_path, compact=True)
    assert sorted(r["features"]["n_items"] for r in reader.read_new()) == [1, 2, 3]
    assert reader.n_seen == 3 and reader.read_new() == []

"""Store faults in what the directory holds: clock-skewed records, an oversized segment,
a million records to load and prune."""

from __future__ import annotations

import json
import pathlib
import threading
import time

import dask

from ... import mapping
from ...learning.store import TrainingStore
from .outcome import (FP, TEN_YEARS, WL, Outcome, fake_record, peak_bytes, plant, record_line,
                      skipped_count)
from .workers import spin


def fault_clock_skew(work_dir, keep: int = 4) -> Outcome:
    """Records 10 years in the future are read and kept; pruning keeps the newest N."""
    from ...target.target import Target

    train = pathlib.Path(work_dir) / "train"
    o = Outcome("clock skew: records +10 years", injected=True)
    for _ in range(2):
        mapping.map(spin, range(400), training_dir=train)
    real = TrainingStore(train).records()
    future = time.time() + TEN_YEARS
    target = Target.local(spin, train)
    planted = [dict(r, time=future + i) for i, r in enumerate(real * 5)]
    other = [fake_record(i, t=future + i if i % 2 else 1_700_000_000.0 + i) for i in range(12)]
    plant(train, "otherhost-1-00000000.jsonl", b"".join(map(record_line, planted + other)))
    o.records_written = len(real) + len(planted) + len(other)
    store = TrainingStore(train)
    o.records_read = len(store.records())
    problems = []
    if o.records_lost:
        problems.append(f"{o.records_lost} records dropped on read")
    try:
        mapping.plan(spin, range(400), training_dir=train).explain()
        mapping.map(spin, range(400), training_dir=train)
    except Exception as exc:  # noqa: BLE001
        problems.append(f"planning failed: {type(exc).__name__}: {exc}")
    store.settle_seconds = 0
    store.prune(keep_per_workload=keep)
    groups: dict = {}
    for r in store.records():
        groups.setdefault((r["fingerprint"], r["workload"]), []).append(r["time"])
    mine = sorted(groups.get((target.fingerprint.id, target.workload), []))
    theirs = sorted(groups.get((FP, WL), []))
    if mine != [future + i for i in range(len(planted) - keep, len(planted))]:
        problems.append(f"kept {len(mine)} of this workload, not the {keep} newest")
    if theirs != sorted(r["time"] for r in other)[-keep:]:
        problems.append("the other workload did not keep its newest")
    return o.check(problems, f"{o.records_read} read; pruned to the {keep} newest per workload")


def fault_huge_segment(work_dir, size: int = 16 << 20, limit: int = 1 << 20) -> Outcome:
    """A segment larger than ``amorsize.store.max-segment-bytes``: skipped, counted, not read."""
    train = pathlib.Path(work_dir) / "train"
    o = Outcome(f"{size >> 20} MiB segment > max-segment-bytes", injected=True,
                records_written=3, results_expected=300)
    line = record_line(fake_record(99))
    plant(train, "bighost-1-00000000.jsonl", line * (size // len(line) + 1))
    plant(train, "small-1-00000000.jsonl", b"".join(record_line(fake_record(i)) for i in range(3)))
    problems = []
    with dask.config.set({"amorsize.store.max-segment-bytes": limit}):
        store = TrainingStore(train)
        got, peak = peak_bytes(store.records)
        o.records_read, o.records_corrupt = len(got), skipped_count(store)
        results = mapping.map(spin, range(300), training_dir=train)
        o.results_returned = len(results) if results == [spin(x) for x in range(300)] else 0
        if store.stats().skipped["oversized-file"] != 1:
            problems.append(f"skipped {store.stats().skipped}")
    if o.records_lost or o.records_read != 3:
        problems.append(f"{o.records_read} records read, 3 expected")
    if peak > size // 8:
        problems.append(f"peak memory {peak / 1e6:.1f} MB reading a {size / 1e6:.0f} MB file")
    return o.check(problems, f"skipped and counted; peak {peak / 1e3:.0f} kB")


def million_records(work_dir, n: int = 1_000_000, workloads: int = 100, keep: int = 200) -> Outcome:
    """Load ``n`` records (seconds, peak memory), then prune them to ``keep`` per workload."""
    import psutil

    train = pathlib.Path(work_dir) / "train"
    o = Outcome(f"{n:,} records: load and prune", injected=True, records_written=n)
    text = json.dumps(dict(fake_record(0, t=1.5e9), id="ID"), separators=(",", ":"))
    template = (text.replace("%", "%%").replace('"time":1500000000.0', '"time":%d')
                .replace(f'"workload":"{WL}"', '"workload":"%016x"')
                .replace('"n_items":0', '"n_items":%d').replace('"id":"ID"', '"id":"%016x"')) + "\n"
    per_file = -(-n // 8)
    for k in range(8):
        rows = "".join(template % (1_500_000_000 + i, i % workloads, i, i)
                       for i in range(k * per_file, min(n, (k + 1) * per_file)))
        plant(train, f"host{k}-1-{k:08x}.jsonl", rows.encode())
    proc, peak, stop = psutil.Process(), [0], threading.Event()
    base = proc.memory_info().rss

    def sampler():
        while not stop.wait(0.02):
            peak[0] = max(peak[0], proc.memory_info().rss - base)

    thread = threading.Thread(target=sampler, daemon=True)
    thread.start()
    with dask.config.set({"amorsize.store.max-segment-bytes": "2 GiB"}):
        store = TrainingStore(train)
        t0 = time.perf_counter()
        o.records_read = len(store.records())
        load = time.perf_counter() - t0
        stop.set()
        thread.join()
        store.settle_seconds = 0
        t0 = time.perf_counter()
        removed = store.prune(keep_per_workload=keep)
        prune = time.perf_counter() - t0
        after = len(store.records())
    o.records_corrupt = skipped_count(store)
    o.extra = dict(load_seconds=load, peak_rss_mb=peak[0] / 1e6, prune_seconds=prune,
                   removed=removed, after=after)
    problems = []
    if o.records_lost or o.records_corrupt:
        problems.append(f"{o.records_read:,} read, {o.records_corrupt} skipped")
    if after != min(n, workloads * keep):
        problems.append(f"{after:,} records after pruning, {workloads * keep:,} expected")
    return o.check(problems, f"load {load:.1f} s, peak RSS +{peak[0] / 1e6:.0f} MB; "
                             f"prune {prune:.1f} s -> {after:,}")

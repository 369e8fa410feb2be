"""The training directory at scale: what loading, refreshing and pruning N records costs.

For N records (the library's own record lines: 10 fingerprints × 10 workloads, written by
four other processes) it measures, in this process:

- first load: a new learner indexing the whole directory (what the first process on a
  host pays once), and a new learner resuming from the snapshot that one left behind;
- refresh after one foreign append, and after 1,000 (another writer's new lines only; the
  median and the slowest of :data:`REFRESH_ROUNDS` rounds: one timing moves by ~15% here);
- a warm prediction over the loaded index;
- memory per record kept by the learner (tracemalloc, a second load);
- prune: ``TrainingStore.prune()`` (keep-per-workload), then a writer's own automatic
  prune past ``amorsize.store.max-bytes`` (set to half the directory's size).

The directory is left as its writers would leave it (:func:`write_directory`): each
writer's records sealed every ``amorsize.store.seal-bytes``, the rest still JSON lines.

Run: ``amorsize-dask bench --store N``.
"""

from __future__ import annotations

import gc
import os
import pathlib
import random
import statistics
import tempfile
import time
import tracemalloc

import dask

from ..learning import merging, sealed, snapshot
from ..learning.reader import sealed_limit
from ..learning.learner import Learner
from ..learning.records import SCHEMA_VERSION, encode_line, rounded
from ..learning.store import SEGMENTS, TrainingStore
from ..settings import Settings
from .timing import format_table

__all__ = ["FINGERPRINTS", "WORKLOADS", "WRITERS", "fingerprint", "workload", "synthetic_record",
           "write_directory", "store_figures"]

# Fingerprints x workloads of the synthetic directory: 100 groups, so that N = 10k .. 1M
# gives 100 .. 10,000 records per workload (pruning keeps keep-per-workload of each).
FINGERPRINTS, WORKLOADS = 10, 10
WRITERS = 4
# Rounds of 1,000 foreign records each refresh is timed over.
REFRESH_ROUNDS = 5
_ENGINES = ("serial", "threads", "processes")


def fingerprint(i: int) -> str:
    """The fingerprint of the synthetic records' ``i``-th machine shape."""
    return f"{i + 1:016x}"


def workload(i: int) -> str:
    """The synthetic records' ``i``-th workload."""
    return f"{i + 1:016x}"


def synthetic_record(i: int, rng: random.Random, fingerprints: int = FINGERPRINTS,
                     workloads: int = WORKLOADS) -> dict:
    """Record ``i`` of a synthetic directory (id ``i + 1``, time 1.7e9 + i), as
    :func:`~amorsize_dask.learning.records.make_record` returns it (built directly:
    validating costs ~15 us a record, too slow for a million)."""
    fp = i % fingerprints
    sampled = i % 3 == 0
    features = {"n_items": rng.randint(10, 10**5), "n_sampled": rng.randint(0, 20) if sampled else 0,
                "planning_seconds": rng.uniform(1e-4, 0.05), "item_seconds": rng.uniform(1e-6, 1e-2)}
    if sampled:
        features.update(item_cv=rng.uniform(0, 1), cpu_ratio=rng.uniform(0.01, 1.0),
                        bytes_in=rng.uniform(10, 1e6), bytes_out=rng.uniform(10, 1e3))
    return rounded({
        "schema": SCHEMA_VERSION, "time": 1.7e9 + i, "fingerprint": fingerprint(fp),
        "fingerprint_fields": {"cores": 2 + fp, "cpu_model": "Intel(R) Xeon(R) Processor", "kind": "local",
                               "memory_gib": 24, "platform": "linux", "python": "3.11",
                               "start_method": "forkserver"},
        "workload": workload((i // fingerprints) % workloads), "function": f"bench.synthetic_{i % workloads}",
        "features": features,
        "plan": {"engine": rng.choice(_ENGINES), "n_workers": 2, "chunksize": rng.randint(1, 500),
                 "source": "sample" if sampled else "model"},
        "wall_seconds": rng.uniform(0.01, 5), "compute_seconds": rng.uniform(0.01, 9),
        "predicted_seconds": rng.uniform(0.01, 5), "id": f"{i + 1:016x}"})


def write_directory(path, n: int, start: int = 0, writers: int = WRITERS, *, seal_bytes: int | None = None,
                    fingerprints: int = FINGERPRINTS, workloads: int = WORKLOADS) -> int:
    """Records ``start .. start + n`` as ``writers`` other processes would leave them in
    ``path`` (each its every ``writers``-th record): sealed every ``seal_bytes`` of lines
    when given (:mod:`amorsize_dask.learning.sealed`, then merged as writers merge them:
    :mod:`amorsize_dask.learning.merging`), the rest appended to its JSON segment. Returns
    the bytes of record lines written."""
    seg_dir = pathlib.Path(path, SEGMENTS)
    os.makedirs(seg_dir, exist_ok=True)
    limit = sealed_limit(Settings.from_config().size("max_segment_bytes"))
    rng = random.Random(start)
    total = 0
    for w in range(writers):
        records, lines, size = [], [], 0
        for i in range(start + w, start + n, writers):
            rec = synthetic_record(i, rng, fingerprints, workloads)
            line = encode_line(rec)
            if seal_bytes is not None and size + len(line) > seal_bytes and records:
                sealed.write(seg_dir, records, seal_bytes, lines)
                merging.merge_due(seg_dir, seal_bytes, limit)
                records, lines, size = [], [], 0
            records.append(rec)
            lines.append(line)
            size += len(line)
            total += len(line)
        with open(os.path.join(seg_dir, f"bench-{start}-{w}.jsonl"), "ab") as f:
            f.write(b"".join(lines))
    return total


# Seconds the synthetic segments are aged before pruning: beyond TrainingStore.settle_seconds,
# so that prune may compact them (a segment written to recently may still be appended to).
SETTLED_AGE = 3600.0


def _age(path, seconds: float) -> None:
    then = time.time() - seconds
    for entry in os.scandir(os.path.join(path, SEGMENTS)):
        os.utime(entry.path, (then, then))


def _timed(func):
    t0 = time.perf_counter()
    result = func()
    return time.perf_counter() - t0, result


def store_figures(n: int, out=print) -> dict:
    """Measure and print the figures above for ``n`` records; return them."""
    figures = {}
    with tempfile.TemporaryDirectory(prefix="amorsize-store-") as d, \
            dask.config.set({"amorsize.store.max-bytes": None}):
        written = write_directory(d, n, seal_bytes=Settings.from_config().size("seal_bytes"))
        learner = Learner(d)
        figures["first load s"], _ = _timed(learner.refresh)
        figures["first load, this host's snapshot present, s"], _ = _timed(Learner(d).refresh)
        write_directory(d, 1, start=n, writers=1)  # JSON lines: what a refresh parses
        figures["refresh, 1 foreign record, ms"] = _timed(learner.refresh)[0] * 1e3
        refreshes = []
        for round_ in range(REFRESH_ROUNDS):
            write_directory(d, 1000, start=n + 1 + 1000 * round_, writers=1)
            refreshes.append(_timed(learner.refresh)[0] * 1e3)
        figures["refresh, 1,000 foreign records, ms"] = statistics.median(refreshes)
        figures[f"refresh, 1,000 foreign records, slowest of {REFRESH_ROUNDS}, ms"] = max(refreshes)
        fp, wl = f"{1:016x}", f"{1:016x}"
        learner.predict(fp, wl, 1000, cores=2, explore=False)
        figures["warm prediction ms"] = _timed(lambda: learner.predict(fp, wl, 1000, cores=2, explore=False))[0] * 1e3
        learner = None  # its memory is not what the next figure measures
        gc.collect()
        snapshot.path_for(d).unlink(missing_ok=True)  # memory of a load that parsed every record
        tracemalloc.start()
        try:
            before = tracemalloc.get_traced_memory()[0]
            again = Learner(d)
            again.refresh()
            gc.collect()
            kept = tracemalloc.get_traced_memory()[0] - before
        finally:
            tracemalloc.stop()
        total = n + 1 + 1000 * REFRESH_ROUNDS
        figures["memory B/record"] = kept / total
        figures["bytes on disk/record"] = written / n
        _age(d, SETTLED_AGE)  # the writers have gone quiet: their segments may be compacted
        store = TrainingStore(d)
        figures["prune (keep-per-workload) s"], removed = _timed(store.prune)
        figures["prune removed records"] = removed
        size = sum(e.stat().st_size for e in os.scandir(os.path.join(d, SEGMENTS)))
        with dask.config.set({"amorsize.store.max-bytes": size // 2}):
            writer = TrainingStore(d)
            figures["auto-prune: append past max-bytes s"], _ = _timed(
                lambda: writer.append(synthetic_record(total + 1000, random.Random(1))))
        after = sum(e.stat().st_size for e in os.scandir(os.path.join(d, SEGMENTS)))
        snapshot.path_for(d).unlink(missing_ok=True)  # the host's cache keeps nothing of a temp dir
        figures["auto-prune: MiB before -> after"] = f"{size / 2**20:.2f} -> {after / 2**20:.2f}"
        figures["auto-prune: bytes before, after"] = (size, after)
    rows = [[name, value if isinstance(value, str) else f"{value:,.3g}" if isinstance(value, float) else f"{value:,}"]
            for name, value in figures.items() if not isinstance(value, tuple)]
    out(f"training directory with {n:,} records ({FINGERPRINTS} fingerprints x {WORKLOADS} workloads, "
        f"{WRITERS} writers' segments)")
    out(format_table(["measure", "value"], rows))
    return figures

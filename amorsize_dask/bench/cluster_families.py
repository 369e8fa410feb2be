"""Cluster benchmark families of real Dask usage (issue 11), beside the item-list ones.

- ``bag-read-text``: ``json.loads`` over a real multi-file text Bag
  (``dask.bag.read_text`` of :data:`N_FILES` files): Dask's default keeps one partition
  per file; ours is ``amorsize_dask.bag.map(json.loads, bag)``; the oracle is the fastest
  of ``bag.repartition(k)`` for k = 1 (one task on one worker: the lines are read where
  the bag's tasks run, so a ``Client.submit`` loop would need them read in the client
  first) .. the file count.
- ``worker-only``: a ~1 ms function that raises unless a worker plugin marked its process
  (it needs the workers' environment); the oracle is the fastest of one task on one worker
  (``Client.submit`` of a serial loop) and ``from_sequence(items, npartitions=k)`` —
  in-process serial cannot run it.

Each row has the keys of :func:`amorsize_dask.bench.cluster.render`.
"""

from __future__ import annotations

import glob
import json
import math
import os
import tempfile
import time

N_FILES = 16
LINES_PER_FILE = 5_000
WORKER_ONLY_ITEMS = 2_000
MARKER = "AMORSIZE_BENCH_ON_A_WORKER"


def worker_only(x: int) -> int:
    """~1 ms of pure-Python work that only a marked worker process may do."""
    if os.environ.get(MARKER) != "1":
        raise RuntimeError("worker_only ran outside a Dask worker")
    acc = 0
    for i in range(16_000):
        acc = (acc + i * i) % 1_000_003
    return acc + x


def _mark_workers(client) -> None:
    from distributed import WorkerPlugin

    class Mark(WorkerPlugin):
        name = "amorsize-bench-marker"

        def setup(self, worker):
            os.environ[MARKER] = "1"

    client.register_plugin(Mark())


def _write_files(folder: str) -> str:
    for f in range(N_FILES):
        with open(os.path.join(folder, f"part-{f:03d}.jsonl"), "w") as out:
            for i in range(LINES_PER_FILE):
                out.write(json.dumps({"id": f * LINES_PER_FILE + i, "tags": ["a", "b"], "v": i * 0.5}) + "\n")
    return os.path.join(folder, "*.jsonl")


def _timed(fn) -> tuple[float, object]:
    t0 = time.perf_counter()
    out = fn()
    return time.perf_counter() - t0, out


def bag_over_read_text(client, cap: float) -> dict:
    import dask.bag as db

    from .. import bag as ad_bag

    with tempfile.TemporaryDirectory(prefix="amorsize-text-") as folder:
        pattern = _write_files(folder)
        expected = [json.loads(line) for path in sorted(glob.glob(pattern)) for line in open(path)]
        grid = {}
        for k in (1, 2, 4, 8, N_FILES):
            grid[f"bag {k} partitions"] = _timed(
                lambda: db.read_text(pattern).repartition(npartitions=k).map(json.loads).compute())[0]
        bag_default, got = _timed(lambda: db.read_text(pattern).map(json.loads).compute())
        assert got == expected, "bag over read_text: wrong results (dask default)"
        client_map = _client_map_lines(client, [line for path in sorted(glob.glob(pattern)) for line in open(path)],
                                       cap)
        with tempfile.TemporaryDirectory(prefix="amorsize-cluster-") as d:
            runs = [_timed(lambda: ad_bag.map(json.loads, db.read_text(pattern), training_dir=d).compute())
                    for _ in range(3)]
        if runs[0][1] != expected:
            raise AssertionError("bag over read_text: wrong results (ours)")
    return _row("bag-read-text", len(expected), grid, client_map, bag_default, runs[0][0], runs[2][0], cap,
                "bag", "bag")


def _client_map_lines(client, lines, cap: float) -> float:
    from .cluster import CLIENT_MAP_ITEMS, _wait_or_cancel

    part = lines[:CLIENT_MAP_ITEMS]
    t0 = time.perf_counter()
    futures = client.map(json.loads, part, pure=False)
    if not _wait_or_cancel(client, futures, cap):
        return math.inf
    client.gather(futures)
    return (time.perf_counter() - t0) * len(lines) / len(part)


def worker_only_function(client, cap: float) -> dict:
    import dask.bag as db

    from ..mapping import run_map
    from .cluster import ONE_TASK, _bag, _client_map, one_task_on_one_worker

    _mark_workers(client)
    items = list(range(WORKER_ONLY_ITEMS))
    grid = {f"bag {k} partitions": _bag(client, worker_only, items, k) for k in (1, 2, 4, 8, 16, 32, 64)}
    grid[ONE_TASK] = one_task_on_one_worker(client, worker_only, items)
    bag_default = _bag(client, worker_only, items, cap=cap)
    client_map, _ = _client_map(client, worker_only, items, cap)
    with tempfile.TemporaryDirectory(prefix="amorsize-cluster-") as d:
        cold = run_map(worker_only, items, client=client, training_dir=d)
        run_map(worker_only, items, client=client, training_dir=d)
        warm = run_map(worker_only, items, client=client, training_dir=d)
    if cold.results != db.from_sequence(items, npartitions=4).map(worker_only).compute():
        raise AssertionError("worker-only: wrong results (ours)")
    return _row("worker-only", len(items), grid, client_map, bag_default, cold.wall_seconds, warm.wall_seconds,
                cap, _describe(cold.plan), _describe(warm.plan))


def _describe(plan) -> str:
    return "serial" if plan.engine == "serial" else f"{plan.engine} {plan.n_workers}x{plan.chunksize}"


def _row(name, n, grid, client_map, bag_default, cold, warm, cap, cold_plan, warm_plan) -> dict:
    oracle_cfg = min(grid, key=grid.get)
    return dict(name=name, n=n, serial=math.nan, oracle=grid[oracle_cfg], oracle_cfg=oracle_cfg,
                client_map=client_map, bag_default=bag_default, cold=cold, warm=warm, cold_plan=cold_plan,
                warm_plan=warm_plan, cap=cap, client_map_scaled=True)


FAMILIES = {"bag-read-text": bag_over_read_text, "worker-only": worker_only_function}

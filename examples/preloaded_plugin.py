"""A scheduler started with the amorsize plugin preloaded, two workers, one map.

The same as running, in three shells:

    dask scheduler --scheduler-file s.json --preload amorsize_dask.plugin --amorsize-dir DIR
    dask worker --scheduler-file s.json --nthreads 1
    dask worker --scheduler-file s.json --nthreads 1

Run: python examples/preloaded_plugin.py
"""

import os
import subprocess
import sys
import tempfile

from distributed import Client

import amorsize_dask as ad
from amorsize_dask.learning.store import TrainingStore


def work(x: int) -> int:
    return sum(i * i for i in range(2_000)) + x


def dask_command(*args: str) -> list[str]:
    return [sys.executable, "-m", "distributed.cli.dask_" + args[0], *args[1:]]


if __name__ == "__main__":
    with tempfile.TemporaryDirectory(prefix="amorsize-preload-") as tmp:
        scheduler_file = os.path.join(tmp, "scheduler.json")
        training_dir = os.path.join(tmp, "training")
        procs = [subprocess.Popen(dask_command("scheduler", "--scheduler-file", scheduler_file, "--port", "0",
                                               "--dashboard-address", ":0", "--preload", "amorsize_dask.plugin",
                                               "--amorsize-dir", training_dir))]
        try:
            with Client(scheduler_file=scheduler_file, timeout=60) as client:
                for _ in range(2):
                    procs.append(subprocess.Popen(dask_command("worker", "--scheduler-file", scheduler_file,
                                                               "--nthreads", "1", "--dashboard-address", ":0")))
                client.wait_for_workers(2, timeout=60)
                print("plugins on the scheduler:", client.run_on_scheduler(lambda dask_scheduler: sorted(dask_scheduler.plugins)))
                results = ad.map(work, range(3_000), client=client, training_dir=training_dir)
                assert results == [work(x) for x in range(3_000)]
                print(ad.plan(work, range(3_000), client=client, training_dir=training_dir).explain())
            print("records in the training directory:", len(TrainingStore(training_dir)))
        finally:
            for p in procs:
                p.terminate()
            for p in procs:
                p.wait(timeout=30)

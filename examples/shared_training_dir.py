"""Two clusters, one training directory: what cluster A measured, cluster B plans from.

Run: python examples/shared_training_dir.py
"""

import tempfile

from distributed import Client, LocalCluster

import amorsize_dask as ad


def work(x: int) -> int:
    """~0.5 ms of pure-Python work."""
    acc = 0
    for i in range(8_000):
        acc = (acc + i * x) % 1_000_003
    return acc


def cluster():
    return LocalCluster(n_workers=2, threads_per_worker=1, dashboard_address=None)


if __name__ == "__main__":
    with tempfile.TemporaryDirectory(prefix="amorsize-shared-") as shared:  # on a cluster: an NFS path
        items = list(range(1_000))
        with cluster() as a, Client(a) as client_a:
            ad.map(work, items, client=client_a, training_dir=shared)
            print("cluster A ran:", ad.plan(work, items, client=client_a, training_dir=shared).explain(), "\n")
        with cluster() as b, Client(b) as client_b:
            plan = ad.plan(work, items, client=client_b, training_dir=shared)
            print("cluster B's first plan:", plan.explain())
            assert plan.source == "model", plan.source
            assert ad.map(work, items, client=client_b, training_dir=shared) == [work(x) for x in items]

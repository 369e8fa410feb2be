"""A dask.bag pipeline on a LocalCluster, partitioned by amorsize and learned from.

Run: python examples/bag_pipeline.py
"""

import tempfile

from distributed import Client, LocalCluster

import amorsize_dask as ad


def parse(line: str) -> dict:
    """A record parser: a little string work per item."""
    key, _, value = line.partition("=")
    return {"key": key.strip(), "value": int(value) * 2}


if __name__ == "__main__":
    lines = [f"k{i % 97} = {i}" for i in range(50_000)]
    with tempfile.TemporaryDirectory(prefix="amorsize-example-") as training_dir, \
            LocalCluster(n_workers=2, threads_per_worker=1, dashboard_address=None) as cluster, Client(cluster) as client:
        records = ad.bag.map(parse, lines, client=client, training_dir=training_dir)
        print("partitions:", records.npartitions)
        big = records.filter(lambda r: r["value"] % 3 == 0)
        total = big.map(lambda r: r["value"]).fold(lambda a, b: a + b, initial=0).compute()
        print("sum of values divisible by 3:", total)
        assert total == sum(2 * i for i in range(50_000) if (2 * i) % 3 == 0)
        print(ad.plan(parse, lines, client=client, training_dir=training_dir).explain())

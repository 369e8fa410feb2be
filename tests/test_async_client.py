"""An asynchronous Client is refused with a clear error (amorsize's map is synchronous),
whose remedy works from async code as written."""

import asyncio

import pytest
from distributed import Client, LocalCluster

import amorsize_dask as ad
from tests.helpers.cluster import in_process_cluster
from tests.helpers.funcs import square


def test_an_asynchronous_client_is_a_clear_error():
    with in_process_cluster() as lc:
        async def main():
            async with Client(lc.scheduler_address, asynchronous=True) as c:
                with pytest.raises(TypeError, match="asynchronous"):
                    ad.map(square, [1, 2], client=c)

        asyncio.run(main())


def test_the_remedy_the_error_gives_runs_beside_an_asynchronous_cluster(tmp_path):
    """The message said ``asyncio.to_thread(amorsize_dask.map, ..., client=Client(address))``:
    that ``Client`` is made on the event loop's thread, which it then blocks while it waits
    for a scheduler on that loop (hung for good beside ``LocalCluster(asynchronous=True)``)."""
    async def main():
        async with LocalCluster(n_workers=1, threads_per_worker=1, processes=False, asynchronous=True,
                                dashboard_address=None) as cluster:
            async with Client(cluster, asynchronous=True) as c:
                with pytest.raises(TypeError) as info:
                    ad.map(square, [1, 2], client=c)
                assert "def run(): with Client(address) as c:" in str(info.value)
                address = cluster.scheduler_address

                def run():
                    with Client(address) as c:
                        return ad.map(square, range(20), client=c, training_dir=tmp_path)

                return await asyncio.wait_for(asyncio.to_thread(run), timeout=60)

    assert asyncio.run(main()) == [square(x) for x in range(20)]

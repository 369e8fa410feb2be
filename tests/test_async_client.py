"""An asynchronous Client is refused with a clear error (amorsize's map is synchronous)."""

import asyncio

import pytest
from distributed import Client

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

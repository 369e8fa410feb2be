"""An asynchronous Client is refused with a clear error (amorsize's map is synchronous)."""

import pytest
from distributed.utils_test import gen_cluster

import amorsize_dask as ad
from tests.helpers.funcs import square


@gen_cluster(client=True)
async def test_an_asynchronous_client_is_a_clear_error(c, s, a, b):
    with pytest.raises(TypeError, match="asynchronous"):
        ad.map(square, [1, 2], client=c)

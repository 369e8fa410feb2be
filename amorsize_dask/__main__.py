"""``python -m amorsize_dask``: the ``amorsize-dask`` command."""

from .cli import main

main()

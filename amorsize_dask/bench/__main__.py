"""``python -m amorsize_dask.bench [--quick] [family ...]``: the local benchmark."""

import sys

from .local import run

if __name__ == "__main__":
    args = sys.argv[1:]
    run(quick="--quick" in args, families=[a for a in args if not a.startswith("-")] or None)

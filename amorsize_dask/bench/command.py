"""What ``amorsize-dask bench`` runs: the suites and the families each accepts.

The command line (options, checks, ``--plot``) lives in :mod:`amorsize_dask.cli`; the
suites are imported only when chosen (each pulls in what it measures against).

>>> families_of(None)[:2], "drift" in families_of("learning")
(('tiny', 'cpu-1ms'), True)
"""

from __future__ import annotations

from typing import Callable

__all__ = ["BENCH_FAMILIES", "families_of", "run_suite"]

BENCH_FAMILIES = ("tiny", "cpu-1ms", "heavy", "skewed", "payload", "io-wait", "numpy-nogil")


def families_of(suite_name: str | None) -> tuple[str, ...]:
    """The family names a ``bench`` suite accepts."""
    if suite_name == "fresh":
        from .fresh_families import FAMILIES

        return tuple(FAMILIES)
    if suite_name == "stream":
        from .stream import FAMILIES

        return tuple(FAMILIES)
    if suite_name == "learning":
        return BENCH_FAMILIES + ("drift",)
    return BENCH_FAMILIES


def run_suite(suite_name: str | None, *, quick: bool, families: list[str] | None, out: Callable[[str], None]):
    """Run one suite (None: the default, ours vs the oracle per family); the default
    suite's results are returned (for ``--plot``), the others' None."""
    if suite_name == "learning":
        from .learning import learning_curves

        learning_curves(quick=quick, families=families, out=out)
    elif suite_name == "overhead":
        from .learning import planning_overhead

        planning_overhead(out=out)
    elif suite_name == "cluster":
        from .cluster import run as run_cluster

        run_cluster(quick=quick, families=families, out=out)
    elif suite_name == "fresh":
        from .fresh import run as run_fresh

        run_fresh(quick=quick, families=families, out=out)
    elif suite_name == "stream":
        from .stream import run as run_stream

        run_stream(quick=quick, families=families, out=out)
    elif suite_name == "faults":
        from .faults import run as run_faults

        run_faults(quick=quick, out=out)
    else:
        from .local import run

        return run(quick=quick, families=families, out=out)
    return None

"""``planning.speculation``: the last items start on the warm pool before planning, each runs once."""

import os

import pytest

from amorsize_dask.engines import shared_engine
from amorsize_dask.planning.speculation import MAX_ITEM_BYTES, Speculation

N_WORKERS = 2   # never more than this machine's 2 cores


class SpeculatedError(Exception):
    pass


def pid_and_item(x):
    return os.getpid(), x


def fail_on_last(x):
    if x == 19:
        raise SpeculatedError(f"item {x}")
    return x


def warm_pool():
    """The shared process pool of ``N_WORKERS``, running, with this module's functions sent.

    Called in the test itself, not a fixture: pytest changes the environment between a
    fixture and its test (PYTEST_CURRENT_TEST), and a pool started under another
    environment is stale by design (engines.worker_start.caller_state).
    """
    engine = shared_engine()
    engine.run(pid_and_item, list(range(4)), n_workers=N_WORKERS, chunksize=1)   # the workers import this module
    assert engine.is_warm(N_WORKERS)
    return engine


def test_the_last_items_run_on_the_pool_once():
    pool = warm_pool()
    items = list(range(20))
    spec = Speculation.start(pid_and_item, items, n_workers=N_WORKERS)
    assert spec is not None
    assert (spec.n_items, spec.first_index) == (N_WORKERS - 1, 20 - (N_WORKERS - 1))
    results = spec.results()
    assert [x for _, x in results] == items[spec.first_index:]
    assert all(pid != os.getpid() for pid, _ in results)          # in a worker, never here
    assert pool.is_warm(N_WORKERS)


def test_not_worth_it_cold_unsent_or_large():
    warm_pool()
    assert Speculation.start(pid_and_item, list(range(4 * N_WORKERS - 1)), n_workers=N_WORKERS) is None
    assert Speculation.start(pid_and_item, list(range(20)), n_workers=1) is None
    assert Speculation.start(pid_and_item, list(range(40)), n_workers=N_WORKERS + 1) is None   # no such pool
    big = [bytes(MAX_ITEM_BYTES + 1)] * 20
    assert Speculation.start(len, big, n_workers=N_WORKERS) is None

    def here(x):   # a module the workers have: only functions sent before are speculated
        return x

    here.__module__ = "a_module_never_sent"
    assert Speculation.start(here, list(range(20)), n_workers=N_WORKERS) is None


def test_a_failure_of_a_speculated_item_is_the_users_exception_naming_it():
    pool = warm_pool()
    spec = Speculation.start(fail_on_last, list(range(20)), n_workers=N_WORKERS)
    assert spec is not None
    with pytest.raises(SpeculatedError, match="item 19") as info:
        spec.results()
    assert any("item 19" in note for note in getattr(info.value, "__notes__", []))
    spec.cancel()    # an error in func: the pool stays for the next call
    assert pool.is_warm(N_WORKERS)

"""The benchmark: :func:`faults` lists every fault in order, :func:`run` injects them and
prints the table."""

from __future__ import annotations

import dataclasses
import pathlib
import tempfile
import time
from typing import Callable

from ..timing import format_table
from .execution import (fault_concurrent_maps, fault_func_raises, fault_generator_raises,
                        fault_parent_sigterm, fault_unpicklable_result, fault_worker_killed)
from .hostile import (fault_control_strings, fault_json_bombs, fault_overheads_cache_bomb,
                      fault_path_strings, fault_permissions, fault_planted_code, fault_symlinked_segment,
                      fault_symlinked_segments_dir)
from .inputs import fault_bad_inputs
from .outcome import FaultSkipped, Outcome, _cell, captured_warnings
from .store_data import fault_clock_skew, fault_huge_segment, million_records
from .store_faults import (fault_concurrent_writers, fault_dir_deleted, fault_full_disk, fault_read_only_fs,
                           fault_read_only_user, fault_writer_killed)


def faults(quick: bool = False) -> list[tuple[str, Callable]]:
    """(name, fault(work_dir)) in the order :func:`run` injects them."""
    n = 100_000 if quick else 1_000_000
    return [
        ("worker_killed", fault_worker_killed),
        ("func_raises", fault_func_raises),
        ("unpicklable_result", fault_unpicklable_result),
        ("generator_raises", fault_generator_raises),
        ("parent_sigterm", fault_parent_sigterm),
        ("concurrent_maps", fault_concurrent_maps),
        ("concurrent_maps_mixed", lambda d: fault_concurrent_maps(d, mixed=True, timeout=10)),
        ("bad_inputs", fault_bad_inputs),
        ("concurrent_writers", fault_concurrent_writers),
        ("writer_killed", fault_writer_killed),
        ("read_only_user", fault_read_only_user),
        ("read_only_fs", fault_read_only_fs),
        ("full_disk", fault_full_disk),
        ("dir_deleted", fault_dir_deleted),
        ("clock_skew", fault_clock_skew),
        ("huge_segment", fault_huge_segment),
        ("planted_code", fault_planted_code),
        ("overheads_cache_bomb", fault_overheads_cache_bomb),
        ("json_bombs", fault_json_bombs),
        ("symlinked_segment", fault_symlinked_segment),
        ("symlinked_segments_dir", fault_symlinked_segments_dir),
        ("path_strings", fault_path_strings),
        ("control_strings", fault_control_strings),
        ("umask_022", lambda d: fault_permissions(d, 0o022)),
        ("umask_077", lambda d: fault_permissions(d, 0o077)),
        ("million_records", lambda d: million_records(d, n)),
    ]


def run(out=print, quick: bool = False) -> dict:
    """Inject every fault in one process run and print what survived; {name: Outcome as dict}.

    ``quick``: 100,000 instead of 1,000,000 records for the load-and-prune row.
    """
    outcomes: dict[str, Outcome] = {}
    t_start = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="amorsize-faults-") as tmp, captured_warnings():
        for name, fault in faults(quick):
            work_dir = pathlib.Path(tmp) / name
            work_dir.mkdir()
            t0 = time.perf_counter()
            try:
                o = fault(work_dir)
            except FaultSkipped as why:
                o = Outcome(name, detail=f"skipped: {why}")
                o.survived = None
            except Exception as exc:  # noqa: BLE001 - a fault that broke the harness is a row too
                o = Outcome(name, injected=True, detail=f"{type(exc).__name__}: {exc}")
            o.seconds = time.perf_counter() - t0
            outcomes[name] = o
            out(f"  {o.fault}: {'skipped' if o.survived is None else 'ok' if o.survived else 'FAILED'}"
                f" ({o.seconds:.1f} s)")
    headers = ["fault", "injected", "survived", "bad inputs tried / clean",
               "records written / read / lost / corrupt", "results expected / returned / lost", "s"]
    rows = [[o.fault, "yes" if o.injected else "no",
             "skipped" if o.survived is None else "yes" if o.survived else "NO",
             _cell(o.bad_tried, o.bad_clean),
             _cell(o.records_written, o.records_read, o.records_lost, o.records_corrupt),
             _cell(o.results_expected, o.results_returned, o.results_lost),
             f"{o.seconds:.1f}"] for o in outcomes.values()]
    out(format_table(headers, rows))
    out("")
    for o in outcomes.values():
        out(f"- {o.fault}: {o.detail}")
        for problem in o.extra.get("problems", []) if not o.survived else []:
            out(f"    {problem}")
    failed = [name for name, o in outcomes.items() if o.survived is False]
    total = time.perf_counter() - t_start
    out(f"\n{len(outcomes) - len(failed)} of {len(outcomes)} faults survived or skipped "
        f"in {total:.0f} s; failed: {', '.join(failed) or 'none'}")
    return {name: dict(dataclasses.asdict(o), records_lost=o.records_lost, results_lost=o.results_lost)
            for name, o in outcomes.items()}

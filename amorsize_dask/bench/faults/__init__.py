"""Fault injection: kill workers, writers and parents; fill, lock, remove and poison the
training directory; feed bad inputs. ``map`` must still return the right results.

Each ``fault_*`` function injects one fault into real processes and real directories
under ``work_dir`` and returns an :class:`Outcome` (what was injected, what survived,
counts of results and records). ``tests/test_faults.py`` asserts on the same functions,
so the benchmark and the tests share one implementation; :func:`run` prints the table.

Run: ``amorsize-dask bench --faults`` or
``python -c "from amorsize_dask.bench.faults import run; run(quick=True)"``.
Some faults need root (mounting a tmpfs, dropping to an unprivileged user); without it
they are reported as skipped.

>>> o = Outcome("example", injected=True, results_expected=3, results_returned=3)
>>> o.results_lost, o.records_lost
(0, None)
"""

# The subprocess entry points (``_*_child``) are re-exported too: ``run_child`` imports
# them by name from this package.
from .execution import (MAP, _concurrent_child, _sigterm_child, fault_concurrent_maps, fault_func_raises,
                        fault_generator_raises, fault_parent_sigterm, fault_unpicklable_result,
                        fault_worker_killed)
from .hostile import (_overheads_child, _planted_child, _umask_child, fault_control_strings,
                      fault_json_bombs, fault_overheads_cache_bomb, fault_path_strings, fault_permissions,
                      fault_planted_code, fault_symlinked_segment, fault_symlinked_segments_dir, spin_more)
from .inputs import BAD_INPUTS, check_bad_input, fault_bad_inputs
from .outcome import (FP, PYTHON, START_DEADLINE, TEN_YEARS, WL, FaultSkipped, Outcome, alive,
                      call_with_deadline, captured_warnings, descendants, fake_record, files_under,
                      kill_pids, ours, peak_bytes, plant, record_line, run_child, skipped_count, tmpfs,
                      wait_until)
from .runner import faults, run
from .store_data import fault_clock_skew, fault_huge_segment, million_records
from .store_faults import (_read_only_child, fault_concurrent_writers, fault_dir_deleted, fault_full_disk,
                           fault_read_only_fs, fault_read_only_user, fault_writer_killed, mp_context)
from .workers import PidLog, fail_on_13, lock_on_13, logged, spin, square, worker_pid

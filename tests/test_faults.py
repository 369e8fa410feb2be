"""Fault injection on real processes and real directories (see amorsize_dask.bench.faults).

Each test injects one fault through the same function ``amorsize-dask bench --faults``
runs, and fails if the behaviour regresses: results complete and in order, errors that
name the item or value, one warning for an unwritable directory, no record lost or
executed, nothing left running. An ``xfail(strict=True)`` marks a bug found here.
"""


import pytest

from amorsize_dask.bench import faults

psutil = pytest.importorskip("psutil")


def inject(fault, *args, **kwargs) -> faults.Outcome:
    try:
        outcome = fault(*args, **kwargs)
    except faults.FaultSkipped as why:
        pytest.skip(str(why))
    assert outcome.injected, f"the fault was not injected: {outcome.detail}"
    return outcome


def survived(o: faults.Outcome) -> faults.Outcome:
    assert o.survived, o.detail
    return o


# == execution faults (local engines) ==================================================
def test_worker_sigkilled_from_outside_loses_no_items(tmp_path):
    o = survived(inject(faults.fault_worker_killed, tmp_path))
    assert o.results_returned == o.results_expected == 200 and o.results_lost == 0
    assert not faults.alive([o.extra["pid"]])


def test_exception_in_func_names_item_and_pool_is_reused(tmp_path):
    o = survived(inject(faults.fault_func_raises, tmp_path))
    assert o.results_returned == 16


def test_unpicklable_result_names_item_and_pool_survives(tmp_path):
    survived(inject(faults.fault_unpicklable_result, tmp_path))


def test_generator_raising_halfway_propagates_on_every_engine(tmp_path):
    survived(inject(faults.fault_generator_raises, tmp_path))


def test_sigterm_to_parent_leaves_no_worker_processes(tmp_path):
    o = inject(faults.fault_parent_sigterm, tmp_path)
    survived(o)


def test_sixteen_threads_share_the_process_engine(tmp_path):
    o = survived(inject(faults.fault_concurrent_maps, tmp_path, n_threads=16))
    assert o.results_returned == o.results_expected
    assert o.records_read == 16


def test_concurrent_maps_with_different_worker_counts(tmp_path):
    survived(inject(faults.fault_concurrent_maps, tmp_path, n_threads=16, mixed=True, timeout=10))


@pytest.mark.parametrize("label,call,words", [
    pytest.param(label, call, words, id=label) for label, call, words in faults.BAD_INPUTS])
def test_bad_input_fails_cleanly(label, call, words, tmp_path):
    assert faults.check_bad_input(label, call, words, tmp_path) == ""


# == store faults ======================================================================
def test_sixteen_writer_processes_thousand_records_each(tmp_path):
    o = survived(inject(faults.fault_concurrent_writers, tmp_path, n_procs=16, n_records=1000))
    assert o.records_written == o.records_read == 16_000
    assert o.records_corrupt == 0


def test_writer_sigkilled_mid_append(tmp_path):
    o = survived(inject(faults.fault_writer_killed, tmp_path))
    assert o.records_read == o.records_written >= 2000
    assert o.records_corrupt <= 1


def test_unprivileged_user_on_root_owned_dir_warns_once(tmp_path):
    o = survived(inject(faults.fault_read_only_user, tmp_path))
    assert o.records_read == 3 and o.results_lost == 0


def test_read_only_filesystem_warns_once(tmp_path):
    o = survived(inject(faults.fault_read_only_fs, tmp_path))
    assert o.records_read == 3 and o.results_lost == 0


def test_full_disk_warns_once_and_loses_nothing_written_before(tmp_path):
    o = survived(inject(faults.fault_full_disk, tmp_path))
    assert o.results_lost == 0 and o.records_lost == 0 and o.records_read >= 1


def test_training_dir_removed_between_and_during_maps(tmp_path):
    o = survived(inject(faults.fault_dir_deleted, tmp_path))
    assert o.results_lost == 0


def test_future_timestamps_kept_and_pruning_keeps_newest(tmp_path):
    o = survived(inject(faults.fault_clock_skew, tmp_path))
    assert o.records_lost == 0


def test_oversized_segment_skipped_in_bounded_memory(tmp_path):
    o = survived(inject(faults.fault_huge_segment, tmp_path))
    assert o.records_read == 3 and o.records_corrupt == 1


def test_load_and_prune_benchmark_small(tmp_path):
    o = survived(inject(faults.million_records, tmp_path, n=20_000, workloads=10, keep=50))
    assert o.records_read == 20_000 and o.extra["after"] == 500


# == hostile store content ==============================================================
def test_planted_pickles_and_code_never_run(tmp_path):
    o = survived(inject(faults.fault_planted_code, tmp_path))
    assert o.records_read == 5 and o.records_corrupt >= 1


def test_overheads_cache_json_bomb_does_not_fail_map(tmp_path):
    survived(inject(faults.fault_overheads_cache_bomb, tmp_path))


def test_json_bombs_skipped_counted_and_bounded(tmp_path):
    o = survived(inject(faults.fault_json_bombs, tmp_path))
    assert o.records_read == 3 and o.records_corrupt == 8


def test_symlinks_in_segments_not_followed(tmp_path):
    o = survived(inject(faults.fault_symlinked_segment, tmp_path))
    assert o.records_read == 3


def test_symlinked_segments_dir_not_followed(tmp_path):
    survived(inject(faults.fault_symlinked_segments_dir, tmp_path))


def test_path_strings_in_records_create_no_files(tmp_path):
    o = survived(inject(faults.fault_path_strings, tmp_path))
    assert o.records_read == o.records_written


def test_control_characters_in_records_rejected_or_sanitized(tmp_path):
    survived(inject(faults.fault_control_strings, tmp_path))


@pytest.mark.parametrize("umask", [0o022, 0o077], ids=["umask022", "umask077"])
def test_created_files_honour_the_umask(tmp_path, umask):
    o = survived(inject(faults.fault_permissions, tmp_path, umask))
    assert o.extra["files"] >= 4

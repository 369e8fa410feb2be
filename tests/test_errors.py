"""``errors``: the user's exception re-raised with the item named; one warning per message."""

import logging
import uuid
import warnings

import pytest

from amorsize_dask import errors


class MyError(Exception):
    pass


def my_func(x):
    return x


def test_reraise_keeps_the_users_class_and_object_and_names_the_item():
    original = MyError("bad value")
    with pytest.raises(MyError) as info:
        errors.reraise_with_item(original, 41, my_func)
    assert info.value is original
    assert info.value.__notes__ == [f"amorsize_dask: raised by {__name__}.my_func on item 41"]


def test_reraise_carries_the_workers_traceback_text():
    with pytest.raises(KeyError) as info:
        errors.reraise_with_item(KeyError("k"), 3, my_func, remote_traceback="Traceback ...\n  line 9\n")
    (note,) = info.value.__notes__
    assert note.endswith("--- original traceback (in the worker) ---\nTraceback ...\n  line 9")


def test_warn_once_warns_and_logs_the_first_time_only(caplog):
    message = f"amorsize test warning {uuid.uuid4().hex}"
    with warnings.catch_warnings(record=True) as seen, caplog.at_level(logging.WARNING, "amorsize_dask"):
        warnings.simplefilter("always")
        for _ in range(3):
            errors.warn_once(message)
    assert [(w.category, str(w.message)) for w in seen] == [(RuntimeWarning, message)]
    assert [r.getMessage() for r in caplog.records] == [message]


def test_lost_tasks_error_names_function_items_and_remedy():
    bounds = [(0, 10), (10, 20), (20, 25), (25, 30), (30, 40), (40, 50), (50, 60)]
    err = errors.LostTasksError.of(bounds, 100, my_func, rounds=2)
    text = str(err)
    assert isinstance(err, RuntimeError)
    assert "7 task(s) of" in text and "my_func" in text and "(60 items: 100..109, 110..119" in text
    assert "and 2 more" in text and "lost 2 time(s)" in text and "client.wait_for_workers()" in text


def test_worker_start_error_names_its_cause_and_the_way_out():
    text = str(errors.WorkerStartError(OSError("Too many open files")))
    assert "OSError: Too many open files" in text and "engine='threads'" in text
    assert "failed to start; check" in str(errors.WorkerStartError())   # no cause: none shown


def test_the_same_exception_object_raised_again_carries_one_note():
    """A module-level exception object raised by several calls: one note, not one per call."""
    err = KeyError("missing")
    for _ in range(3):
        with pytest.raises(KeyError):
            errors.reraise_with_item(err, 3, abs)
    assert len(err.__notes__) == 1


def test_a_warning_is_printed_once_in_a_script_without_logging_set_up(tmp_path):
    """The warning, not also logging's last-resort copy of it on stderr."""
    import subprocess
    import sys

    script = tmp_path / "warns.py"
    script.write_text("from amorsize_dask import errors\nerrors.warn_once('amorsize_dask: ' + 'look here')\n")
    done = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0 and done.stderr.count("amorsize_dask: look here") == 1, done.stderr
    assert "warns.py:2" in done.stderr  # the line that called into the package

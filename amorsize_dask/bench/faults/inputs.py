"""Bad inputs: :data:`BAD_INPUTS` and :func:`check_bad_input` (each must fail with a clear
TypeError/ValueError naming the value)."""

from __future__ import annotations

import os
import pathlib
import threading
from typing import Callable

import dask

from ... import mapping
from ...learning.store import TrainingStore
from .execution import MAP
from .outcome import Outcome, call_with_deadline, captured_warnings
from .workers import lock_on_13, square


def _unpicklable_func():
    lock = threading.Lock()
    return lambda x: x if lock else x


def _bad_config(work_dir):
    with dask.config.set({"amorsize.store.max-line-bytes": "lots"}):
        return mapping.map(square, range(3), training_dir=pathlib.Path(work_dir) / "cfg")


#: (label, call, words the error must contain): each must raise a TypeError or ValueError
#: that names the bad value, promptly, from amorsize_dask's own checks.
BAD_INPUTS: list[tuple[str, Callable, tuple[str, ...]]] = [
    ("func=None", lambda d: mapping.map(None, [1]), ("None",)),
    ("items=5", lambda d: mapping.map(abs, 5), ("5",)),
    ("engine='gpu'", lambda d: mapping.map(abs, [1], engine="gpu"), ("'gpu'",)),
    ("n_workers=0", lambda d: mapping.map(abs, [1], n_workers=0), ("n_workers=0",)),
    ("n_workers=2.5", lambda d: mapping.map(abs, [1], n_workers=2.5), ("n_workers=2.5",)),
    ("chunksize='10'", lambda d: mapping.map(abs, [1], chunksize="10"), ("chunksize='10'",)),
    ("chunksize=True", lambda d: mapping.map(abs, [1], chunksize=True), ("chunksize=True",)),
    ("progress=3", lambda d: mapping.map(abs, [1], progress=3), ("progress=3",)),
    ("engine='dask', no client", lambda d: mapping.map(abs, [1], engine="dask"), ("engine='dask'",)),
    ("plan(items=None)", lambda d: mapping.plan(abs, None), ("None",)),
    ("prune(-1)", lambda d: TrainingStore(d).prune(-1), ("-1",)),
    ("append({'schema': 1})", lambda d: TrainingStore(d).append({"schema": 1}), ("'time'",)),
    ("unpicklable result", lambda d: mapping.map(lock_on_13, range(20), chunksize=4, **MAP),
     ("item 13",)),
    ("training_dir=123", lambda d: mapping.map(abs, [1], training_dir=123), ("training_dir", "123")),
    ("client='tcp://nowhere:1'", lambda d: mapping.map(abs, [1], client="tcp://nowhere:1"),
     ("client", "tcp://nowhere:1")),
    ("unpicklable func (processes)", lambda d: mapping.map(_unpicklable_func(), range(4), chunksize=1,
                                                           **MAP), ("<lambda>",)),
    ("unpicklable item 1 (processes)", lambda d: mapping.map(
        square, [0, threading.Lock(), 2], chunksize=1, **MAP), ("item 1",)),
    ("max-line-bytes='lots'", _bad_config, ("max-line-bytes", "'lots'")),
]


def check_bad_input(label: str, call: Callable, words, work_dir, timeout: float = 60.0) -> str:
    """'' if ``call`` fails cleanly; else what was wrong."""
    import amorsize_dask

    done, _, exc = call_with_deadline(lambda: call(work_dir), timeout)
    if not done:
        return f"{label}: hung"
    if exc is None:
        return f"{label}: accepted"
    text = f"{type(exc).__name__}: {exc}"
    if not isinstance(exc, (TypeError, ValueError)):
        return f"{label}: {text[:160]}"
    missing = [w for w in words if w not in str(exc) + "\n".join(getattr(exc, "__notes__", []))]
    if missing:
        return f"{label}: the message does not name {missing}: {text[:160]}"
    tb = exc.__traceback__
    while tb.tb_next is not None:
        tb = tb.tb_next
    where = tb.tb_frame.f_code.co_filename
    if not where.startswith(os.path.dirname(amorsize_dask.__file__)):
        return f"{label}: raised inside {where} ({text[:120]})"
    return ""


def fault_bad_inputs(work_dir) -> Outcome:
    """Every bad input of :data:`BAD_INPUTS`: a clear TypeError/ValueError naming it."""
    o = Outcome("bad inputs", injected=True, bad_tried=len(BAD_INPUTS))
    with captured_warnings():
        problems = [p for label, call, words in BAD_INPUTS
                    if (p := check_bad_input(label, call, words, pathlib.Path(work_dir)))]
    o.bad_clean = len(BAD_INPUTS) - len(problems)
    o.extra = {"problems": problems}
    o.check(problems, "each named in a TypeError/ValueError")
    if problems:
        o.detail = f"{len(problems)} not handled cleanly:"
    return o

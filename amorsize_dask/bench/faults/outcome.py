"""What a fault did (:class:`Outcome`, its table cells) and the helpers every fault uses:
deadlines, process reaping, fake records, planted files, captured warnings, subprocesses."""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import os
import pathlib
import secrets
import shutil
import signal
import subprocess
import sys
import threading
import time
import tracemalloc
import warnings
from typing import Any, Callable

from ...learning.records import encode_line, make_record
from ...learning.store import TrainingStore


PYTHON = sys.executable
FP = "a1b2c3d4e5f6a7b8"
WL = "0123456789abcdef"
TEN_YEARS = 10 * 365.25 * 24 * 3600
# Seconds a subprocess may take to start (fresh interpreter importing dask) on 2 loaded cores.
START_DEADLINE = 60.0


class FaultSkipped(Exception):
    """This machine cannot inject the fault (not root, mount not permitted...)."""


@dataclasses.dataclass
class Outcome:
    """What one injected fault did; None: does not apply to this fault."""

    fault: str
    injected: bool = False
    survived: bool = False
    bad_tried: int | None = None
    bad_clean: int | None = None
    records_written: int | None = None
    records_read: int | None = None
    records_corrupt: int | None = None   # lines/files the reader skipped and counted
    results_expected: int | None = None
    results_returned: int | None = None
    seconds: float = 0.0
    detail: str = ""
    extra: dict = dataclasses.field(default_factory=dict)

    @property
    def results_lost(self) -> int | None:
        if self.results_expected is None or self.results_returned is None:
            return None
        return max(0, self.results_expected - self.results_returned)

    @property
    def records_lost(self) -> int | None:
        if self.records_written is None or self.records_read is None:
            return None
        return max(0, self.records_written - self.records_read)

    def check(self, problems: list[str], summary: str = "") -> "Outcome":
        """Survived if no problem was found; the detail says what went wrong (or ``summary``)."""
        self.survived = not problems
        self.detail = "; ".join(problems) if problems else summary
        return self


def wait_until(predicate: Callable[[], Any], timeout: float, interval: float = 0.02) -> bool:
    """Poll ``predicate`` until it is true or ``timeout`` seconds passed; its last truth."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() >= deadline:
            return False
        time.sleep(interval)
    return True


def call_with_deadline(fn: Callable[[], Any], timeout: float) -> tuple[bool, Any, BaseException | None]:
    """``fn()`` in a daemon thread: (finished, value, exception). A hang is a result, not a hang."""
    box: dict = {}

    def target():
        try:
            box["value"] = fn()
        except BaseException as exc:  # noqa: BLE001 - reported to the caller
            box["exc"] = exc

    thread = threading.Thread(target=target, daemon=True, name="amorsize-fault")
    thread.start()
    thread.join(timeout)
    return not thread.is_alive(), box.get("value"), box.get("exc")


def alive(pids) -> list[int]:
    """The pids of ``pids`` still running (zombies count as gone)."""
    import psutil

    out = []
    for pid in pids:
        try:
            if psutil.Process(pid).status() != psutil.STATUS_ZOMBIE:
                out.append(pid)
        except psutil.NoSuchProcess:
            pass
    return out


def descendants(pid: int) -> set[int]:
    import psutil

    try:
        return {p.pid for p in psutil.Process(pid).children(recursive=True)}
    except psutil.NoSuchProcess:
        return set()


def kill_pids(pids) -> list[int]:
    """SIGKILL those of ``pids`` (processes this module started) still running; which."""
    left = alive(pids)
    for pid in left:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    return left


def fake_record(i: int, *, fingerprint: str = FP, workload: str = WL, function: str = "faults.work",
                t: float | None = None, fields: dict | None = None) -> dict:
    """A valid record whose ``features.n_items`` is ``i`` (to check what came back)."""
    return make_record(
        fingerprint=fingerprint, fingerprint_fields=fields or {"kind": "local", "cores": 2},
        workload=workload, function=function, features={"n_items": i, "item_seconds": 0.001},
        engine="processes", n_workers=2, chunksize=50, source="sample", wall_seconds=1.0,
        compute_seconds=1.5, time=1_700_000_000.0 + i if t is None else t)


def record_line(record: dict) -> bytes:
    """``record`` as a segment line, with a fresh id (as the store writes it)."""
    return encode_line(dict(record, id=secrets.token_hex(8)))


def plant(path: pathlib.Path, name: str, data: bytes) -> pathlib.Path:
    """A file ``segments/<name>`` written directly (as another writer or an attacker would)."""
    seg = pathlib.Path(path) / "segments"
    seg.mkdir(parents=True, exist_ok=True)
    (seg / name).write_bytes(data)
    return seg / name


def skipped_count(store: TrainingStore) -> int:
    return sum(store.stats().skipped.values())


def files_under(path: pathlib.Path) -> set[str]:
    return {str(p.relative_to(path)) for p in pathlib.Path(path).rglob("*")}


@contextlib.contextmanager
def captured_warnings():
    """Every warning raised inside, as a list (the ``amorsize_dask`` log lines are muted)."""
    log = logging.getLogger("amorsize_dask")
    handler = logging.NullHandler()
    log.addHandler(handler)
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            yield caught
    finally:
        log.removeHandler(handler)


def ours(caught) -> list[str]:
    """Messages of the amorsize_dask warnings among ``caught``."""
    return [str(w.message) for w in caught if "amorsize" in str(w.message).lower()]


@contextlib.contextmanager
def tmpfs(path: pathlib.Path, size: str):
    """A real tmpfs of ``size`` at ``path`` (root only), unmounted on exit."""
    path.mkdir(parents=True, exist_ok=True)
    if os.geteuid() != 0 or not shutil.which("mount"):
        raise FaultSkipped("mounting a tmpfs needs root")
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)],
                          capture_output=True, text=True)
    if done.returncode:
        raise FaultSkipped(f"mount -t tmpfs not permitted here: {done.stderr.strip()}")
    try:
        yield path
    finally:
        if subprocess.run(["umount", str(path)], capture_output=True).returncode:
            subprocess.run(["umount", "-l", str(path)], capture_output=True)  # busy: detach


def run_child(func_name: str, *args, env: dict | None = None, timeout: float = 120.0,
              cwd=None) -> dict:
    """Run ``faults.<func_name>(*args)`` in a fresh interpreter; the JSON it prints last."""
    code = (f"import sys, json; from amorsize_dask.bench.faults import {func_name}; "
            f"print(json.dumps({func_name}(*sys.argv[1:])), flush=True)")
    done = subprocess.run([PYTHON, "-c", code, *map(str, args)], capture_output=True,
                          text=True, timeout=timeout, env=env, cwd=cwd)
    lines = done.stdout.strip().splitlines()
    try:
        return json.loads(lines[-1])
    except (IndexError, ValueError):
        last = (done.stderr.strip().splitlines() or ["no output"])[-1]
        return {"error": f"subprocess exited {done.returncode}: {last[:300]}"}


def peak_bytes(fn: Callable[[], Any]) -> tuple[Any, int]:
    """``fn()`` and the peak of Python allocations while it ran (tracemalloc)."""
    was = tracemalloc.is_tracing()
    if not was:
        tracemalloc.start()
    tracemalloc.reset_peak()
    try:
        value = fn()
        return value, tracemalloc.get_traced_memory()[1]
    finally:
        if not was:
            tracemalloc.stop()


def _cell(*values) -> str:
    return "-" if all(v is None for v in values) else " / ".join("-" if v is None else f"{v:,}"
                                                                 for v in values)

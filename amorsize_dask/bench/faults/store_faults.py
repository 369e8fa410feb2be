"""Store faults: concurrent writers, a writer killed mid-append, read-only directories and
filesystems, a full disk, the training directory deleted between and during maps."""

from __future__ import annotations

import multiprocessing
import os
import pathlib
import shutil
import signal
import subprocess
import tempfile
import threading
import time

from ... import mapping
from ...learning.sealed import is_sealed
from ...learning.store import TrainingStore
from .outcome import (START_DEADLINE, FaultSkipped, Outcome, captured_warnings, fake_record, files_under,
                      ours, plant, record_line, run_child, skipped_count, tmpfs, wait_until)
from .workers import spin, square


def _append_many(path, worker: int, n: int) -> None:
    """(child process) Append ``n`` records; exit 3 at the first one refused."""
    store = TrainingStore(path)
    for i in range(n):
        if not store.append(fake_record(i, function=f"w{worker}")):
            os._exit(3)


def mp_context():
    methods = multiprocessing.get_all_start_methods()
    return multiprocessing.get_context("forkserver" if "forkserver" in methods else "spawn")


def fault_concurrent_writers(work_dir, n_procs: int = 16, n_records: int = 1000) -> Outcome:
    """``n_procs`` writer processes append ``n_records`` each: all read back, none corrupt."""
    path = pathlib.Path(work_dir) / "train"
    o = Outcome(f"{n_procs} writer processes x {n_records:,}", injected=True,
                records_written=0)
    ctx = mp_context()
    procs = [ctx.Process(target=_append_many, args=(str(path), w, n_records)) for w in range(n_procs)]
    for p in procs:
        p.start()
    deadline = time.monotonic() + 120
    for p in procs:
        p.join(max(0.0, deadline - time.monotonic()))
    problems = []
    for p in procs:
        if p.exitcode is None:
            p.kill()
            p.join()
            problems.append(f"writer {p.pid} hung")
        elif p.exitcode == 0:
            o.records_written += n_records
        else:
            problems.append(f"writer {p.pid} exited {p.exitcode}")
    store = TrainingStore(path)
    got = store.records()
    stats = store.stats()
    o.records_read, o.records_corrupt = len(got), sum(stats.skipped.values())
    expected = {(f"w{w}", i) for w in range(n_procs) for i in range(n_records)}
    if {(r["function"], r["features"]["n_items"]) for r in got} != expected or len(got) != len(expected):
        problems.append(f"{len(got)} records read back, {len(expected)} expected")
    if len({r["id"] for r in got}) != len(got):
        problems.append("duplicate ids")
    if o.records_corrupt:
        problems.append(f"skipped: {stats.skipped}")
    return o.check(problems, f"{stats.n_segments} segments, {stats.n_bytes / 1e6:.1f} MB")


def _append_forever(path) -> None:
    store = TrainingStore(path)
    i = 0
    while store.append(fake_record(i)):
        i += 1


def fault_writer_killed(work_dir, min_lines: int = 2000) -> Outcome:
    """SIGKILL a writer appending in a loop: complete lines readable, at most one torn."""
    path = pathlib.Path(work_dir) / "train"
    o = Outcome("writer SIGKILLed mid-append")
    proc = mp_context().Process(target=_append_forever, args=(str(path),))
    proc.start()

    def lines():  # a sealed file's header line is no record
        return sum(f.read_bytes().count(b"\n") - is_sealed(f.name) for f in (path / "segments").glob("*.jsonl")) \
            if (path / "segments").is_dir() else 0

    problems = []
    if not wait_until(lambda: lines() >= min_lines, START_DEADLINE, 0.01):
        problems.append("the writer never got going")
    os.kill(proc.pid, signal.SIGKILL)
    proc.join(30)
    o.injected = proc.exitcode == -signal.SIGKILL
    complete = lines()
    store = TrainingStore(path)
    got = store.records()
    stats = store.stats()
    o.records_written, o.records_read = complete, len(got)
    o.records_corrupt = sum(stats.skipped.values())
    if [r["features"]["n_items"] for r in got] != list(range(complete)):
        problems.append(f"{len(got)} records read of {complete} complete lines, or not in order")
    if stats.skipped["torn"] > 1 or o.records_corrupt != stats.skipped["torn"]:
        problems.append(f"skipped: { {k: v for k, v in stats.skipped.items() if v} }")
    return o.check(problems, f"{complete:,} complete lines, {stats.skipped['torn']} torn")


def _read_only_child(train, warm):
    """(subprocess, root) Warm up, drop to nobody, then map into the root-owned ``train``."""
    mapping.map(spin, range(40), training_dir=warm)          # imports done as root
    os.setgroups([])
    os.setgid(65534)
    os.setuid(65534)
    from ...learning.learner import get_learner

    with captured_warnings() as caught:
        ok = all(mapping.map(spin, range(40), training_dir=train) == [spin(x) for x in range(40)]
                 for _ in range(3))
    return {"uid": os.getuid(), "ok": ok, "warnings": ours(caught),
            "seen": len(get_learner(train).store.records())}


def fault_read_only_user(work_dir) -> Outcome:
    """An unprivileged user maps into a root-owned 0o755 directory: results, ONE warning."""
    if os.geteuid() != 0:
        raise FaultSkipped("needs root to create a directory another user cannot write")
    # Not under work_dir: its parents (pytest's tmp dirs) are 0o700, closed to other users.
    top = pathlib.Path(tempfile.mkdtemp(prefix="amorsize-ro-"))
    try:
        top.chmod(0o755)
        train = top / "train"
        store = TrainingStore(train)
        for i in range(3):
            store.append(fake_record(i))
        before = files_under(train)
        o = Outcome("read-only dir (uid 65534)", injected=True, results_expected=120,
                    records_written=3)
        env = dict(os.environ, XDG_CACHE_HOME=str(top / "cache"))
        out = run_child("_read_only_child", train, top / "warm", env=env, cwd=top)
        if "error" in out:
            return o.check([out["error"]])
        o.results_returned = 120 if out["ok"] else 0
        o.records_read = out["seen"]
        problems = []
        if out["uid"] != 65534:
            problems.append("did not drop privileges")
        if not out["ok"]:
            problems.append("map returned wrong results")
        if len(out["warnings"]) != 1:
            problems.append(f"{len(out['warnings'])} warnings, one expected: {out['warnings']}")
        if o.records_lost:
            problems.append(f"{o.records_read} of 3 existing records read")
        if files_under(train) != before:
            problems.append("files appeared in the read-only directory")
        return o.check(problems, "3 maps as nobody; existing records read; one warning")
    finally:
        shutil.rmtree(top, ignore_errors=True)


def fault_read_only_fs(work_dir) -> Outcome:
    """A training directory on a filesystem remounted read-only (EROFS, root too)."""
    mnt = pathlib.Path(work_dir) / "ro"
    o = Outcome("read-only filesystem (EROFS)", results_expected=120, records_written=3)
    with tmpfs(mnt, "1m"):
        train = mnt / "train"
        plant(train, "otherhost-1-00000000.jsonl", b"".join(record_line(fake_record(i))
                                                             for i in range(3)))
        done = subprocess.run(["mount", "-o", "remount,ro", str(mnt)], capture_output=True, text=True)
        if done.returncode:
            raise FaultSkipped(f"remount read-only not permitted: {done.stderr.strip()}")
        o.injected = True
        with captured_warnings() as caught:
            results = [mapping.map(spin, range(40), training_dir=train) for _ in range(3)]
        o.results_returned = sum(len(r) for r in results if r == [spin(x) for x in range(40)])
        o.records_read = len(TrainingStore(train).records())
    problems = []
    if o.results_lost:
        problems.append("wrong results")
    if len(ours(caught)) != 1:
        problems.append(f"{len(ours(caught))} warnings, one expected")
    if o.records_lost:
        problems.append(f"{o.records_read} of 3 existing records read")
    return o.check(problems, "results returned, existing records read, one warning")


class _DevFullStore(TrainingStore):
    """Every write fails with a real ENOSPC from the kernel (/dev/full)."""

    def _open_segment(self):
        return os.open("/dev/full", os.O_WRONLY | os.O_APPEND)


def fault_full_disk(work_dir, n_maps: int = 30) -> Outcome:
    """The disk fills up under a stream of maps: results, one warning, nothing lost before;
    learning resumes when space returns. A 64 KiB tmpfs, else /dev/full."""
    from ...learning.learner import get_learner

    work_dir = pathlib.Path(work_dir)
    o = Outcome("disk full (ENOSPC)", results_expected=n_maps)

    def maps(train, first=0, n=n_maps):
        ok = 0
        for i in range(first, first + n):
            items = range(10 + i)
            ok += mapping.map(square, items, engine="serial", training_dir=train) == [x * x for x in items]
        return ok

    problems = []
    try:
        with tmpfs(work_dir / "small", "64k") as mnt:
            train = mnt / "train"
            free = os.statvfs(mnt).f_bavail * os.statvfs(mnt).f_frsize
            with open(mnt / "filler", "wb") as f:
                f.write(b"\0" * max(0, free - 8192))            # ~10 records of room left
            with captured_warnings() as caught:
                o.results_returned = maps(train)
            o.injected = os.statvfs(mnt).f_bavail * os.statvfs(mnt).f_frsize < 1024
            store = TrainingStore(train)
            got = sorted(r["features"]["n_items"] for r in store.records())
            # Maps up to the newest record found were recorded: a gap is a lost record.
            o.records_read, o.records_written = len(got), (got[-1] - 9 if got else 0)
            o.records_corrupt = skipped_count(store)
            if not got or got != list(range(10, 10 + len(got))):
                problems.append(f"records before the disk filled were lost: {got}")
            (mnt / "filler").unlink()                            # space comes back
            with captured_warnings() as later:
                maps(train, first=100, n=1)
            if [r["features"]["n_items"] for r in TrainingStore(train).records()][-1:] != [110]:
                problems.append("learning did not resume when space came back")
            if ours(later):
                problems.append("warned again after space came back")
            how = f"64 KiB tmpfs filled after {len(got)} records"
    except FaultSkipped as why:
        if not os.path.exists("/dev/full"):
            raise FaultSkipped(f"{why}; and no /dev/full") from None
        train = work_dir / "train"
        o.records_written = 3
        before = TrainingStore(train)
        for i in range(3):
            before.append(fake_record(i))
        get_learner(train).store = _DevFullStore(train)
        with captured_warnings() as caught:
            o.results_returned = maps(train)
        o.injected = True
        o.records_read = len(TrainingStore(train).records())
        if o.records_lost:
            problems.append("records written before the disk filled were lost")
        how = "/dev/full (tmpfs not mountable)"
    if o.results_lost:
        problems.append(f"{o.results_lost} maps returned wrong results")
    if len(ours(caught)) != 1:
        problems.append(f"{len(ours(caught))} warnings, one expected")
    return o.check(problems, how + "; one warning")


def fault_dir_deleted(work_dir, n_maps: int = 20) -> Outcome:
    """The training directory removed between maps and, from a thread, during them."""
    train = pathlib.Path(work_dir) / "train"
    o = Outcome("training dir rmtree'd between/during maps", injected=True,
                results_expected=2 * n_maps + 1)
    problems = []
    ok = 0
    with captured_warnings() as caught:
        for i in range(n_maps):                       # between maps
            try:
                ok += mapping.map(spin, range(50 + i), training_dir=train) == [spin(x) for x in range(50 + i)]
            except Exception as exc:  # noqa: BLE001
                problems.append(f"between: {type(exc).__name__}: {exc}")
            shutil.rmtree(train, ignore_errors=True)
        stop = threading.Event()
        removals = [0]

        def remover():
            while not stop.wait(0.002):
                if train.exists():
                    shutil.rmtree(train, ignore_errors=True)
                    removals[0] += 1

        thread = threading.Thread(target=remover, daemon=True)
        thread.start()
        try:
            for i in range(n_maps):                   # during maps
                engine = "processes" if i % 4 == 0 else "auto"
                try:
                    got = mapping.map(spin, range(200 + i), engine=engine, training_dir=train)
                    ok += got == [spin(x) for x in range(200 + i)]
                except Exception as exc:  # noqa: BLE001
                    problems.append(f"during: {type(exc).__name__}: {exc}")
        finally:
            stop.set()
            thread.join(10)
        ok += mapping.map(spin, range(7), training_dir=train) == [spin(x) for x in range(7)]
    o.results_returned = ok
    o.records_read = len(TrainingStore(train).records())
    if o.results_lost:
        problems.append(f"{o.results_lost} maps returned wrong results")
    if not o.records_read:
        problems.append("the last map's record was not written to the recreated directory")
    return o.check(problems[:3], f"{removals[0]} removals during maps; {len(ours(caught))} warning(s)")

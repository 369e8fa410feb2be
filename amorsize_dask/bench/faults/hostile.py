"""Hostile store content: planted pickles and code, JSON bombs, symlinks out of the directory,
path and control characters in record strings, file modes under a umask."""

from __future__ import annotations

import json
import os
import pathlib
import pickle
import secrets
import sys

import dask

from ... import mapping
from ...planning import overheads
from ...engines import shared_engine
from ...learning.records import encode_line
from ...learning.store import TrainingStore
from ...target.target import Target
from .outcome import (Outcome, fake_record, files_under, peak_bytes, plant, record_line, run_child,
                      skipped_count)
from .workers import spin


class _Evil:
    """Unpickling this creates ``marker``: proof that something was unpickled."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


def _planted_child():
    """(subprocess) Import, map on two engines, read and prune the default training dir."""
    import amorsize_dask as ad

    ok = ad.map(spin, range(2000)) == [spin(x) for x in range(2000)]
    ok &= ad.map(spin, range(100), engine="processes", n_workers=2, chunksize=10) == [
        spin(x) for x in range(100)]
    store = TrainingStore()
    store.settle_seconds = 0
    n, skipped = len(store.records()), sum(store.stats().skipped.values())
    store.prune()
    return {"ok": ok, "records": n, "skipped": skipped,
            "path": str(store.path), "modules": sorted(m for m in sys.modules if "evil" in m
                                                       or m in ("sitecustomize", "usercustomize"))}


def fault_planted_code(work_dir) -> Outcome:
    """Pickles with ``__reduce__``, ``.pth``/``.py``/``sitecustomize.py`` files in the training
    and cache directories: a fresh interpreter importing amorsize_dask and mapping never runs them."""
    work_dir = pathlib.Path(work_dir)
    cache = work_dir / "cache"
    train = cache / "amorsize_dask" / "training"      # the default location
    markers = work_dir / "markers"
    markers.mkdir(parents=True)
    plant(train, "otherhost-1-00000000.jsonl", b"".join(record_line(fake_record(i)) for i in range(5)))
    places = [train, train / "segments", cache / "amorsize_dask", cache / "amorsize_dask" / "overheads"]
    planted = 0
    for k, place in enumerate(places):
        place.mkdir(parents=True, exist_ok=True)
        code = f"open({str(markers / f'code{k}')!r}, 'w').close()\n"
        for name in ("evil.py", "sitecustomize.py", "usercustomize.py", "__init__.py", "amorsize_dask.py"):
            (place / name).write_text(code)
        (place / "evil.pth").write_text("import os; " + code)
        for name in ("evil.pkl", "evil.jsonl", "evil.npy", "evil.json"):
            (place / name).write_bytes(pickle.dumps(_Evil(markers / f"pickle{k}-{name}")))
        planted += 10
    o = Outcome("planted pickles/.pth/.py/sitecustomize", injected=True, records_written=5,
                results_expected=2100)
    env = {k: v for k, v in os.environ.items() if not k.startswith("DASK_AMORSIZE")}
    env["XDG_CACHE_HOME"] = str(cache)
    cwd = work_dir / "cwd"
    cwd.mkdir()
    out = run_child("_planted_child", env=env, cwd=cwd)
    if "error" in out:
        return o.check([out["error"]])
    o.results_returned = 2100 if out["ok"] else 0
    o.records_read, o.records_corrupt = out["records"] - 2, out["skipped"]
    problems = []
    if any(markers.iterdir()):
        problems.append(f"EXECUTED: {sorted(p.name for p in markers.iterdir())}")
    if out["modules"]:
        problems.append(f"imported {out['modules']}")
    if out["path"] != str(train):
        problems.append(f"default training dir is {out['path']}")
    if not out["ok"]:
        problems.append("wrong results")
    if o.records_read != 5 or not o.records_corrupt:
        problems.append(f"{o.records_read} records read, {o.records_corrupt} skipped")
    return o.check(problems, f"{planted} planted files in 4 places; none ran")


def spin_more(x):
    return spin(x, 3000)


def _overheads_child(n: int):
    """(subprocess) A map long enough to consult the (planted) overheads cache."""
    items = range(int(n))
    return {"ok": mapping.map(spin_more, items) == [spin_more(x) for x in items]}


def fault_overheads_cache_bomb(work_dir) -> Outcome:
    """The cached overheads file of this machine replaced by a 100k-deep JSON array."""
    from ... import config
    from ...target.fingerprint import local_fingerprint
    from ...planning.overheads import cache_path

    work_dir = pathlib.Path(work_dir)
    env = dict(os.environ, XDG_CACHE_HOME=str(work_dir / "cache"),
               DASK_AMORSIZE__TRAINING_DIR=str(work_dir / "train"))
    mine = cache_path(local_fingerprint(shared_engine().start_method).id)
    path = work_dir / "cache" / mine.relative_to(config.user_cache_dir().parent)
    path.parent.mkdir(parents=True)
    path.write_bytes(b"[" * 100_000 + b"]" * 100_000)
    o = Outcome("overheads cache: 100k-deep JSON", injected=True, results_expected=3000)
    out = run_child("_overheads_child", 3000, env=env, cwd=work_dir)
    o.results_returned = 3000 if out.get("ok") else 0
    return o.check([] if out.get("ok") else [out.get("error", "wrong results")[-300:]],
                   "ignored; overheads measured again")


def fault_json_bombs(work_dir) -> Outcome:
    """100k-deep nesting, a 10**6-digit int, NaN/Infinity, a 100 MB line: skipped, counted,
    memory bounded; planning still works."""
    train = pathlib.Path(work_dir) / "train"
    good = [record_line(fake_record(i)) for i in range(3)]
    base = json.dumps(fake_record(50), separators=(",", ":"))
    bombs = [
        b"[" * 100_000 + b"]" * 100_000 + b"\n",
        b'{"a":' * 100_000 + b"1" + b"}" * 100_000 + b"\n",
        b'{"schema":1,"time":' + b"7" * 10**6 + b"}\n",
        base.replace('"n_items":50', '"n_items":' + "9" * 10**6).encode() + b"\n",
        *(base.replace('"wall_seconds":1.0', f'"wall_seconds":{c}').encode() + b"\n"
          for c in ("NaN", "Infinity", "-Infinity")),
    ]
    plant(train, "bombs-1-00000000.jsonl", good[0] + b"".join(bombs) + good[1])
    huge = plant(train, "huge-1-00000000.jsonl", b"")
    line_bytes = 100 * 10**6
    with open(huge, "r+b") as f:                      # sparse: a 100 MB line of zeros
        f.seek(line_bytes)
        f.write(b"\n" + good[2])
    o = Outcome("JSON bombs + a 100 MB line", injected=True, records_written=3,
                results_expected=300)
    problems = []
    settings = {"amorsize.store.max-line-bytes": "2 MiB", "amorsize.store.max-segment-bytes": "256 MiB"}
    with dask.config.set(settings):
        store = TrainingStore(train)
        got, peak = peak_bytes(store.records)
        skipped = store.stats().skipped
        o.records_read, o.records_corrupt = len(got), sum(skipped.values())
        try:
            results = mapping.map(spin, range(300), training_dir=train)
            o.results_returned = len(results) if results == [spin(x) for x in range(300)] else 0
            mapping.plan(spin, range(300), training_dir=train).explain()
        except Exception as exc:  # noqa: BLE001
            problems.append(f"planning failed: {type(exc).__name__}: {exc}")
    if o.records_lost:
        problems.append(f"{o.records_read} of 3 good records read")
    if skipped["not-json"] + skipped["invalid"] != len(bombs) or skipped["too-long"] != 1:
        problems.append(f"skipped {skipped}")
    if peak > 16 << 20:
        problems.append(f"peak memory {peak / 1e6:.0f} MB reading a 100 MB line")
    return o.check(problems, f"{len(bombs) + 1} skipped; peak {peak / 1e6:.1f} MB for the 100 MB line")


def _outside(work_dir) -> tuple[pathlib.Path, dict]:
    outside = pathlib.Path(work_dir) / "outside"
    outside.mkdir()
    (outside / "secret.jsonl").write_bytes(b"".join(record_line(fake_record(90 + i)) for i in range(3)))
    (outside / "app-log.jsonl").write_bytes(b'{"level": "info", "msg": "not a record"}\n')
    for p in outside.iterdir():
        os.utime(p, (1, 1))                           # quiet for decades: "settled"
    return outside, {p.name: p.read_bytes() for p in outside.iterdir()}


def _check_outside(outside, contents, problems):
    now = {p.name: p.read_bytes() for p in outside.iterdir()}
    if now != contents:
        problems.append(f"files outside changed: {sorted(contents)} -> {sorted(now)}")


def fault_symlinked_segment(work_dir) -> Outcome:
    """``segments/*.jsonl`` symlinks to a file and a directory outside: not followed or counted."""
    work_dir = pathlib.Path(work_dir)
    train = work_dir / "train"
    outside, contents = _outside(work_dir)
    plant(train, "mine-1-00000000.jsonl", b"".join(record_line(fake_record(i)) for i in range(3)))
    (train / "segments" / "link-1-00000000.jsonl").symlink_to(outside / "secret.jsonl")
    (train / "segments" / "dir-1-00000000.jsonl").symlink_to(outside)
    (train / "segments" / "log-1-00000000.jsonl").symlink_to(outside / "app-log.jsonl")
    o = Outcome("symlinks in segments/ -> outside", injected=True, records_written=3,
                results_expected=300)
    return _symlink_check(o, train, outside, contents, expect_read=3)


def fault_symlinked_segments_dir(work_dir) -> Outcome:
    """``segments`` itself a symlink to a directory outside: not followed, nothing outside
    read, written or removed."""
    work_dir = pathlib.Path(work_dir)
    train = work_dir / "train"
    outside, contents = _outside(work_dir)
    train.mkdir()
    (train / "segments").symlink_to(outside, target_is_directory=True)
    o = Outcome("segments/ is a symlink -> outside", injected=True, records_written=0,
                results_expected=300)
    return _symlink_check(o, train, outside, contents, expect_read=None)


def _symlink_check(o, train, outside, contents, expect_read):
    problems = []
    store = TrainingStore(train)
    o.records_read = len(store.records())
    o.records_corrupt = skipped_count(store)
    if any(r["features"]["n_items"] >= 90 for r in store.records()):
        problems.append("records of the file outside were read")
    results = mapping.map(spin, range(300), training_dir=train)
    o.results_returned = len(results) if results == [spin(x) for x in range(300)] else 0
    store.settle_seconds = 0
    store.prune(keep_per_workload=1)
    _check_outside(outside, contents, problems)
    if expect_read is not None and o.records_read != expect_read:
        problems.append(f"{o.records_read} records read, {expect_read} expected")
    return o.check(problems, "not followed; nothing outside touched")


_HOSTILE_STRINGS = ["../../etc/passwd", "..\\..\\windows\\win.ini", "/tmp/amorsize-pwned",
                    "a/../../b", "~/x", "$(touch pwned)", "`touch pwned`", "%s%n"]


def fault_path_strings(work_dir) -> Outcome:
    """Records whose strings hold path separators: no file is ever created from them."""
    work_dir = pathlib.Path(work_dir)
    train = work_dir / "a" / "b" / "train"
    from ...target.target import Target

    here = Target.local(spin, train)
    recs = [fake_record(i, function=s, fields={"cpu_model": s, s[:60]: s, "kind": "local"})
            for i, s in enumerate(_HOSTILE_STRINGS)]
    # The same workload on a near machine: borrowed by the planner, shown by explain().
    recs += [fake_record(300, function=s, workload=here.workload, fingerprint="f" * 16,
                         fields=dict(here.fingerprint.as_dict(), cpu_model=s))
             for s in _HOSTILE_STRINGS]
    plant(train, "otherhost-1-00000000.jsonl", b"".join(map(record_line, recs)))
    before = files_under(work_dir)
    o = Outcome("path strings in records (../../etc/passwd)", injected=True,
                records_written=len(recs), results_expected=300)
    store = TrainingStore(train)
    o.records_read = len(store.records())
    results = mapping.map(spin, range(300), training_dir=train)
    o.results_returned = len(results) if results == [spin(x) for x in range(300)] else 0
    mapping.plan(spin, range(300), training_dir=train).explain()
    store.stats()
    store.settle_seconds = 0
    store.prune(keep_per_workload=2)
    new = files_under(work_dir) - before
    strays = sorted(p for p in new if not (p.startswith("a/b/train/segments/") and p.endswith(".jsonl")))
    problems = [f"files created: {strays}"] if strays else []
    if os.path.exists("/tmp/amorsize-pwned") or (work_dir / "pwned").exists():
        problems.append("a file named by a record was created")
    return o.check(problems, f"{len(recs)} records read as data; no file created from them")


def _control_chars(value, path="") -> list[str]:
    """Where ``value`` (a record) holds a non-printable character."""
    found = []
    if isinstance(value, dict):
        for k, v in value.items():
            if isinstance(k, str) and not k.isprintable():
                found.append(f"key {path}{k!r}")
            found += _control_chars(v, f"{path}{k}.")
    elif isinstance(value, str) and not value.isprintable():
        found.append(f"{path[:-1]}={value!r}")
    return found


def fault_control_strings(work_dir) -> Outcome:
    """Records with control characters (terminal escapes, NUL, newlines) in any string:
    rejected or sanitized on read."""
    train = pathlib.Path(work_dir) / "train"
    nasty = "ok\x1b]0;pwned\x07\x1b[2J\x00\r\n"
    recs = [fake_record(0) | {"function": nasty},
            fake_record(1) | {"fingerprint_fields": {"kind": "local", "cpu_model": nasty}},
            fake_record(2) | {"fingerprint_fields": {"kind": "local", nasty: 1}},
            fake_record(3) | {"features": {"n_items": 3, nasty: 1.0}}]
    lines = [encode_line(dict(r, id=secrets.token_hex(8))) for r in recs]
    plant(train, "otherhost-1-00000000.jsonl", b"".join(lines))
    o = Outcome("control chars in record strings", injected=True)
    store = TrainingStore(train)
    got = store.records()
    o.records_read, o.records_corrupt = len(got), skipped_count(store)
    found = [f for r in got for f in _control_chars(r)]
    return o.check([f"kept: {', '.join(found)}"] if found else [],
                   f"{o.records_corrupt} rejected, the rest sanitized")


def _umask_child(umask, train):
    """(subprocess) Everything that writes files, under ``umask``."""
    os.umask(int(umask, 8))
    Target.local(spin).overheads(measure_now=True)               # this machine's overheads, measured ...
    overheads.run_later()
    overheads.join_background(120)                               # ... in the background, and cached
    mapping.map(spin, range(3000), engine="processes")
    mapping.map(spin, range(300), training_dir=train)
    mapping.map(spin, range(300), training_dir=train)
    store = TrainingStore(train)
    store.settle_seconds = 0
    store.prune(keep_per_workload=1)
    return {"ok": True}


def fault_permissions(work_dir, umask: int) -> Outcome:
    """Files and directories amorsize_dask creates honour the umask: never world-writable
    (0o022); nothing readable by others (0o077)."""
    work_dir = pathlib.Path(work_dir)
    cache, train = work_dir / "cache", work_dir / "train"
    env = dict(os.environ, XDG_CACHE_HOME=str(cache), DASK_AMORSIZE__TRAINING_DIR=str(train))
    o = Outcome(f"file modes under umask {umask:04o}", injected=True)
    out = run_child("_umask_child", f"{umask:o}", train, env=env, cwd=work_dir)
    if "error" in out:
        return o.check([out["error"]])
    created = [p for root in (cache, train) if root.exists() for p in [root, *root.rglob("*")]]
    bad = [f"{p.relative_to(work_dir)} {p.stat().st_mode & 0o777:o}" for p in created
           if p.stat().st_mode & umask]
    o.extra = {"files": len(created)}
    problems = [f"modes wider than the umask allows: {bad}"] if bad else []
    if not any(p.suffix == ".jsonl" for p in created) or not any(p.suffix == ".json" for p in created):
        problems.append("expected a segment and an overheads file to check")
    return o.check(problems, f"{len(created)} paths checked")

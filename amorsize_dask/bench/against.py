"""``bench --fresh --against REV``: our first call at another commit beside this checkout's.

A full ``bench --fresh`` run moves a family by 0.1-0.3 from run to run: one run cannot
tell a 5% change from the noise. This puts the two versions side by side instead. Per
family, ``runs`` rounds, each a fresh interpreter per side (the commit's package from a
``git archive`` of it; this checkout's) and one for serial, interleaved so that the
machine's drift weighs on both alike; it prints the medians in milliseconds, their ratio,
and the plans each side made. Same scripts, same empty training directories, the same
cached overheads as ``bench --fresh``.

>>> print(render([dict(family="tiny", serial=0.07, before=0.068, after=0.065, runs=7,
...                    before_plans=["serial"], after_plans=["processes 2x9924"])]))
| family | runs | serial ms | before ms | after ms | after/before | plans before | plans after      |
|--------|------|-----------|-----------|----------|--------------|--------------|------------------|
| tiny   | 7    | 70.0      | 68.0      | 65.0     | 0.956        | serial       | processes 2x9924 |
"""

from __future__ import annotations

import io
import os
import statistics
import subprocess
import tarfile
import tempfile
from typing import Callable

from .fresh import run_script
from .timing import format_table

__all__ = ["run", "render"]

_HERE = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # this checkout


def run(rev: str, *, families: list[str], runs: int = 7, out: Callable[[str], None] = print) -> list[dict]:
    """Time our first call at ``rev`` and in this checkout on each family; print the table."""
    from .local import calibrate

    # As bench --fresh: this machine's overheads cached first. Without them every first call
    # plans on estimates and its calibration, started after the call, dies with the script:
    # short jobs all ran serially (session 10, after the cache was cleared).
    out(f"calibration (cached per machine; not part of any timing): {calibrate():.2f} s")
    with tempfile.TemporaryDirectory(prefix="amorsize-against-") as tmp:
        before = _package_at(rev, os.path.join(tmp, "before"))
        rows = []
        for family in families:
            row = _family(family, tmp, before, runs)
            out(f"  {family}: serial {1e3 * row['serial']:.1f} ms, before {1e3 * row['before']:.1f} ms, "
                f"after {1e3 * row['after']:.1f} ms")
            rows.append(row)
    out(render(rows))
    return rows


def _package_at(rev: str, into: str) -> str:
    """The package as committed at ``rev``, extracted into ``into`` (for ``PYTHONPATH``)."""
    done = subprocess.run(["git", "-C", _HERE, "archive", "--format=tar", rev, "amorsize_dask"],
                          capture_output=True, timeout=120)
    if done.returncode != 0:
        raise ValueError(f"--against {rev!r}: git archive failed in {_HERE}: "
                         f"{done.stderr.decode(errors='replace').strip()}; give a commit of this repository")
    os.makedirs(into)
    with tarfile.open(fileobj=io.BytesIO(done.stdout)) as tar:
        tar.extractall(into, filter="data")
    return into


def _family(family: str, tmp: str, before: str, runs: int) -> dict:
    seconds: dict[str, list] = {"serial": [], "before": [], "after": []}
    plans: dict[str, list] = {"before": [], "after": []}
    for _ in range(runs):
        for side, path in (("before", before), ("after", _HERE)):
            result = run_script(tmp, family, "ours", 1.0, pythonpath=path)
            seconds[side].append(result["seconds"])
            plans[side].append(result.get("plan", "?"))
        seconds["serial"].append(run_script(tmp, family, "serial", 1.0)["seconds"])
    row = {side: statistics.median(values) for side, values in seconds.items()}
    return dict(row, family=family, runs=runs, before_plans=plans["before"], after_plans=plans["after"])


def render(rows: list[dict]) -> str:
    headers = ["family", "runs", "serial ms", "before ms", "after ms", "after/before", "plans before",
               "plans after"]
    table = [[r["family"], str(r["runs"]), f"{1e3 * r['serial']:.1f}", f"{1e3 * r['before']:.1f}",
              f"{1e3 * r['after']:.1f}", f"{r['after'] / r['before']:.3f}", ", ".join(sorted(set(r["before_plans"]))),
              ", ".join(sorted(set(r["after_plans"])))] for r in rows]
    return format_table(headers, table)

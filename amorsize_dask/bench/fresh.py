"""``bench --fresh``: each tool's first call in a fresh interpreter, as a user's script runs.

For every family (:mod:`.fresh_families`) a script defining the function is written and
run once per tool in a new interpreter; only the call is timed (imports and building the
items are not), with an empty training directory and this machine's overheads cached:

- ``serial``: a list comprehension;
- ``Pool``: ``multiprocessing.get_context("fork").Pool().map`` (pool start included);
- ``joblib``: ``Parallel(n_jobs=-1)`` (workers' start included; skipped if not installed);
- ``ours``: ``amorsize_dask.map`` under ``if __name__ == "__main__":``, and ``ours-noguard``
  in a script without the guard;
- ``ours-again``: the guarded script run again, in a new interpreter, with the training
  directory its first run left: a user's second run, planned by the model from one
  measured run (with one run measured it tries a neighbour the cost model vouches for);
  not a first call: a column of its own, beside the first calls;
- ``warm``: our third call in one process (same training directory), each paired with
  the oracle's configuration timed right after it in that process (the oracle's pools
  start after our calls, which run as in a user's script);
- ``oracle``: the fastest of a grid of pre-started fork pools, threads and serial
  (:class:`.local.Oracle`), best of its finalists' timings;
- ``oracle-first``: the oracle's configuration as a first call, on our engines, planning
  nothing (no sample, no probe, no record): what a first call that knew the answer
  costs in a fresh interpreter. Ours over it is what planning costs.

The first-call tools run in rounds, each tool once per round one after the other, so that
a slow spell of the machine weighs on a round rather than on one tool's runs. Ratios are
over the oracle; ours against the better of serial and Pool is the median of the rounds'
ratios; "paired" warm figures are the median of per-run ratios, "strict" the best warm
time over the oracle's best. A first call that takes over
:data:`ONE_RUN_ABOVE_SECONDS` (and 50x the oracle) is not repeated.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
import textwrap

from .fresh_families import FAMILIES
from .timing import format_table, geometric_mean

FIRST_CALL_TOOLS = ("serial", "Pool", "joblib", "ours", "ours-noguard", "ours-imports", "oracle-first")
# A tool whose first run takes longer than this (and 50x the oracle) is not run again: one
# run tells that much (joblib on big-global: 176 s a run, against a 24 ms oracle).
ONE_RUN_ABOVE_SECONDS = 10.0
# Fresh interpreters, but not first calls: the script run again with its first run's records.
AGAIN = "ours-again"

_HEADER = '''
import json, os, sys, time
SCALE = {scale!r}
def n(count):
    return max(2, int(count * SCALE))
'''

# (imports, the timed call): imports are not timed, as in the measurements.
_CALLS = {
    "serial": ("", "out = [func(x) for x in items]"),
    "Pool": ("import multiprocessing",
             "with multiprocessing.get_context('fork').Pool() as pool:\n    out = pool.map(func, items)"),
    "joblib": ("from joblib import Parallel, delayed", "out = Parallel(n_jobs=-1)(delayed(func)(x) for x in items)"),
    "ours": ("import amorsize_dask\nfrom amorsize_dask.mapping import run_map",
             "outcome = run_map(func, items)\nout = outcome.results"),
}
_CALLS["ours-noguard"] = _CALLS["ours"]
# A script's first ``ad.map`` as users write it: the modules it loads on first use (dask,
# numpy, the planner: ~0.2 s here, session 23) are part of the call, which "ours" leaves out.
_CALLS["ours-imports"] = ("import amorsize_dask as ad", "out = ad.map(func, items)")
# The oracle's configuration (``config``), nothing planned: the engine ours would run it on.
# Its imports are ours (the engines' modules too): only the run is timed.
_CALLS["oracle-first"] = ("import amorsize_dask.mapping\n"
                          "from amorsize_dask.engines import get_engine, processes, threads  # noqa: F401", """\
engine, n_workers, chunksize = {config!r}
if engine == "serial":
    out = [func(x) for x in items]
else:
    out = get_engine(engine).run(func, items, n_workers=n_workers, chunksize=chunksize, first_index=0).results""")

_TIMED = '''
{imports}
extra = {{}}
t0 = time.perf_counter()
{call}
seconds = time.perf_counter() - t0
assert len(out) == len(items)
if "outcome" in globals():
    plan = outcome.plan
    extra["plan"] = "serial" if plan.engine == "serial" else f"{{plan.engine}} {{plan.n_workers}}x{{plan.chunksize}}"
    extra["source"] = plan.source
print(json.dumps(dict(seconds=seconds, **extra)), flush=True)
'''

_ORACLE = '''
from amorsize_dask.bench.local import Oracle
from amorsize_dask.target.machine import cpu_count
if __name__ == "__main__":
    oracle = Oracle(cpu_count())
    try:
        items = {items}
        best, cfg, serial = oracle.search(func, items, 3, short_jobs_more=True)
    finally:
        oracle.close()
    print(json.dumps(dict(seconds=best, serial=serial, engine=cfg.engine, n_workers=cfg.n_workers,
                          chunksize=cfg.chunksize)), flush=True)
'''

# Our three calls run as in a user's script: the oracle's pools (whose threads rule out a
# fork) start after them. Before session 10 they started first, and our calls ran with
# the forkserver and a prestarted pool: numpy-nogil's third call read 1.4-3.5x the oracle
# there, 1.5-1.8x after the change (5 runs each).
_WARM = '''
import math
from amorsize_dask.bench.local import Config, Oracle
from amorsize_dask.target.machine import cpu_count
if __name__ == "__main__":
    items = {items}
    import amorsize_dask as ad
    from amorsize_dask.mapping import run_map
    for _ in range(2):
        ad.map(func, items)
    t0 = time.perf_counter()
    outcome = run_map(func, items)
    seconds = time.perf_counter() - t0
    oracle = Oracle(cpu_count())
    try:
        cfg = Config(*{config!r})
        paired = oracle.time_config(cfg, func, items, math.inf)
    finally:
        oracle.close()
    plan = outcome.plan
    print(json.dumps(dict(seconds=seconds, paired=paired, plan='serial' if plan.engine == 'serial'
                          else f'{{plan.engine}} {{plan.n_workers}}x{{plan.chunksize}}')), flush=True)
'''


def script_for(family: str, tool: str, scale: float, config=None) -> str:
    """The text of the script that runs ``tool`` once on ``family``."""
    fam = FAMILIES[family]
    head = _HEADER.format(scale=scale) + textwrap.dedent(fam.source)
    if tool == "oracle":
        return head + _ORACLE.format(items=fam.items)
    if tool == "warm":
        return head + _WARM.format(items=fam.items, config=tuple(config))
    imports, call = _CALLS[tool]
    if tool == "oracle-first":
        call = call.format(config=tuple(config))
    body = f"items = {fam.items}\n" + _TIMED.format(imports=imports, call=call)
    if tool == "ours-noguard":
        return head + body
    return head + 'if __name__ == "__main__":\n' + textwrap.indent(body, "    ")


_START = '''
import json, statistics, time
import amorsize_dask
from amorsize_dask.engines import shared_engine
try:
    from amorsize_dask.target.machine import cpu_count
except ImportError:  # the layout before the folders (to measure an older checkout)
    from amorsize_dask.machine import cpu_count
from amorsize_dask.planning import overheads

def read_table():
    t0 = time.perf_counter()
    for key, value in TABLE.items():
        pass
    return time.perf_counter() - t0

def read_table_in_worker(_):
    return read_table()

if __name__ == "__main__":
    engine, n = shared_engine(), cpu_count()
    t0 = time.perf_counter(); engine.pool(n); first = time.perf_counter() - t0
    method = getattr(engine, "last_start_method", None) or engine.start_method
    engine.shutdown()
    t0 = time.perf_counter(); engine.pool(n); again = time.perf_counter() - t0
    engine.shutdown()
    from amorsize_dask.engines import get_engine
    t0 = time.perf_counter(); overheads.measure_local(engine, get_engine("threads"), n)
    calibration = time.perf_counter() - t0
    engine.shutdown()
    copy = None
    try:  # a forked worker's first read of the caller's table, beyond the caller's own first read
        from amorsize_dask.engines.fork_copy import copied_bytes
    except ImportError:  # an older checkout
        copied_bytes = None
    TABLE = {i: str(i) * 3 for i in range(300_000)}  # bench --fresh big-global's
    if copied_bytes is not None and engine.next_start_method() == "fork":
        here = read_table()
        there = list(engine.pool(n).map(read_table_in_worker, range(n)))
        copy = (statistics.median(there) - here) / copied_bytes(read_table)
    engine.shutdown()
    print(json.dumps(dict(first=first, again=again, calibration=calibration, method=method, copy=copy)))
'''


def start_figures(repeat: int = 5) -> dict:
    """Medians over fresh interpreters: the first pool start, a restart, a calibration."""
    with tempfile.TemporaryDirectory(prefix="amorsize-start-") as tmp:
        script = os.path.join(tmp, "start.py")
        with open(script, "w") as fh:
            fh.write(_START)
        runs = []
        for _ in range(repeat):
            done = subprocess.run([sys.executable, script], capture_output=True, text=True, timeout=300, cwd=tmp,
                                  env=_user_environment())
            if done.returncode != 0:
                raise RuntimeError(f"pool start figures failed:\n{done.stderr[-2000:]}")
            runs.append(json.loads(done.stdout.strip().splitlines()[-1]))
    figures = {key: statistics.median(r[key] for r in runs) for key in ("first", "again", "calibration")}
    copies = [r["copy"] for r in runs if r.get("copy") is not None]
    return {**figures, "method": runs[-1]["method"], "copy": statistics.median(copies) if copies else None}


def run(*, quick: bool = False, families=None, repeat: int = 3, out=print) -> list[dict]:
    """Run every tool on every family in fresh interpreters; print the table; return rows."""
    from .local import calibrate

    starts = start_figures(1 if quick else 5)
    out(f"process pool ({starts['method']}), fresh interpreter (median): first start {1e3 * starts['first']:.0f} ms, "
        f"restart {1e3 * starts['again']:.0f} ms; calibration {1e3 * starts['calibration']:.0f} ms "
        "(after the call, in the background)")
    if starts["copy"] is not None:
        out(f"fork copy (a forked worker's first read of the caller's objects, beyond the caller's own; "
            f"big-global's table): {1e9 * starts['copy']:.2f} ns per estimated byte")
    out(f"calibration (cached per machine; not part of any timing): {calibrate():.2f} s")
    chosen = families or list(FAMILIES)
    scale, repeat = (0.25, 1) if quick else (1.0, repeat)
    rows = []
    with tempfile.TemporaryDirectory(prefix="amorsize-fresh-") as tmp:
        for family in chosen:
            row = _family(family, tmp, scale, repeat)
            rows.append(row)
            out(f"  {family}: oracle {row['oracle']:.3f}s ({row['oracle_config']}), ours {row['ours']:.3f}s "
                f"({row['ours_plan']}), warm {row['warm']:.3f}s ({row['warm_plan']})")
    out(render(rows))
    return rows


def _family(family: str, tmp: str, scale: float, repeat: int) -> dict:
    oracle = run_script(tmp, family, "oracle", scale)
    config = (oracle["engine"], oracle["n_workers"], oracle["chunksize"])
    row = {"family": family, "oracle": oracle["seconds"], "serial_in_oracle": oracle["serial"],
           "oracle_config": "serial" if config[0] == "serial" else f"{config[0]} {config[1]}x{config[2]}"}
    far_behind: set = set()
    rounds = [_round(family, tmp, scale, config, oracle["seconds"], far_behind) for _ in range(repeat)]
    for tool in (*FIRST_CALL_TOOLS, AGAIN):
        times = [r[tool]["seconds"] for r in rounds if r.get(tool) is not None]
        row[tool] = statistics.median(times) if times else None
        behind = [r[tool]["seconds"] / best for r in rounds
                  if r.get(tool) is not None and (best := _better_of_serial_and_pool(r)) is not None]
        if behind:
            row[f"{tool} behind"] = statistics.median(behind)
    row["ours_plan"] = rounds[-1]["ours"].get("plan", "?")
    row["again_plan"] = rounds[-1][AGAIN].get("plan", "?")
    warm = [run_script(tmp, family, "warm", scale, config) for _ in range(repeat)]
    row["warm"] = min(w["seconds"] for w in warm)
    row["warm_paired"] = statistics.median(w["seconds"] / w["paired"] for w in warm)
    row["warm_plan"] = warm[-1]["plan"]
    row["oracle"] = min([row["oracle"]] + [w["paired"] for w in warm])
    return row


def _round(family: str, tmp: str, scale: float, config, oracle_seconds: float, far_behind: set) -> dict:
    """Every first-call tool once, one after the other, then the guarded script again with
    the records its run left: a slow spell of the machine (1.5x for seconds at a time here)
    then weighs on one round of all tools, not on one tool's runs. A tool far behind
    (joblib sending big-global's table with every batch: 176 s) joins ``far_behind`` and
    runs in no later round."""
    found: dict = {}
    for tool in FIRST_CALL_TOOLS:
        if tool in far_behind:
            continue
        training = tempfile.mkdtemp(dir=tmp, prefix="training-")
        found[tool] = run_script(tmp, family, tool, scale, config, training=training)
        if tool == "ours":
            found[AGAIN] = run_script(tmp, family, "ours", scale, training=training)
        if found[tool] is not None and found[tool]["seconds"] > max(ONE_RUN_ABOVE_SECONDS, 50 * oracle_seconds):
            far_behind.add(tool)
    return found


def _better_of_serial_and_pool(found: dict) -> float | None:
    times = [found[t]["seconds"] for t in ("serial", "Pool") if found.get(t) is not None]
    return min(times) if times else None


def _user_environment(**extra) -> dict:
    """This environment as a user's: bytecode cached, as ``pip install`` leaves a package
    (with ``PYTHONDONTWRITEBYTECODE`` set, as on this project's machine, every module a
    call loads on first use was compiled from source inside the timed call: ~7 ms of ours)."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    return {**env, **extra}


def run_script(tmp: str, family: str, tool: str, scale: float, config=None,
               pythonpath: str | None = None, training: str | None = None) -> dict | None:
    """Run one script in a fresh interpreter with the training directory ``training`` (a
    new, empty one when None), importing the package from ``pythonpath`` first, when given
    (:mod:`.against`)."""
    script = os.path.join(tmp, f"{family}-{tool}.py")
    with open(script, "w") as fh:
        fh.write(script_for(family, tool, scale, config))
    training = training or tempfile.mkdtemp(dir=tmp, prefix="training-")
    env = _user_environment(DASK_AMORSIZE__TRAINING_DIR=training)
    if pythonpath is not None:
        env["PYTHONPATH"] = os.pathsep.join([pythonpath] + [p for p in [env.get("PYTHONPATH")] if p])
    done = subprocess.run([sys.executable, script], capture_output=True, text=True, env=env, timeout=1800, cwd=tmp)
    if done.returncode != 0:
        if tool == "joblib" and "No module named 'joblib'" in done.stderr:
            return None
        raise RuntimeError(f"bench --fresh {family}/{tool} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def render(rows: list[dict]) -> str:
    def ratio(row, key):
        return None if row.get(key) is None else row[key] / row["oracle"]

    def cell(value):
        return "-" if value is None else f"{value:.2f}"

    def spread(values):
        return f"geometric mean {geometric_mean(values):.3f}, worst {max(values):.2f}"

    headers = ["family", "oracle s", "oracle config", *FIRST_CALL_TOOLS, "our plan", AGAIN, "again plan",
               "warm paired", "warm strict", "warm plan"]
    table = [[r["family"], f"{r['oracle']:.3f}", r["oracle_config"], *(cell(ratio(r, t)) for t in FIRST_CALL_TOOLS),
              r["ours_plan"], cell(ratio(r, AGAIN)), r.get("again_plan", "-"), cell(r["warm_paired"]),
              cell(ratio(r, "warm")), r["warm_plan"]] for r in rows]
    lines = [format_table(headers, table), "",
             "first calls in fresh interpreters over the warm oracle (median of runs); warm: our third call "
             "in one process, paired with the oracle's configuration right after it, and strict (best/best); "
             "oracle-first: the oracle's configuration as a first call, planning nothing; "
             "ours-imports: a script's first ad.map, the modules it loads on first use timed with it; "
             f"{AGAIN}: the guarded script run again in a fresh interpreter, with its first run's records."]
    for tool in (*FIRST_CALL_TOOLS, AGAIN):
        values = [ratio(r, tool) for r in rows if r.get(tool) is not None]
        if values:
            lines.append(f"{tool}: {spread(values)}")
    planning = [r["ours"] / r["oracle-first"] for r in rows if r.get("oracle-first")]
    if planning:
        lines.append(f"ours over oracle-first (what planning costs a first call): {spread(planning)}")
    # The warm oracle's configuration is not always the best first call (a pandas groupby:
    # processes warm, serial in a fresh interpreter): the best of the first calls measured.
    best_first = [min(r[t] for t in ("serial", "Pool", "oracle-first") if r.get(t) is not None) / r["oracle"]
                  for r in rows if r.get("oracle-first")]
    if best_first:
        lines.append(f"best first call measured (of serial, Pool, oracle-first, per family): geometric mean "
                     f"{geometric_mean(best_first):.3f}")
    lines.append(f"warm paired: {spread([r['warm_paired'] for r in rows])}; "
                 f"warm strict: {spread([ratio(r, 'warm') for r in rows])}")
    for tool in ("ours", "ours-noguard", "ours-imports", AGAIN):
        paired = {r["family"]: _behind(r, tool) for r in rows if _behind(r, tool) is not None}
        if not paired:  # not run (rows of an older checkout's bench: --against)
            continue
        behind = [family for family, value in paired.items() if value > 1.10]
        worst = max(paired, key=paired.get)
        lines.append(f"{tool} over the better of serial and Pool, paired per round: geometric mean "
                     f"{geometric_mean(list(paired.values())):.3f}, worst {paired[worst]:.2f} ({worst}); "
                     f"more than 10% behind: {', '.join(behind) or 'none'}")
    return "\n".join(lines)


def _behind(row: dict, tool: str) -> float | None:
    """``tool``'s first call over the better of serial and Pool: the median of the rounds'
    ratios (each round ran them one after the other), else the ratio of the medians."""
    if row.get(f"{tool} behind") is not None:
        return row[f"{tool} behind"]
    best = [row[t] for t in ("serial", "Pool") if row.get(t) is not None]
    return row[tool] / min(best) if row.get(tool) is not None and best else None

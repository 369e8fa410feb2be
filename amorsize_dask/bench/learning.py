"""Learning benchmarks: the learning curve per family and the planning overhead.

- Learning curve: each family runs ``map`` 8 times in a row on a fresh training directory
  (3 times over); each run's wall time over that of the oracle's configuration, timed
  right after it. Then, trained on those sizes, the same families with 3× the items
  (sizes the model has not seen). The ``drift`` family changes its cost per item after
  run 1 (cheap items, then dear ones, the same function): the model must notice.
- Planning overhead: median milliseconds of ``plan`` cold (sampling) and warm (model),
  with 1,000 runs of the workload, 10,000 and 100,000 records of others, or 20,000
  one-run workloads in the training directory; a loop of 1,000 small ``map`` calls.

Run: ``amorsize-dask bench --learning`` / ``--overhead``.
"""

from __future__ import annotations

import math
import random
import statistics
import tempfile
import time
from dataclasses import dataclass
from typing import Callable

from ..target import machine
from ..engines import shared_engine
from ..learning import snapshot
from ..learning.learner import Learner, get_learner
from ..mapping import plan as make_plan
from ..mapping import run_map
from ..target.target import Target
from .local import Oracle, calibrate
from .timing import format_table, geometric_mean
from .workloads import cpu_1ms, suite, tiny


def _warm_workers(func, items) -> None:
    shared_engine().run(func, items[:4], n_workers=machine.cpu_count(), chunksize=1, first_index=0)


def _tag(plan) -> str:
    return "x" if plan.explored else plan.source[0]  # s(ample) / m(odel) / x (explored)


# Repetitions of each learning curve (each on its own fresh training directory). Single
# runs of the suite's 15-50 ms families move by 10-35% between repetitions on this shared
# 2-core machine (bench --learning, session 1); the median of 3 is what a run index reads.
SEEDS = 3


def paired(oracle: Oracle, cfg, func, items) -> float:
    """One timing of the oracle's configuration, taken right after one of ours.

    Each of our runs is a single run, so it is compared with a single run of the oracle's
    configuration in the same moment: the machine's drift (other tenants, frequency) then
    weighs on both sides alike instead of on ours alone.
    """
    return oracle.time_config(cfg, func, items, math.inf)


def drifting(units: int) -> int:
    """The drift family's function: its cost per item is the item (``units`` × ~10 us of
    pure Python, as :func:`.workloads.cpu_1ms` with 65 units)."""
    acc = 0
    for i in range(units * 250):
        acc = (acc + i * i) % 1_000_003
    return acc + units


# The drift family: one function whose cost per item changes between runs — cheap items
# (~10 us: serial is right) in run 1, dear ones (~1 ms, parallel is right) from run 2 on.
DRIFT_CHEAP, DRIFT_DEAR, DRIFT_ITEMS = 1, 65, 1_000


@dataclass(frozen=True)
class Family:
    """What a learning curve runs: the items of each run, and 3x items afterwards."""

    name: str
    func: Callable
    run_items: list  # one list of items per run (the same object when runs repeat)
    big_items: object


def families_for(runs: int, quick: bool, names=None) -> list[Family]:
    """The suite's families (the same items every run) and the drift family."""
    scale = 0.25 if quick else 1.0
    bigger = {w.name: w for w in suite(scale=3 * scale)}
    out = []
    for w in suite(scale=scale):
        if not names or w.name in names:
            items = w.items()
            out.append(Family(w.name, w.func, [items] * runs, bigger[w.name].items()))
    if not names or "drift" in names:
        n = max(8, int(DRIFT_ITEMS * scale))
        cheap, dear = [DRIFT_CHEAP] * n, [DRIFT_DEAR] * n
        out.append(Family("drift", drifting, [cheap] + [dear] * (runs - 1), [DRIFT_DEAR] * (3 * n)))
    return out


def learning_curves(runs: int = 8, quick: bool = False, families=None, out=print, seeds: int | None = None) -> dict:
    """Print ours/oracle per run for each family; return {"curves": ..., "unseen": ...}.

    The oracle's configuration is the fastest of the grid (:class:`.local.Oracle`) for the
    run's items; each of our runs is divided by a timing of that configuration taken right
    after it (:func:`paired`). Each family's curve is repeated ``seeds`` times on fresh
    training directories; a run index reads the median ratio of its repetitions, tagged
    with every repetition's plan source (s = sampled, m = model, x = model exploring).
    The stricter figure divides by the oracle's best time instead (the least of all its
    timings). The drift family changes its cost per item after run 1 (see :data:`DRIFT_DEAR`).
    """
    seeds = seeds or (1 if quick else SEEDS)
    repeat = 1 if quick else 2
    oracle = Oracle(machine.cpu_count())
    curves, unseen = {}, {}
    try:
        out(f"calibration: {calibrate():.2f} s; {seeds} repetition(s) of each curve")
        for fam in families_for(runs, quick, families):
            curves[fam.name], unseen[fam.name] = _curve(fam, oracle, runs, seeds, repeat, out)
    finally:
        oracle.close()
    _report(curves, unseen, runs, seeds, out)
    return {"curves": curves, "unseen": unseen}


def _curve(fam: Family, oracle: Oracle, runs: int, seeds: int, repeat: int, out) -> tuple[dict, tuple]:
    """One family's curve over ``seeds`` fresh training directories, and its 3x-items run."""
    searched = {}  # id(items) -> (oracle seconds, config): one search per distinct input
    for items in fam.run_items + [fam.big_items]:
        if id(items) not in searched:
            searched[id(items)] = oracle.search(fam.func, items, repeat)[:2]
    _warm_workers(fam.func, fam.run_items[-1])
    ours, theirs, tags, big_ours, big_theirs, big_tags = [], [], [], [], [], []
    for seed in range(seeds):
        seed_ours, seed_theirs, seed_tags = [], [], []
        with tempfile.TemporaryDirectory(prefix="amorsize-learn-") as d:
            for items in fam.run_items[:runs]:
                o = run_map(fam.func, items, training_dir=d)
                seed_ours.append(o.wall_seconds)
                seed_theirs.append(paired(oracle, searched[id(items)][1], fam.func, items))
                seed_tags.append(_tag(o.plan))
            o = run_map(fam.func, fam.big_items, training_dir=d)
        ours.append(seed_ours)
        theirs.append(seed_theirs)
        tags.append(seed_tags)
        big_ours.append(o.wall_seconds)
        big_theirs.append(paired(oracle, searched[id(fam.big_items)][1], fam.func, fam.big_items))
        big_tags.append(_tag(o.plan))
        oracle_t, oracle_cfg = searched[id(fam.run_items[-1])]
        out(f"  {fam.name} #{seed + 1}: oracle {oracle_t:.3f}s ({oracle_cfg}); ours/oracle "
            + " ".join(f"{a / b:.2f}{t}" for a, b, t in zip(seed_ours, seed_theirs, seed_tags))
            + f"; 3x items {big_ours[-1] / big_theirs[-1]:.2f}{big_tags[-1]}")
    # Strict: over the least of all the oracle's timings of the same input.
    best = [min([searched[id(items)][0]] + [theirs[s][i] for s in range(seeds)])
            for i, items in enumerate(fam.run_items[:runs])]
    big_best = min([searched[id(fam.big_items)][0]] + big_theirs)
    curve = {
        "ratios": [statistics.median(ours[s][i] / theirs[s][i] for s in range(seeds)) for i in range(runs)],
        "strict": [statistics.median(ours[s][i] / best[i] for s in range(seeds)) for i in range(runs)],
        "tags": ["".join(tags[s][i] for s in range(seeds)) for i in range(runs)],
        "oracle_config": searched[id(fam.run_items[-1])][1],
    }
    return curve, (statistics.median(a / b for a, b in zip(big_ours, big_theirs)), "".join(big_tags),
                   len(fam.big_items), statistics.median(a / big_best for a in big_ours))


def _report(curves: dict, unseen: dict, runs: int, seeds: int, out) -> None:
    headers = (["family"] + [f"run {i + 1}" for i in range(runs)]
               + ["warm gm (3+)", "strict warm gm", "3x items"])
    rows = []
    for name, c in curves.items():
        u = unseen[name]
        rows.append([name] + [f"{r:.2f}{t}" for r, t in zip(c["ratios"], c["tags"])]
                    + [f"{geometric_mean(c['ratios'][2:]):.3f}", f"{geometric_mean(c['strict'][2:]):.3f}",
                       f"{u[0]:.2f}{u[1]} (n={u[2]})"])
    out(format_table(headers, rows))
    out(f"\nours/oracle per run: over the oracle's configuration timed right after it, the median of {seeds} "
        "repetitions; s = sampled plan, m = model plan, x = model exploring a neighbour, one letter per "
        "repetition. strict: over the oracle's best time (the least of all its timings). drift: cheap "
        "items in run 1, dear ones after (the same function).")
    for key, label in (("ratios", "paired"), ("strict", "strict")):
        per_family = {name: geometric_mean(c[key][2:]) for name, c in curves.items()}
        worst = max(per_family, key=per_family.get)
        warm = geometric_mean([r for c in curves.values() for r in c[key][2:]])
        cold = geometric_mean([c[key][0] for c in curves.values()])
        big = geometric_mean([u[0 if key == "ratios" else 3] for u in unseen.values()])
        out(f"{label}: warm (runs 3+) geometric mean {warm:.3f}, worst family {worst} {per_family[worst]:.3f}; "
            f"cold (run 1) {cold:.3f}; 3x items {big:.3f}")


def _synthetic_records(learner, n: int, keep: Target, workloads: int = 100) -> None:
    """``n`` records over ``workloads`` other workloads and 10 other fingerprints."""
    rng = random.Random(0)
    fields = keep.fingerprint.as_dict()
    other_fps = [(f"{i:016x}", dict(fields, cores=2 + i)) for i in range(1, 11)]
    for i in range(n):
        fp, fp_fields = other_fps[i % 10]
        learner.record(fingerprint=fp, fingerprint_fields=fp_fields, workload=f"{i % workloads:016x}",
                       function=f"bench.synthetic_{i % workloads}", features={"n_items": rng.randint(10, 10**5)},
                       engine="processes", n_workers=2, chunksize=rng.randint(1, 500), source="sample",
                       wall_seconds=rng.uniform(0.01, 5), compute_seconds=rng.uniform(0.01, 9))


def _own_records(learner, n: int, keep: Target) -> None:
    """``n`` earlier runs of ``keep``'s own workload (a script run daily for years, or a
    loop of calls): every one of them is a neighbour the model scores."""
    rng = random.Random(1)
    now = time.time()
    for i in range(n):
        n_items = rng.choice([500, 1000, 2000, 4000])
        compute = n_items * rng.uniform(0.9e-3, 1.1e-3)
        learner.record(fingerprint=keep.fingerprint.id, fingerprint_fields=keep.fingerprint.as_dict(),
                       workload=keep.workload, function="bench.cpu_1ms",
                       features={"n_items": n_items, "item_seconds": compute / n_items, "bytes_in": 30.0,
                                 "bytes_out": 30.0, "cpu_ratio": 1.0},
                       engine="processes", n_workers=2, chunksize=rng.choice([25, 50, 100]),
                       source=rng.choice(["model", "explore"]), wall_seconds=compute / rng.uniform(1.7, 1.9),
                       compute_seconds=compute, time=now - n + i)


def planning_overhead(out=print, calls: int = 50) -> dict:
    """Median plan() milliseconds: cold (sampling), warm (model), warm with 1,000 runs of
    the workload itself, and with 10k / 100k records of others, or 20k one-run workloads;
    what a new process pays to index the directory, the first on this host and the next."""
    items = list(range(2000))
    figures = {}
    with tempfile.TemporaryDirectory(prefix="amorsize-overhead-") as d:
        cold = []
        for _ in range(calls // 5):
            t0 = time.perf_counter()
            make_plan(cpu_1ms, items, training_dir=d)
            cold.append(time.perf_counter() - t0)
        figures["cold (sampling)"] = (statistics.median(cold), None, None)
        run_map(cpu_1ms, items, training_dir=d)
        run_map(cpu_1ms, items, training_dir=d)
        figures["warm (model), 2 records"] = (_median_plan(items, d, calls), None, None)
    with tempfile.TemporaryDirectory(prefix="amorsize-overhead-") as d:
        _own_records(get_learner(d), 1000, Target.local(cpu_1ms, d))
        figures["warm (model), 1,000 runs of this workload"] = (_median_plan(items, d, calls), None, None)
    # Others' records: 100 workloads with many runs each, or one run each (a loop whose
    # partial changed every call: each call a workload of its own).
    for n_records, workloads in ((10_000, 100), (100_000, 100), (20_000, 20_000)):
        with tempfile.TemporaryDirectory(prefix="amorsize-overhead-") as d:
            learner = get_learner(d)
            _synthetic_records(learner, n_records, Target.local(cpu_1ms, d), workloads)
            run_map(cpu_1ms, items, training_dir=d)
            run_map(cpu_1ms, items, training_dir=d)
            loads = []
            for _ in range(2):  # the first new process on this host, then the next one
                t0 = time.perf_counter()
                Learner(d).refresh()
                loads.append(time.perf_counter() - t0)
            label = f"{n_records:,} records" if workloads < n_records else f"{n_records:,} one-run workloads"
            figures[f"warm (model), {label}"] = (_median_plan(items, d, calls), *loads)
            snapshot.path_for(d).unlink(missing_ok=True)  # the host's cache keeps nothing of a temp dir
    rows = [[name, f"{ms * 1e3:.2f}", *(f"{s:.3f}" if s is not None else "-" for s in loads)]
            for name, (ms, *loads) in figures.items()]
    out(format_table(["plan()", "median ms", "first load s", "next load s"], rows))
    out(_calls_in_a_loop())
    return figures


def _calls_in_a_loop(calls: int = 1000, last: int = 20) -> str:
    """A loop of ``map`` calls of a small job (500 x ``tiny``: ~0.5 ms serially), each
    recording its run: the median of the first and of the last calls, beside serial."""
    items = list(range(500))
    times = []
    with tempfile.TemporaryDirectory(prefix="amorsize-overhead-") as d:
        for _ in range(calls):
            t0 = time.perf_counter()
            run_map(tiny, items, training_dir=d)
            times.append(time.perf_counter() - t0)
    serial = []
    for _ in range(last):
        t0 = time.perf_counter()
        [tiny(x) for x in items]
        serial.append(time.perf_counter() - t0)
    first = statistics.median(times[2:2 + last])
    return (f"map() of 500 x tiny in a loop of {calls:,} calls: calls 3-{2 + last} {first * 1e3:.2f} ms, "
            f"the last {last} {statistics.median(times[-last:]) * 1e3:.2f} ms (serial {statistics.median(serial) * 1e3:.2f} ms)")


def _median_plan(items, training_dir, calls: int) -> float:
    times = []
    for _ in range(calls):
        t0 = time.perf_counter()
        p = make_plan(cpu_1ms, items, training_dir=training_dir)
        times.append(time.perf_counter() - t0)
    if p.source != "model":
        raise AssertionError(f"expected a model plan, got {p.source}")
    return statistics.median(times)


"""``bench --stream``: imap over long inputs — time and peak memory vs Pool.imap and serial map.

Each tool runs in its own fresh interpreter (as a user's script would), consuming the
results as they come without keeping them; a sampler thread there adds up the resident
memory of the whole process tree (the caller and its workers) every few milliseconds.
Printed per family: each tool's median seconds over the repetitions and its peak memory
above the starting point, then ours / the best of the others.

Families:
- ``lines``: 3,000,000 generated text lines parsed by a ~1 us function;
- ``ms-items``: 20,000 items of ~1 ms of pure Python.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
import textwrap

from .timing import format_table

FAMILIES = {"lines": 3_000_000, "ms-items": 20_000}
TOOLS = ("ours", "serial", "pool-1024", "pool-8192")

_CHILD = textwrap.dedent('''
    import json, os, sys, threading, time
    import psutil

    FAMILY, N, TOOL = sys.argv[1], int(sys.argv[2]), sys.argv[3]

    def parse(line):
        key, name, value = line.rstrip().split(",")
        return int(key) + int(value) + len(name)

    def busy_ms(x):
        t0 = time.perf_counter()
        while time.perf_counter() - t0 < 1e-3:
            pass
        return x

    def source():
        if FAMILY == "lines":
            return (f"{i},name{i % 97},{i * 7 % 1000}\\n" for i in range(N))
        return iter(range(N))

    func = parse if FAMILY == "lines" else busy_ms

    def tree_rss():
        me = psutil.Process()
        total = 0
        for p in [me] + me.children(recursive=True):
            try:
                total += p.memory_info().rss
            except psutil.Error:
                pass
        return total

    if __name__ == "__main__":
        import amorsize_dask as ad
        from multiprocessing import get_context

        ad.imap  # imports are not timed (the package loads its parts on first use), as in bench --fresh

        base = tree_rss()
        peak = [base]
        stop = threading.Event()

        def sample():
            while not stop.wait(0.005):
                peak[0] = max(peak[0], tree_rss())

        threading.Thread(target=sample, daemon=True).start()
        t0 = time.perf_counter()
        count = 0
        if TOOL == "ours":
            for _ in ad.imap(func, source()):
                count += 1
        elif TOOL == "serial":
            for _ in map(func, source()):
                count += 1
        else:
            with get_context("fork").Pool(os.cpu_count()) as pool:
                for _ in pool.imap(func, source(), chunksize=int(TOOL.split("-")[1])):
                    count += 1
        seconds = time.perf_counter() - t0
        stop.set()
        peak[0] = max(peak[0], tree_rss())
        assert count == N, (count, N)
        print(json.dumps({"seconds": seconds, "peak_mib": (peak[0] - base) / 2**20}))
''')


def run(*, quick: bool = False, families=None, repeat: int = 3, out=print) -> dict:
    """Time every tool on every family in fresh interpreters; print and return the table."""
    chosen = families or list(FAMILIES)
    scale = 0.1 if quick else 1.0
    figures: dict = {}
    with tempfile.TemporaryDirectory() as tmp:
        script = os.path.join(tmp, "stream_child.py")
        with open(script, "w") as fh:
            fh.write(_CHILD)
        env = {**os.environ, "DASK_AMORSIZE__TRAINING_DIR": os.path.join(tmp, "training")}
        for family in chosen:
            n = max(1, int(FAMILIES[family] * scale))
            for tool in TOOLS:
                runs = [_child(script, family, n, tool, env) for _ in range(1 if quick else repeat)]
                figures[(family, tool)] = (statistics.median(r["seconds"] for r in runs),
                                           max(r["peak_mib"] for r in runs))
    rows = []
    for family in chosen:
        best_other = min(figures[(family, t)][0] for t in TOOLS if t != "ours")
        ours, ours_mib = figures[(family, "ours")]
        cells = [f"{figures[(family, t)][0]:.2f} s / {figures[(family, t)][1]:.0f} MiB" for t in TOOLS]
        rows.append([family, *cells, f"{ours / best_other:.3f}"])
    out(format_table(["family", *TOOLS, "ours / best other"], rows))
    out("seconds: median of fresh-interpreter runs; MiB: peak resident memory of the process "
        "tree above its start (workers included)")
    return figures


def _child(script: str, family: str, n: int, tool: str, env: dict) -> dict:
    done = subprocess.run([sys.executable, script, family, str(n), tool], capture_output=True, text=True,
                          env=env, timeout=1800)
    if done.returncode != 0:
        raise RuntimeError(f"bench --stream {family}/{tool} failed:\n{done.stderr[-2000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])

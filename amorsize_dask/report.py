"""What ``amorsize-dask stats`` prints about a training directory: tables of its records
per machine and per workload, and how well their run times were predicted.

>>> describe_fields({"kind": "local", "cores": 2}), format_age(600)
('local, 2 cores', '10 min ago')
"""

from __future__ import annotations

import collections
import math
import time

from .planning.plan import format_seconds

__all__ = ["format_age", "table", "describe_fields", "fingerprint_table", "workload_table",
           "prediction_accuracy", "accuracy_table"]


def format_age(seconds: float) -> str:
    """How long ago, roughly.

    >>> format_age(5), format_age(600), format_age(7200), format_age(3 * 86400)
    ('5 s ago', '10 min ago', '2.0 h ago', '3.0 days ago')
    """
    seconds = max(seconds, 0)
    if seconds < 60:
        return f"{seconds:.0f} s ago"
    if seconds < 3600:
        return f"{seconds / 60:.0f} min ago"
    if seconds < 86400:
        return f"{seconds / 3600:.1f} h ago"
    return f"{seconds / 86400:.1f} days ago"


def table(headers: list[str], rows: list[list[str]], right: set[int] = frozenset()) -> str:
    """Columns padded to fit; ``right``: indexes of right-aligned (numeric) columns.

    >>> print(table(["name", "n"], [["a", "10"], ["bcd", "2"]], right={1}))
    name   n
    a     10
    bcd    2
    """
    widths = [max([len(h)] + [len(r[i]) for r in rows]) for i, h in enumerate(headers)]

    def line(cells):
        return "  ".join(c.rjust(w) if i in right else c.ljust(w)
                         for i, (c, w) in enumerate(zip(cells, widths))).rstrip()

    return "\n".join([line(headers)] + [line(r) for r in rows])


def describe_fields(fields: dict) -> str:
    """A machine shape in a few words: the fields people recognise first.

    >>> describe_fields({"kind": "local", "cores": 2, "memory_gib": 8,
    ...                   "cpu_model": "Xeon", "start_method": "forkserver", "python": "3.11"})
    'local, 2 cores, 8 GiB, Xeon, forkserver, Python 3.11'
    """
    known = [("kind", "{}"), ("cores", "{} cores"), ("memory_gib", "{} GiB"),
             ("cpu_model", "{}"), ("start_method", "{}"), ("python", "Python {}")]
    parts = [fmt.format(fields[key]) for key, fmt in known if key in fields]
    shown = {key for key, _ in known} | {"platform"}
    parts += [f"{k}={v}" for k, v in sorted(fields.items()) if k not in shown]
    text = ", ".join(parts) or "-"
    return text if len(text) <= 80 else text[:77] + "..."


def fingerprint_table(records: list[dict]) -> str:
    counts = collections.Counter(r["fingerprint"] for r in records)
    latest = {r["fingerprint"]: r for r in records}   # records are oldest first
    rows = [[fp, str(n), describe_fields(latest[fp]["fingerprint_fields"])]
            for fp, n in counts.most_common()]
    return "by machine fingerprint:\n" + table(["fingerprint", "records", "machine shape"],
                                                rows, right={1})


def workload_table(records: list[dict]) -> str:
    groups: dict[tuple, list] = collections.defaultdict(list)
    for rec in records:
        groups[(rec["fingerprint"], rec["workload"])].append(rec)
    now = time.time()
    rows = []
    for (fp, workload), recs in sorted(groups.items(), key=lambda kv: (-len(kv[1]), kv[0])):
        last = recs[-1]
        plan = last["plan"]
        shape = "serial" if plan["engine"] == "serial" else \
            f"{plan['engine']} {plan['n_workers']}x{plan['chunksize']}"
        rows.append([last["function"], workload, fp[:8], str(len(recs)),
                     f"{last['features']['n_items']:,}", shape,
                     format_seconds(last["wall_seconds"]), format_age(now - last["time"])])
    return "by workload (function):\n" + table(
        ["function", "workload", "fingerpr.", "records", "items", "last plan", "last wall",
         "last run"], rows, right={3, 4, 6})


def prediction_accuracy(records) -> dict:
    """Per plan source: ``(runs, median, p90)`` of |predicted - measured| / measured.

    >>> prediction_accuracy([
    ...     {"wall_seconds": 1.0, "predicted_seconds": 1.5, "plan": {"source": "sample"}},
    ...     {"wall_seconds": 2.0, "predicted_seconds": 2.0, "plan": {"source": "sample"}},
    ...     {"wall_seconds": 2.0, "predicted_seconds": None, "plan": {"source": "model"}}])
    {'sample': (2, 0.25, 0.45)}
    """
    import numpy as np

    from .plot import prediction_pairs

    errors: dict[str, list] = collections.defaultdict(list)
    for measured, predicted, source in prediction_pairs(records):
        errors[source].append(abs(predicted - measured) / measured)
    return {source: (len(errs), float(np.median(errs)), round(float(np.percentile(errs, 90)), 12))
            for source, errs in sorted(errors.items())}


def accuracy_table(records: list[dict]) -> str:
    accuracy = prediction_accuracy(records)
    title = "prediction error |predicted - measured| / measured, by plan source:"
    if not accuracy:
        return title + "\n  no record has a predicted time yet"
    rows = [[source, str(n), f"{median:.0%}", f"{p90:.0%}" if math.isfinite(p90) else "-"]
            for source, (n, median, p90) in accuracy.items()]
    return title + "\n" + table(["source", "runs", "median", "p90"], rows, right={1, 2, 3})

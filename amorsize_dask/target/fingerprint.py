"""Stable ids for "where this runs": this machine, or the shape of a Dask cluster.

This module is the only place fingerprints are computed. A fingerprint is a
sorted tuple of simple ``(key, value)`` fields plus a 16-hex-character id
(sha256 of the fields' canonical JSON). Ids are equal across processes and
restarts of the same shape; worker addresses, ports and names never enter them.

>>> fp = local_fingerprint("spawn")
>>> fp.kind, len(fp.id), fp.as_dict()["start_method"]
('local', 16, 'spawn')
>>> fp == local_fingerprint("spawn") != local_fingerprint("fork")
True
>>> workers = {"tcp://10.0.0.1:4001": {"nthreads": 2, "memory_limit": 2**32, "host": "10.0.0.1"}}
>>> cfp = cluster_fingerprint(workers)
>>> cfp.as_dict()["total_threads"], cfp.as_dict()["memory_per_worker_gib"]
(2, 4.0)
>>> similarity(fp.as_dict(), fp.as_dict()), similarity(fp.as_dict(), cfp.as_dict())
(1.0, 0.0)
"""

from __future__ import annotations

import functools
import hashlib
import json
import multiprocessing
import sys
from dataclasses import dataclass
from typing import Any, Mapping

from . import machine

__all__ = [
    "Fingerprint",
    "local_fingerprint",
    "cluster_fingerprint",
    "workers_from_scheduler",
    "similarity",
    "CPU_MODELS_METADATA",
]

_GIB = 2**30
_PYTHON = f"{sys.version_info[0]}.{sys.version_info[1]}"

# Relative importance of each field in ``similarity`` (fields not listed weigh 1.0).
# Parallel capacity (cores / total threads) decides the best plan most, then the
# CPU model and the number of workers; versions matter least.
SIMILARITY_WEIGHTS: dict[str, float] = {
    # local
    "cores": 4.0,
    "cpu_model": 2.0,
    "memory_gib": 1.0,
    "start_method": 1.0,
    "platform": 1.0,
    "python": 0.5,
    # cluster
    "total_threads": 4.0,
    "n_workers": 2.0,
    "cpu_models": 2.0,
    "threads_per_worker": 1.0,
    "memory_per_worker_gib": 1.0,
    "n_hosts": 1.0,
    "dask": 0.5,
}


@dataclass(frozen=True)
class Fingerprint:
    """An id plus the fields it was computed from (see module docstring)."""

    id: str
    fields: tuple
    kind: str

    def as_dict(self) -> dict:
        """The fields as a plain dict (JSON-ready)."""
        return dict(self.fields)

    @classmethod
    def from_fields(cls, fields: Mapping[str, Any]) -> "Fingerprint":
        """Build a fingerprint from its fields, e.g. as read back from a record.

        >>> fp = local_fingerprint("spawn")
        >>> Fingerprint.from_fields(fp.as_dict()) == fp
        True
        """
        for key, value in fields.items():
            if not isinstance(key, str) or not isinstance(value, (str, int, float, bool)):
                raise TypeError(
                    f"fingerprint field {key!r}={value!r} must map a str to str/int/float/bool"
                )
        items = tuple(sorted(fields.items()))
        canonical = json.dumps(dict(items), sort_keys=True, separators=(",", ":"))
        digest = hashlib.sha256(canonical.encode()).hexdigest()[:16]
        return cls(id=digest, fields=items, kind=str(fields.get("kind", "unknown")))


def _resolve_start_method(start_method: str | None) -> str:
    if start_method:
        return start_method
    # ``get_start_method(allow_none=False)`` would freeze the global default as a
    # side effect; the first of ``get_all_start_methods()`` is the platform default.
    return (
        multiprocessing.get_start_method(allow_none=True)
        or multiprocessing.get_all_start_methods()[0]
    )


def local_fingerprint(start_method: str | None = None) -> Fingerprint:
    """Fingerprint of this machine for a given multiprocessing start method.

    Fields: ``kind``, ``cores`` (affinity and cgroup aware), ``memory_gib`` (total
    memory rounded to 1 GiB), ``cpu_model``, ``start_method`` (given, else the
    process default), ``python`` (minor version) and ``platform``. Cached per
    start method, so repeated calls are cheap.
    """
    return _local_fingerprint(_resolve_start_method(start_method))


@functools.lru_cache(maxsize=8)
def _local_fingerprint(start_method: str) -> Fingerprint:
    return Fingerprint.from_fields(
        {
            "kind": "local",
            "cores": int(machine.cpu_count()),
            "memory_gib": int(round(machine.total_memory() / _GIB)),
            "cpu_model": machine.cpu_model() or "unknown",
            "start_method": start_method,
            "python": _PYTHON,
            "platform": sys.platform,
        }
    )


# Where a cluster's CPU models are kept: the scheduler's metadata (``Client.set_metadata``)
# under this key, by host, e.g. ``{"10.0.0.1": "Intel(R) Xeon(R) ..."}``. Workers do not
# report their CPU; a client asks each new host once (``cluster.cpu_models``).
CPU_MODELS_METADATA = "amorsize-cpu-models"


def _dask_minor() -> str:
    import dask

    return ".".join(str(dask.__version__).split(".")[:2])


def cluster_fingerprint(workers: Mapping[str, Mapping[str, Any]]) -> Fingerprint:
    """Fingerprint of a cluster's shape from ``scheduler_info()["workers"]``.

    Only the shape counts: ``n_workers``, ``n_hosts``, ``threads_per_worker``
    (sorted distinct values, e.g. ``"1,2"``), ``total_threads``,
    ``memory_per_worker_gib`` (smallest limit, rounded to 0.5 GiB; 0 when
    unlimited), ``cpu_models`` (sorted distinct, ``";"``-joined, of the worker
    entries carrying a ``"cpu_model"``, directly or in their ``"metrics"``:
    a worker not asked yet does not change them; ``"unknown"`` if none does),
    plus this process's ``dask`` and ``python`` minor versions.
    """
    threads: list[int] = []
    memories: list[float] = []
    hosts: set[str] = set()
    models: set[str] = set()
    for info in workers.values():
        threads.append(int(info.get("nthreads") or 0))
        memories.append(float(info.get("memory_limit") or 0))
        hosts.add(str(info.get("host") or ""))
        metrics = info.get("metrics") or {}
        model = info.get("cpu_model") or (
            metrics.get("cpu_model") if isinstance(metrics, Mapping) else None
        )
        if model and model != "unknown":
            models.add(str(model))
    min_memory = min(memories) if memories else 0.0
    return Fingerprint.from_fields(
        {
            "kind": "cluster",
            "n_workers": len(threads),
            "n_hosts": len(hosts),
            "threads_per_worker": ",".join(str(t) for t in sorted(set(threads))),
            "total_threads": sum(threads),
            "memory_per_worker_gib": round(min_memory / _GIB * 2) / 2,
            "cpu_models": ";".join(sorted(models)) if models else "unknown",
            "dask": _dask_minor(),
            "python": _PYTHON,
        }
    )


def workers_from_scheduler(scheduler) -> dict:
    """The ``scheduler_info()["workers"]`` shape, built on the scheduler itself.

    For use inside a scheduler plugin: ``cluster_fingerprint(workers_from_scheduler(s))``
    equals the client's fingerprint (``cluster.client.cluster_workers``), CPU models
    included: each entry's ``cpu_model`` is the one clients left in the scheduler's
    metadata for its host (:data:`CPU_MODELS_METADATA`).
    """
    told = scheduler.task_metadata.get(CPU_MODELS_METADATA)
    out = {}
    for address, ws in list(scheduler.workers.items()):
        entry = dict(getattr(ws, "extra", None) or {})  # identity() merges extra too
        entry.update(
            nthreads=ws.nthreads,
            memory_limit=ws.memory_limit,
            host=ws.host,
            name=ws.name,
            metrics=dict(ws.metrics or {}),
        )
        if isinstance(told, dict) and told.get(ws.host):
            entry.setdefault("cpu_model", told[ws.host])
        out[address] = entry
    return out


def _field_similarity(a: Any, b: Any) -> float:
    if isinstance(a, bool) or isinstance(b, bool) or not (
        isinstance(a, (int, float)) and isinstance(b, (int, float))
    ):
        return 1.0 if a == b else 0.0
    if a == b:
        return 1.0
    if a <= 0 or b <= 0:
        return 0.0
    # exp(-|ln(a/b)|), computed as min/max (symmetric, no overflow): 2 vs 4 -> 0.5.
    return min(a, b) / max(a, b)


def similarity(a: Mapping[str, Any] | Fingerprint, b: Mapping[str, Any] | Fingerprint) -> float:
    """How alike two fingerprints' fields are, in [0, 1].

    0.0 when ``kind`` differs; otherwise the weighted mean over the union of the
    other fields (weights in ``SIMILARITY_WEIGHTS``, 1.0 for unlisted fields) of a
    per-field score: numbers score ``exp(-|ln(a/b)|)`` (the min/max ratio, so a
    field twice as large scores 0.5), everything else scores 1 if equal else 0,
    and a field missing on one side scores 0. Symmetric; 1.0 for equal fields.

    >>> similarity({"kind": "local", "cores": 2}, {"kind": "local", "cores": 4})
    0.5
    """
    a = a.as_dict() if isinstance(a, Fingerprint) else a
    b = b.as_dict() if isinstance(b, Fingerprint) else b
    if a.get("kind") != b.get("kind"):
        return 0.0
    total = score = 0.0
    for key in sorted((set(a) | set(b)) - {"kind"}):
        weight = SIMILARITY_WEIGHTS.get(key, 1.0)
        total += weight
        if key in a and key in b:
            score += weight * _field_similarity(a[key], b[key])
    if total == 0.0:
        return 1.0
    return min(1.0, max(0.0, score / total))

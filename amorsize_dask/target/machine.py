"""Facts about this machine that bound a plan: usable cores and available memory.

One ``cpu_count`` for the whole package, as loky does: the smallest of the
logical CPUs, the process's CPU affinity and the cgroup CPU quota.

>>> cpu_count() >= 1
True
>>> available_memory() > 0
True
"""

from __future__ import annotations

import math
import os
import pathlib
import threading

__all__ = ["cpu_count", "cgroup_cpu_quota", "available_memory", "total_memory", "cpu_model",
           "native_thread_ids", "TASKS_DIR"]

_CGROUP_V2_CPU_MAX = pathlib.Path("/sys/fs/cgroup/cpu.max")
_CGROUP_V1_QUOTA = pathlib.Path("/sys/fs/cgroup/cpu/cpu.cfs_quota_us")
_CGROUP_V1_PERIOD = pathlib.Path("/sys/fs/cgroup/cpu/cpu.cfs_period_us")


def cpu_count() -> int:
    """Cores this process may use.

    - ``os.cpu_count()``: logical CPUs of the machine;
    - ``os.sched_getaffinity(0)``: CPUs this process is pinned to (taskset, cpusets);
    - the cgroup CPU quota (containers, ``docker --cpus``), rounded up.
    """
    counts = [os.cpu_count() or 1]
    if hasattr(os, "sched_getaffinity"):
        counts.append(len(os.sched_getaffinity(0)))
    quota = cgroup_cpu_quota()
    if quota is not None:
        counts.append(max(1, math.ceil(quota)))
    return max(1, min(counts))


def cgroup_cpu_quota() -> float | None:
    """CPUs allowed by the cgroup (v2 ``cpu.max`` or v1 ``cfs_quota_us``), None if unlimited."""
    try:
        if _CGROUP_V2_CPU_MAX.exists():
            quota, period = _CGROUP_V2_CPU_MAX.read_text().split()[:2]
            if quota == "max":
                return None
            return int(quota) / int(period)
        if _CGROUP_V1_QUOTA.exists() and _CGROUP_V1_PERIOD.exists():
            quota = int(_CGROUP_V1_QUOTA.read_text())
            period = int(_CGROUP_V1_PERIOD.read_text())
            if quota > 0 and period > 0:
                return quota / period
    except (OSError, ValueError):
        return None
    return None


def available_memory() -> int:
    """Bytes of memory available to new allocations (psutil's ``available``)."""
    import psutil  # loaded when asked (~9 ms): not by a call's head, nor by every worker

    return int(psutil.virtual_memory().available)


def total_memory() -> int:
    """Bytes of physical memory."""
    import psutil

    return int(psutil.virtual_memory().total)


def cpu_model() -> str:
    """The CPU's model name, or the platform's processor string."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    import platform

    return platform.processor() or platform.machine()


# This process's threads, one folder each (Linux).
TASKS_DIR = "/proc/self/task"


def native_thread_ids() -> list[str]:
    """Ids of this process's threads that ``threading`` does not know — a BLAS's, OpenMP's,
    torch's ([] without ``/proc``; nothing read beyond the listing when there are none).

    >>> isinstance(native_thread_ids(), list)
    True
    """
    try:
        tids = os.listdir(TASKS_DIR)
    except OSError:
        return []
    if len(tids) <= threading.active_count():
        return []
    known = {str(t.native_id) for t in threading.enumerate()}
    return [tid for tid in tids if tid not in known]

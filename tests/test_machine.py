"""``target.machine``: usable cores (logical CPUs, affinity, cgroup quota) and memory.

The cgroup files are injected (tmp files in place of /sys/fs/cgroup): the test must not
depend on the container it runs in.
"""

import os

import pytest

from amorsize_dask.target import machine


@pytest.fixture
def cgroup(tmp_path, monkeypatch):
    """Point the cgroup v2 and v1 files at tmp files; returns a writer for them."""
    paths = {"v2": tmp_path / "cpu.max", "quota": tmp_path / "cfs_quota_us", "period": tmp_path / "cfs_period_us"}
    monkeypatch.setattr(machine, "_CGROUP_V2_CPU_MAX", paths["v2"])
    monkeypatch.setattr(machine, "_CGROUP_V1_QUOTA", paths["quota"])
    monkeypatch.setattr(machine, "_CGROUP_V1_PERIOD", paths["period"])

    def write(**texts):
        for name, text in texts.items():
            paths[name].write_text(text)

    return write


def unlimited_count():
    counts = [os.cpu_count() or 1]
    if hasattr(os, "sched_getaffinity"):
        counts.append(len(os.sched_getaffinity(0)))
    return min(counts)


@pytest.mark.parametrize("files,quota", [
    ({}, None),                                                       # no cgroup files
    ({"v2": "max 100000\n"}, None),                                   # v2, unlimited
    ({"v2": "150000 100000\n"}, 1.5),                                 # v2, docker --cpus 1.5
    ({"quota": "-1\n", "period": "100000\n"}, None),                  # v1, unlimited
    ({"quota": "50000\n", "period": "100000\n"}, 0.5),                # v1, half a CPU
    ({"quota": "50000\n"}, None),                                     # v1 without its period
    ({"v2": "garbage\n"}, None),                                      # unreadable: no quota
    ({"v2": "200000 100000", "quota": "50000", "period": "100000"}, 2.0),  # v2 wins
])
def test_cgroup_quota(cgroup, files, quota):
    cgroup(**files)
    assert machine.cgroup_cpu_quota() == quota


def test_cpu_count_is_the_smallest_bound_rounded_up(cgroup):
    assert machine.cpu_count() == unlimited_count()
    cgroup(v2="50000 100000")                   # half a CPU still gets one core
    assert machine.cpu_count() == 1
    cgroup(v2=f"{unlimited_count() * 100000 + 1} 100000")   # a quota just above the CPUs: the CPUs bound it
    assert machine.cpu_count() == unlimited_count()


def test_memory_and_cpu_model_are_facts_of_this_machine():
    import psutil

    total, available = machine.total_memory(), machine.available_memory()
    assert isinstance(total, int) and isinstance(available, int)
    assert 0 < available <= total == psutil.virtual_memory().total
    assert isinstance(machine.cpu_model(), str) and machine.cpu_model().strip()

"""Fingerprints: stable across processes, blind to addresses, sensitive to shape."""

from __future__ import annotations

import importlib.util
import json
import math
import multiprocessing
import os
import pathlib
import pickle
import subprocess
import sys

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

ROOT = pathlib.Path(__file__).resolve().parents[1]
if importlib.util.find_spec("amorsize_dask") is None:  # not installed: test this checkout
    sys.path.insert(0, str(ROOT))

from amorsize_dask.target import fingerprint as fpmod
from amorsize_dask.target import machine
from amorsize_dask.target.fingerprint import (
    Fingerprint,
    cluster_fingerprint,
    local_fingerprint,
    similarity,
    workers_from_scheduler,
)

GIB = 2**30
START_METHODS = multiprocessing.get_all_start_methods()


def _run(script: str, hashseed: str) -> str:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    env["PYTHONHASHSEED"] = hashseed
    proc = subprocess.run(
        [sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def _workers(n=2, threads=1, memory=4 * GIB, host="10.0.0.1", port0=40000, **extra):
    return {
        f"tcp://{host}:{port0 + i}": {
            "nthreads": threads,
            "memory_limit": memory,
            "host": host,
            "name": f"worker-{port0 + i}",
            "id": f"worker-{port0 + i}",
            "last_seen": 1234.5 + i,
            **extra,
        }
        for i in range(n)
    }


@pytest.fixture
def fresh_local_cache():
    fpmod._local_fingerprint.cache_clear()
    yield
    fpmod._local_fingerprint.cache_clear()


# -- local --------------------------------------------------------------------


def test_local_fingerprint_fields_and_id_format():
    fp = local_fingerprint("spawn")
    fields = fp.as_dict()
    assert fp.kind == fields["kind"] == "local"
    assert set(fields) == {
        "kind", "cores", "memory_gib", "cpu_model", "start_method", "python", "platform",
    }
    assert fields["cores"] == machine.cpu_count()
    assert fields["start_method"] == "spawn"
    assert fields["python"] == f"{sys.version_info[0]}.{sys.version_info[1]}"
    assert fields["platform"] == sys.platform
    assert len(fp.id) == 16 and all(c in "0123456789abcdef" for c in fp.id)
    assert list(fp.fields) == sorted(fp.fields)


def test_local_fingerprint_stable_across_processes():
    script = (
        "import json, multiprocessing as mp\n"
        "from amorsize_dask.target.fingerprint import local_fingerprint\n"
        "out = {m: local_fingerprint(m).id for m in mp.get_all_start_methods()}\n"
        "out['default'] = local_fingerprint().id\n"
        "print(json.dumps(out))\n"
    )
    first = json.loads(_run(script, "1"))
    second = json.loads(_run(script, "2"))
    assert first == second
    for method in START_METHODS:
        assert first[method] == local_fingerprint(method).id


def test_local_fingerprint_repeated_calls_are_cached():
    assert local_fingerprint("spawn") is local_fingerprint("spawn")
    assert local_fingerprint() is local_fingerprint()
    default = multiprocessing.get_start_method(allow_none=True) or START_METHODS[0]
    assert local_fingerprint() == local_fingerprint(default)


def test_start_method_changes_id():
    ids = {local_fingerprint(m).id for m in ("spawn", "fork", "forkserver")}
    assert len(ids) == 3


def test_memory_rounded_and_cores_injected(monkeypatch, fresh_local_cache):
    monkeypatch.setattr(machine, "total_memory", lambda: 16 * GIB + 100 * 2**20)
    a = local_fingerprint("spawn")
    fpmod._local_fingerprint.cache_clear()
    monkeypatch.setattr(machine, "total_memory", lambda: 16 * GIB - 100 * 2**20)
    b = local_fingerprint("spawn")
    assert a.id == b.id and a.as_dict()["memory_gib"] == 16
    fpmod._local_fingerprint.cache_clear()
    monkeypatch.setattr(machine, "cpu_count", lambda: 64)
    c = local_fingerprint("spawn")
    assert c.as_dict()["cores"] == 64 and c.id != a.id


def test_fingerprint_roundtrips():
    fp = local_fingerprint("spawn")
    assert pickle.loads(pickle.dumps(fp)) == fp
    assert Fingerprint.from_fields(json.loads(json.dumps(fp.as_dict()))) == fp
    with pytest.raises(TypeError, match="must map"):
        Fingerprint.from_fields({"kind": "local", "cores": [1, 2]})


# -- cluster ------------------------------------------------------------------


def test_cluster_fingerprint_fields():
    fields = cluster_fingerprint(_workers(n=3, threads=2, memory=3.3 * GIB)).as_dict()
    assert fields["kind"] == "cluster"
    assert fields["n_workers"] == 3 and fields["n_hosts"] == 1
    assert fields["threads_per_worker"] == "2" and fields["total_threads"] == 6
    assert fields["memory_per_worker_gib"] == 3.5
    assert fields["cpu_models"] == "unknown"
    assert fields["dask"].count(".") == 1


def test_cluster_fingerprint_ignores_addresses_names_and_order():
    a = cluster_fingerprint(_workers(port0=40000))
    b = cluster_fingerprint(_workers(port0=51234, host="10.0.0.1"))
    reversed_ = dict(reversed(list(_workers(port0=61000).items())))
    c = cluster_fingerprint(reversed_)
    assert a.id == b.id == c.id


def test_cluster_fingerprint_changes_with_shape():
    base = cluster_fingerprint(_workers(n=2, threads=1)).id
    assert cluster_fingerprint(_workers(n=3, threads=1)).id != base
    assert cluster_fingerprint(_workers(n=2, threads=2)).id != base
    assert cluster_fingerprint(_workers(n=2, memory=8 * GIB)).id != base
    two_hosts = {**_workers(n=1, host="10.0.0.1"), **_workers(n=1, host="10.0.0.2")}
    assert cluster_fingerprint(two_hosts).as_dict()["n_hosts"] == 2
    assert cluster_fingerprint(two_hosts).id != base
    mixed = {**_workers(n=1, threads=2, port0=1), **_workers(n=1, threads=1, port0=2)}
    assert cluster_fingerprint(mixed).as_dict()["threads_per_worker"] == "1,2"


def test_cluster_fingerprint_accepts_cpu_model_and_missing_memory():
    with_model = cluster_fingerprint(_workers(cpu_model="Xeon")).as_dict()
    assert with_model["cpu_models"] == "Xeon"
    in_metrics = cluster_fingerprint(_workers(metrics={"cpu_model": "Xeon"})).as_dict()
    assert in_metrics["cpu_models"] == "Xeon"
    unlimited = cluster_fingerprint(_workers(memory=None)).as_dict()
    assert unlimited["memory_per_worker_gib"] == 0.0
    assert cluster_fingerprint({}).as_dict()["n_workers"] == 0


def test_real_local_cluster_client_and_scheduler_agree():
    distributed = pytest.importorskip("distributed")
    from tests.helpers.cluster import local_cluster

    with local_cluster() as cluster, distributed.Client(cluster) as client:
        client.wait_for_workers(2)
        workers = client.scheduler_info(n_workers=-1)["workers"]
        from_client = cluster_fingerprint(workers)
        from_scheduler = client.run_on_scheduler(
            lambda dask_scheduler: cluster_fingerprint(workers_from_scheduler(dask_scheduler)).id
        )
    assert from_client.id == from_scheduler
    fields = from_client.as_dict()
    assert fields["n_workers"] == 2 and fields["total_threads"] == 2
    assert fields["threads_per_worker"] == "1" and fields["n_hosts"] == 1


def test_a_cluster_fingerprint_carries_its_workers_cpu_model():
    """DESIGN: a cluster's fingerprint holds its CPU models, so two clusters of one shape on
    different hardware keep apart models; every cluster record said ``"unknown"`` (nothing
    told the scheduler a worker's CPU). The client asks each new host once and leaves the
    answer on the scheduler, where the plugin's fingerprint reads it too."""
    distributed = pytest.importorskip("distributed")
    from amorsize_dask.target.target import Target
    from tests.helpers.cluster import local_cluster

    with local_cluster() as cluster, distributed.Client(cluster) as client:
        client.wait_for_workers(2)
        here = Target.cluster(client, len).fingerprint
        on_scheduler = client.run_on_scheduler(
            lambda dask_scheduler: cluster_fingerprint(workers_from_scheduler(dask_scheduler)).id
        )
    assert here.as_dict()["cpu_models"] == (machine.cpu_model() or "unknown")
    assert here.as_dict()["cpu_models"] != "unknown"
    assert here.id == on_scheduler


def test_records_of_a_cluster_carry_its_cpu_model(tmp_path):
    """A run the scheduler plugin records and one the client records name the CPU."""
    distributed = pytest.importorskip("distributed")
    import amorsize_dask as ad
    from amorsize_dask import AmorsizePlugin, TrainingStore
    from tests.helpers.cluster import local_cluster
    from tests.helpers.funcs import square

    fixed = dict(engine="dask", n_workers=2, chunksize=4)
    with local_cluster() as cluster, distributed.Client(cluster) as client:
        out = ad.map(square, range(30), client=client, training_dir=tmp_path / "client", **fixed)
        client.register_plugin(AmorsizePlugin(training_dir=str(tmp_path / "plugin")))
        assert ad.map(square, range(30), client=client, training_dir=tmp_path / "plugin", **fixed) == out
    assert out == [i * i for i in range(30)]
    for where in ("client", "plugin"):
        (record,) = TrainingStore(tmp_path / where).records()
        assert record["fingerprint_fields"]["cpu_models"] == machine.cpu_model(), where


def test_cpu_models_count_the_workers_that_told_theirs():
    """A worker that joined since its host was asked does not turn a cluster's models into
    another fingerprint until it is asked."""
    told = _workers(n=1, cpu_model="Xeon", port0=1)
    fresh = _workers(n=1, port0=2)
    assert cluster_fingerprint({**told, **fresh}).as_dict()["cpu_models"] == "Xeon"


# -- similarity -----------------------------------------------------------------


def _local_fields(**changes):
    fields = local_fingerprint("spawn").as_dict()
    fields.update(changes)
    return fields


def test_similarity_basic_properties():
    a = _local_fields(cores=2)
    assert similarity(a, a) == 1.0
    assert similarity(local_fingerprint("spawn"), local_fingerprint("spawn")) == 1.0
    assert similarity(a, cluster_fingerprint(_workers()).as_dict()) == 0.0
    assert 0.0 < similarity(a, _local_fields(start_method="fork")) < 1.0


def test_similarity_decreases_with_core_distance():
    base = _local_fields(cores=2)
    scores = [similarity(base, _local_fields(cores=c)) for c in (2, 3, 4, 8, 64)]
    assert scores[0] == 1.0
    assert all(x > y for x, y in zip(scores, scores[1:]))


def test_similarity_cluster_shapes():
    base = cluster_fingerprint(_workers(n=2)).as_dict()
    near = cluster_fingerprint(_workers(n=3)).as_dict()
    far = cluster_fingerprint(_workers(n=16)).as_dict()
    assert 1.0 > similarity(base, near) > similarity(base, far) > 0.0


_values = st.one_of(
    st.integers(0, 1024),
    st.floats(0, 1e6, allow_nan=False),
    st.sampled_from(["a", "b", "spawn", "fork"]),
    st.booleans(),
)
_fields = st.dictionaries(st.sampled_from(["cores", "memory_gib", "cpu_model", "x", "y"]), _values)


@settings(max_examples=200, deadline=None)
@given(_fields, _fields, st.sampled_from(["local", "cluster"]), st.sampled_from(["local", "cluster"]))
def test_similarity_symmetric_and_bounded(a, b, kind_a, kind_b):
    a = {**a, "kind": kind_a}
    b = {**b, "kind": kind_b}
    s = similarity(a, b)
    assert 0.0 <= s <= 1.0 and not math.isnan(s)
    assert s == similarity(b, a)
    assert similarity(a, a) == 1.0
    if kind_a != kind_b:
        assert s == 0.0

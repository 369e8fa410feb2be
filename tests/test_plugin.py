"""The scheduler plugin on real clusters: plans, records, the CLI preload, bounds, robustness."""

import logging
import os
import signal
import subprocess
import sys
import threading
import time

import pickle
import pytest
from distributed import Client

import amorsize_dask as ad
from amorsize_dask.learning import learner as learning
from amorsize_dask.cluster import client as plugin_client
from amorsize_dask.cluster.adaptive import AmorsizeAdaptive
from amorsize_dask.cluster.plugin import CONFIRM_SECONDS, MAX_PENDING_RUNS, RUN_TTL_SECONDS, AmorsizePlugin
from amorsize_dask.learning.store import TrainingStore
from tests.helpers.cluster import in_process_cluster, local_cluster

DEADLINE = 60


def double(x):
    return 2 * x


def fail_on_seven(x):
    if x == 7:
        raise ValueError("seven")
    return x


def sleepy(x):
    time.sleep(0.002)
    return x + 1


def plugins(client):
    return client.run_on_scheduler(lambda dask_scheduler: list(dask_scheduler.plugins))


def on_plugin(client, fn):
    """``fn(plugin)`` run on the scheduler, its result returned."""
    return client.run_on_scheduler(lambda dask_scheduler: fn(dask_scheduler.plugins["amorsize"]))


def _pending_runs(client) -> str:
    """The plugin's runs (function, plan, tasks done) and this process's threads."""
    runs = on_plugin(client, lambda p: [(r.function, r.plan, r.n_tasks, r.n_done) for r in p._runs.values()])
    return f"runs {runs}; threads {[t.name for t in threading.enumerate()]}"


def run_message(**changes):
    run = {"run_id": os.urandom(8).hex(), "n_tasks": 4, "workload": "0123456789abcdef", "function": "tests.f",
           "features": {"n_items": 40, "n_sampled": 0, "planning_seconds": 0.0},
           "plan": {"engine": "dask", "n_workers": 2, "chunksize": 10, "source": "default"},
           "predicted_seconds": 2.0, "planning_seconds": 0.0}
    run.update(changes)
    return run


@pytest.fixture(scope="module")
def training(tmp_path_factory):
    return tmp_path_factory.mktemp("plugin-training")


@pytest.fixture(scope="module")
def client(training):
    with local_cluster() as lc, Client(lc) as c:
        c.register_plugin(AmorsizePlugin(training_dir=str(training)))
        yield c


@pytest.fixture
def inproc():
    """A small in-process cluster, for tests that leave a plugin in an odd state."""
    with in_process_cluster() as lc, Client(lc) as c:
        yield c


def test_plugin_pickles_without_scheduler_state(client):
    started = on_plugin(client, lambda p: pickle.dumps(p))
    copy = pickle.loads(started)
    assert copy.scheduler is None and copy.training_dir is not None


def test_map_through_plugin_writes_one_record_by_the_plugin(client, training):
    assert plugin_client.has_plugin(client)
    store = TrainingStore(training)
    before, recorded = len(store.records()), on_plugin(client, lambda p: p.n_recorded)
    items = list(range(200))
    out = ad.map(sleepy, items, client=client, engine="dask", training_dir=training)
    assert out == [x + 1 for x in items]
    records = store.records()
    assert len(records) == before + 1
    assert on_plugin(client, lambda p: (p.n_recorded, p.pending_runs())) == (recorded + 1, 0)
    rec = records[-1]
    assert rec["plan"]["engine"] == "dask" and rec["plan"]["source"] == "sample"
    assert rec["compute_seconds"] > 0.002 * 150  # measured on the workers, plus the sample
    assert rec["features"]["n_items"] == 200 and "sample_seconds" not in rec["features"]
    assert rec["fingerprint_fields"]["kind"] == "cluster"
    assert rec["function"].endswith("sleepy")


def test_a_training_dir_other_than_the_plugins_is_where_the_run_is_recorded(client, training, tmp_path):
    """``training_dir=`` names where runs are recorded: a plugin recording elsewhere is
    neither asked to plan nor to record (it planned from its own runs, and the named
    directory was never created)."""
    other = tmp_path / "other"
    recorded = on_plugin(client, lambda p: p.n_recorded)
    out = ad.map(sleepy, range(200), client=client, engine="dask", training_dir=other)
    assert out == [x + 1 for x in range(200)]
    assert len(TrainingStore(other).records()) == 1
    assert on_plugin(client, lambda p: p.n_recorded) == recorded
    plan = ad.plan(sleepy, range(200), client=client, training_dir=other)
    assert "1 measured run" in plan.explain()


def test_fixed_plan_records_its_source(client, training):
    store = TrainingStore(training)
    before = len(store.records())
    assert ad.map(double, range(30), client=client, engine="dask", n_workers=2, chunksize=4,
                  training_dir=training) == [2 * x for x in range(30)]
    records = store.records()
    assert len(records) == before + 1
    assert records[-1]["plan"] == {"engine": "dask", "n_workers": 2, "chunksize": 4, "source": "default"}


def test_no_learning_no_record(client, training):
    before = len(TrainingStore(training).records())
    assert ad.map(double, range(12), client=client, engine="dask", n_workers=2, chunksize=4,
                  training_dir=training, learn=False) == [2 * x for x in range(12)]
    assert len(TrainingStore(training).records()) == before
    assert on_plugin(client, lambda p: p.pending_runs()) == 0


def test_registering_twice_keeps_one_plugin(client, training):
    first = on_plugin(client, id)
    client.register_plugin(AmorsizePlugin(training_dir=str(training)))
    names = plugins(client)
    assert names.count("amorsize") == 1
    assert on_plugin(client, id) == first
    assert plugin_client.ping(client)["name"] == "amorsize"


@pytest.mark.parametrize(
    "kwargs, error, words",
    [
        ({"n_items": "10"}, TypeError, "n_items"),
        ({"n_items": -5}, ValueError, "n_items"),
        ({"n_items": 2**63}, ValueError, "n_items"),
        ({"n_items": True}, TypeError, "n_items"),
        ({"function": "f" * 10_240}, ValueError, "function"),
        ({"function": 3}, TypeError, "function"),
        ({"workload": "not-hex"}, ValueError, "workload"),
        ({"explore": "yes"}, TypeError, "explore"),
    ],
)
def test_malformed_plan_request_is_a_clear_error(client, kwargs, error, words):
    request = {"workload": "0123456789abcdef", "function": "f", "n_items": 10, "explore": False, **kwargs}
    with pytest.raises(error, match=words) as info:
        plugin_client.remote_plan(client, **request)
    assert len(str(info.value)) < 400  # a 10 KB value is not echoed back
    # ... and the scheduler keeps serving
    assert plugin_client.remote_plan(client, "0123456789abcdef", "f", 10, False)["cores"] == 2


@pytest.mark.parametrize(
    "changes, error, words",
    [
        ({"run_id": "xyz"}, ValueError, "run_id"),
        ({"n_tasks": 0}, ValueError, "n_tasks"),
        ({"n_tasks": 41}, ValueError, "n_tasks"),
        ({"n_tasks": 2.0}, TypeError, "n_tasks"),
        ({"plan": {"engine": "serial", "n_workers": 1, "chunksize": 1, "source": "default"}}, ValueError, "engine"),
        ({"plan": {"engine": "dask"}}, ValueError, "plan"),
        ({"features": {"n_items": 40, "x" * 100: 1}}, ValueError, "features"),
        ({"features": {"n_items": 40, "bad": float("nan")}}, ValueError, "features.bad"),
        ({"features": {f"k{i}": 1 for i in range(100)} | {"n_items": 40}}, ValueError, "features"),
        ({"predicted_seconds": -1.0}, ValueError, "predicted_seconds"),
        ({"surprise": 1}, ValueError, "surprise"),
    ],
)
def test_malformed_run_is_a_clear_error(client, changes, error, words):
    with pytest.raises(error, match=words):
        plugin_client.register_run(client, run_message(**changes))
    assert on_plugin(client, lambda p: p.pending_runs()) == 0


def test_scheduler_serves_after_malformed_requests(client, training):
    with pytest.raises(TypeError):
        plugin_client.remote_plan(client, "0123456789abcdef", "f", None, True)
    assert ad.map(double, range(20), client=client, training_dir=training) == [2 * x for x in range(20)]
    assert ad.map(double, range(20), client=client, engine="dask", n_workers=2, chunksize=3,
                  training_dir=training) == [2 * x for x in range(20)]


def test_plan_reply_shape(client, training):
    ad.map(sleepy, range(200), client=client, engine="dask", training_dir=training)
    reply = plugin_client.remote_plan(client, ad.plan(sleepy, [1], engine="serial").workload, "x", 200, False)
    assert set(reply) == {"fingerprint", "fields", "cores", "plan"}
    assert reply["cores"] == 2 and reply["fields"]["total_threads"] == 2
    assert {"engine", "n_workers", "chunksize", "confidence", "seconds", "explored", "n_observations",
            "best_seconds"} <= set(reply["plan"])


class BrokenPlugin(AmorsizePlugin):
    def _on_transition(self, key, start, finish, kwargs):
        raise RuntimeError("broken on purpose")


def test_failing_hook_is_logged_and_scheduler_goes_on(inproc, tmp_path, caplog):
    inproc.register_plugin(BrokenPlugin(training_dir=str(tmp_path)))
    with caplog.at_level(logging.ERROR, logger="amorsize_dask"):
        for _ in range(2):
            out = ad.map(double, range(40), client=inproc, engine="dask", n_workers=1, chunksize=4,
                         training_dir=tmp_path)
            assert out == [2 * x for x in range(40)]
    assert on_plugin(inproc, lambda p: (p.n_hook_errors >= 20, p.n_recorded, p.pending_runs())) == (True, 0, 0)
    assert "transition hook failed" in caplog.text and "broken on purpose" in caplog.text
    assert caplog.text.count("transition hook failed") == 1  # logged once, not per task
    assert inproc.submit(double, 21).result() == 42
    # The plugin saw no task finish, so each client recorded its own run.
    assert len(TrainingStore(tmp_path).records()) == 2


class RefusingPlugin(AmorsizePlugin):
    def amorsize_run(self, run):
        raise RuntimeError("refusing on purpose")


def test_plugin_failure_never_fails_the_map(inproc, tmp_path, caplog):
    inproc.register_plugin(RefusingPlugin(training_dir=str(tmp_path)))
    with caplog.at_level(logging.WARNING, logger="amorsize_dask"):
        for _ in range(2):
            assert ad.map(double, range(30), client=inproc, engine="dask", n_workers=1, chunksize=4,
                          training_dir=tmp_path) == [2 * x for x in range(30)]
    assert caplog.text.count("could not register the run with the scheduler plugin") == 1  # warned once
    assert len(TrainingStore(tmp_path).records()) == 2  # the client recorded both itself, once each


def fail_on_last(x):
    if x == 47:
        raise ValueError("the last item is bad")
    return x


def test_run_whose_function_raised_is_not_recorded(client, training):
    store = TrainingStore(training)
    before, recorded = len(store.records()), on_plugin(client, lambda p: p.n_recorded)
    for n in (48, 200):  # the failing task last (all tasks finish), or among others
        with pytest.raises(ValueError, match="last item is bad"):
            ad.map(fail_on_last, range(n), client=client, engine="dask", n_workers=2, chunksize=8,
                   training_dir=training)
    assert len(store.records()) == before
    assert on_plugin(client, lambda p: p.n_recorded) == recorded
    assert ad.map(fail_on_last, range(40), client=client, engine="dask", n_workers=2, chunksize=8,
                  training_dir=training) == list(range(40))
    assert len(store.records()) == before + 1


def test_install_is_idempotent_on_a_running_scheduler(inproc, tmp_path):
    from amorsize_dask.cluster.plugin import install

    def twice(dask_scheduler):
        first = install(dask_scheduler, str(tmp_path))
        return first is install(dask_scheduler, str(tmp_path)), list(dask_scheduler.plugins).count("amorsize")

    assert inproc.run_on_scheduler(twice) == (True, 1)
    assert plugin_client.has_plugin(inproc)
    assert plugin_client.ping(inproc)["training_dir"] == str(tmp_path)
    assert ad.map(double, range(9), client=inproc, engine="dask", n_workers=1, chunksize=2,
                  training_dir=tmp_path) == [2 * x for x in range(9)]
    assert len(TrainingStore(tmp_path).records()) == 1


def test_the_plugin_is_still_announced_after_client_restart(tmp_path):
    """``client.restart()`` clears the scheduler's task metadata, where the plugin says it
    runs: every client then planned and recorded in its own directory, for good (a
    registration again is a no-op)."""
    with local_cluster() as lc, Client(lc) as c:
        c.register_plugin(AmorsizePlugin(training_dir=str(tmp_path)))
        c.restart()
        with Client(lc.scheduler_address) as later:
            assert plugin_client.has_plugin(later)
            assert ad.map(double, range(40), client=later, engine="dask", n_workers=2,
                          chunksize=10) == [2 * x for x in range(40)]
    assert len(TrainingStore(tmp_path).records()) == 1  # recorded by the plugin, in its directory


def test_pending_runs_are_bounded(inproc, tmp_path):
    inproc.register_plugin(AmorsizePlugin(training_dir=str(tmp_path)))

    def flood(plugin):
        for i in range(MAX_PENDING_RUNS + 150):
            plugin.amorsize_run(run_message(run_id=f"{i:016x}"))
        counts = [plugin.pending_runs()]
        runs = iter(plugin._runs.values())
        next(runs).started -= RUN_TTL_SECONDS + 1  # expired: dropped on the next look
        next(runs).finished = time.time() - CONFIRM_SECONDS - 1  # finished, never confirmed: dropped
        plugin.amorsize_target(5.0)
        counts.append(plugin.pending_runs())
        return counts, "0000000000000000" in plugin._runs, f"{MAX_PENDING_RUNS + 149:016x}" in plugin._runs

    (full, after_ttl), has_first, has_last = on_plugin(inproc, flood)
    assert full == MAX_PENDING_RUNS and after_ttl == MAX_PENDING_RUNS - 2
    assert not has_first and has_last


def test_hook_ignores_every_other_task_and_drops_only_its_own_runs(inproc, tmp_path):
    # The hook returns at once for other tasks (~0.3 us a call; a scheduler spends hundreds
    # of us per task): asserted here as behaviour, its cost is bench's to measure.
    inproc.register_plugin(AmorsizePlugin(training_dir=str(tmp_path)))
    run = run_message()
    plugin_client.register_run(inproc, run)

    def transitions(plugin):
        for i in range(2000):
            plugin.transition(("inc-abc", i), "processing", "erred", stimulus_id="s", worker="w", startstops=[])
            plugin.transition("inc-abc", "waiting", "processing", stimulus_id="s")
            plugin.transition(f"amorsize-{'f' * 16}-{i}", "processing", "erred", stimulus_id="s", startstops=[])
            plugin.transition(f"amorsize-f-{run['run_id']}-{i}", "waiting", "processing", stimulus_id="s")
        others = plugin.pending_runs()
        plugin.transition(f"amorsize-f-{run['run_id']}-0", "processing", "erred", stimulus_id="s")
        return others, plugin.pending_runs()

    # other tasks erring leave the run pending; one of its own tasks erring drops it
    assert on_plugin(inproc, transitions) == (1, 0)


def test_cli_preload(tmp_path):
    sched_file = tmp_path / "scheduler.json"
    training = tmp_path / "training"
    dask = os.path.join(os.path.dirname(sys.executable), "dask")
    procs = []

    def start(*args, log):
        with open(tmp_path / log, "w") as out:
            procs.append(subprocess.Popen([dask, *args], stdout=out, stderr=subprocess.STDOUT,
                                          start_new_session=True))

    try:
        start("scheduler", "--scheduler-file", str(sched_file), "--host", "127.0.0.1", "--port", "0",
              "--dashboard-address", ":0", "--preload", "amorsize_dask.plugin", "--amorsize-dir", str(training),
              log="scheduler.log")
        deadline = time.monotonic() + DEADLINE
        while not sched_file.exists():
            assert procs[0].poll() is None, (tmp_path / "scheduler.log").read_text()
            assert time.monotonic() < deadline, "scheduler did not start"
            time.sleep(0.05)  # polling for a file another process writes, with a deadline
        for i in range(2):
            start("worker", "--scheduler-file", str(sched_file), "--nthreads", "1", "--no-nanny",
                  "--host", "127.0.0.1", "--dashboard-address", ":0", log=f"worker{i}.log")
        with Client(scheduler_file=str(sched_file), timeout=DEADLINE) as c:
            c.wait_for_workers(2, timeout=DEADLINE)
            assert plugins(c).count("amorsize") == 1
            assert plugin_client.ping(c)["training_dir"] == str(training)
            # a builtin: these processes cannot import the tests' modules
            out = ad.map(abs, range(-12, 13), client=c, engine="dask", n_workers=2, chunksize=5)
            assert out == [abs(x) for x in range(-12, 13)]
            records = TrainingStore(training).records()
            assert len(records) == 1 and records[0]["plan"]["chunksize"] == 5
            assert records[0]["compute_seconds"] > 0
            assert records[0]["fingerprint_fields"]["n_workers"] == 2
    finally:
        for group in (procs[1:], procs[:1]):  # the workers, then the scheduler
            for proc in group:
                proc.terminate()
            for proc in group:
                try:
                    proc.wait(timeout=15)
                except subprocess.TimeoutExpired:
                    os.killpg(proc.pid, signal.SIGKILL)
                    proc.wait()


@pytest.mark.parametrize("with_plugin", [True, False], ids=["plugin", "no-plugin"])
def test_learning_carries_across_clusters(tmp_path, with_plugin):
    items = list(range(200))
    with local_cluster() as lc, Client(lc) as a:
        if with_plugin:
            a.register_plugin(AmorsizePlugin(training_dir=str(tmp_path)))
        assert ad.map(sleepy, items, client=a, training_dir=tmp_path) == [x + 1 for x in items]
        recorded_by_plugin = on_plugin(a, lambda p: p.n_recorded) if with_plugin else 0
    records = TrainingStore(tmp_path).records()
    assert len(records) == 1
    assert records[0]["plan"]["engine"] == "dask"         # on a cluster, func runs on the workers only
    assert recorded_by_plugin == (1 if with_plugin else 0)
    learning._LEARNERS.pop(os.path.abspath(tmp_path), None)  # a fresh process would read the store anew
    with local_cluster() as lc, Client(lc) as b:
        if with_plugin:
            b.register_plugin(AmorsizePlugin(training_dir=str(tmp_path)))
        plan = ad.plan(sleepy, items, client=b, training_dir=tmp_path)
        if with_plugin:
            assert on_plugin(b, lambda p: p.n_plans) == 1  # the plugin's model answered
        assert plan.source == "model", (
            f"one run gives confidence {plan.confidence}; amorsize.model.min-confidence is "
            f"{ad.config.get('model.min-confidence')}:\n{plan.explain()}")
        assert plan.fingerprint == records[0]["fingerprint"]


def test_adaptive_target_from_plugin(tmp_path):
    with local_cluster(n_workers=1) as lc, Client(lc) as c:
        c.register_plugin(AmorsizePlugin(training_dir=str(tmp_path)))
        adaptive = lc.adapt(Adaptive=AmorsizeAdaptive, minimum=1, maximum=2, interval="100ms")
        assert isinstance(adaptive, AmorsizeAdaptive)
        # Failed once in six full runs (session 14: a pending run before any was registered
        # here); the message names the run and this process's threads, to find its sender.
        assert plugin_client.remote_target(c, 5.0) == 0, _pending_runs(c)
        idle = c.sync(adaptive.target)  # no amorsize work: distributed's own target
        assert isinstance(idle, int) and 0 <= idle <= 1
        # 40 tasks predicted at 20 s on 1 worker: 20 s of work, 4 threads to do it in 5 s
        announced = run_message(n_tasks=40, predicted_seconds=20.0,
                                plan={"engine": "dask", "n_workers": 1, "chunksize": 1, "source": "model"})
        plugin_client.register_run(c, announced)
        assert plugin_client.remote_target(c, 5.0) == 4
        assert plugin_client.remote_target(c, "10s") == 2
        assert c.sync(adaptive.target) == 4  # 1 thread per worker
        deadline = time.monotonic() + DEADLINE
        while len(c.scheduler_info(n_workers=-1)["workers"]) < 2:  # Adaptive scales up to maximum
            assert time.monotonic() < deadline, "AmorsizeAdaptive did not scale up"
            time.sleep(0.05)
        # The announced run never ran a task: its client gives up on it (no record), and
        # the plugin wants no threads for it any more.
        assert plugin_client.finish_run(c, announced["run_id"]) is False
        assert plugin_client.remote_target(c, 5.0) == 0
        items = list(range(60))
        assert ad.map(sleepy, items, client=c, engine="dask", n_workers=2, chunksize=5,
                      training_dir=tmp_path) == [x + 1 for x in items]
        # A run that returned is over: nothing pending (Adaptive may shrink the cluster).
        assert on_plugin(c, lambda p: p.n_recorded) == 1  # the plugin followed that run
        assert plugin_client.remote_target(c, 5.0) == 0
        assert on_plugin(c, lambda p: p.pending_runs()) == 0
        with pytest.raises(ValueError, match="seven"):  # one that raised is over too
            ad.map(fail_on_seven, range(40), client=c, engine="dask", n_workers=2, chunksize=5,
                   training_dir=tmp_path)
        # Its chunks not done are cancelled, which reaches the plugin on the client's stream,
        # not before the next RPC (a clean-clone CI run read 1 here, session 21).
        deadline = time.monotonic() + DEADLINE
        while plugin_client.remote_target(c, 5.0) != 0:
            assert time.monotonic() < deadline, _pending_runs(c)
            time.sleep(0.05)


def test_adaptive_without_plugin_scales_like_adaptive(inproc, caplog):
    """Without asking the scheduler's missing handler: distributed logged "No handler
    amorsize_target found" with a KeyError traceback on the user's stderr (hunt 16)."""
    from distributed.deploy import Adaptive

    adaptive = inproc.cluster.adapt(Adaptive=AmorsizeAdaptive, minimum=1, maximum=1, interval="1h")
    try:
        for _ in range(2):
            assert inproc.sync(adaptive.target) == inproc.sync(Adaptive.target, adaptive)
        assert "amorsize_target" not in caplog.text, caplog.text
    finally:
        adaptive.stop()

"""Where nothing could configure a call (dask not loaded, no DASK_ variable but the training
directory's, none of dask's YAML folders), the settings are read without loading dask;
anything that could configure them loads dask.config and is obeyed
(amorsize_dask/dask_sources.py, amorsize_dask/config.py). Scripts run as __main__."""

import json
import os
import subprocess
import sys
import textwrap

import dask.config
import pytest

from amorsize_dask import dask_sources

SCRIPT = textwrap.dedent("""
    import json, sys
    import amorsize_dask as ad
    from amorsize_dask import config
    from amorsize_dask.settings import Settings

    def spin(x):
        total = 0
        for i in range(3000):
            total += i ^ x
        return total

    if __name__ == "__main__":
        out = ad.map(spin, range(3000))  # 0.2-0.5 s: past the head, planned and recorded
        assert out == [spin(x) for x in range(3000)]
        s = Settings.from_config()
        print(json.dumps({"dask": "dask" in sys.modules, "min_speedup": s.min_speedup, "k": s.k,
                          "max_bytes": s.size("max_bytes"), "training_dir": str(config.default_training_dir())}))
""")


def _script(tmp_path, **env):
    script = tmp_path / "user.py"
    script.write_text(SCRIPT)
    run_env = {k: v for k, v in os.environ.items() if not k.startswith("DASK_")}
    run_env.update(env)
    done = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=180,
                          env=run_env, cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_an_unconfigured_script_plans_and_records_without_loading_dask(tmp_path):
    training = tmp_path / "training"
    report = _script(tmp_path, DASK_AMORSIZE__TRAINING_DIR=str(training))
    assert report == {"dask": False, "min_speedup": 1.05, "k": 8, "max_bytes": 64 << 20,
                      "training_dir": str(training)}
    assert list(training.rglob("*.jsonl")), "the planned run was not recorded"


def test_a_dask_variable_is_obeyed(tmp_path):
    report = _script(tmp_path, DASK_AMORSIZE__TRAINING_DIR=str(tmp_path / "t"),
                     DASK_AMORSIZE__PLANNER__MIN_SPEEDUP="1.3", DASK_AMORSIZE__STORE__MAX_BYTES="'2 MiB'")
    assert report["dask"] and report["min_speedup"] == 1.3 and report["max_bytes"] == 2 << 20


def test_a_yaml_file_in_dasks_folders_is_obeyed(tmp_path):
    folder = tmp_path / "home" / ".config" / "dask"
    folder.mkdir(parents=True)
    (folder / "amorsize.yaml").write_text("amorsize:\n  model:\n    k: 3\n")
    report = _script(tmp_path, HOME=str(tmp_path / "home"), DASK_AMORSIZE__TRAINING_DIR=str(tmp_path / "t"))
    assert report["dask"] and report["k"] == 3


@pytest.mark.parametrize("text", ["/data/runs", "None", "null", "~/runs", "'quoted'", "12", "True", "a b"])
def test_the_training_dirs_variable_reads_as_dask_reads_it(monkeypatch, text):
    monkeypatch.setenv(dask_sources.TRAINING_DIR_VARIABLE, text)
    assert dask_sources.training_dir_variable() == dask.config.interpret_value(text)


def test_every_folder_dask_reads_its_settings_from_is_known(monkeypatch):
    """A dask release that reads YAML from another folder would configure calls taken for
    unconfigured (``_get_paths``: dask's own, "for testing purposes")."""
    monkeypatch.delenv("DASK_CONFIG", raising=False)
    monkeypatch.delenv("DASK_ROOT_CONFIG", raising=False)
    assert set(dask.config._get_paths()) == set(dask_sources.dask_config_paths())


LATER_SCRIPT = textwrap.dedent("""
    import json, os, sys, time
    import amorsize_dask as ad

    def spin(x):
        end = time.perf_counter() + 1e-3
        while time.perf_counter() < end:
            pass
        return x

    if __name__ == "__main__":
        training = sys.argv[1]
        os.environ["DASK_AMORSIZE__TRAINING_DIR"] = os.path.join(training, "first")
        assert ad.map(spin, range(int(sys.argv[2]))) == list(range(int(sys.argv[2])))
        os.environ["DASK_AMORSIZE__TRAINING_DIR"] = os.path.join(training, "second")
        assert ad.map(spin, range(400)) == list(range(400))  # 0.4 s: planned, recorded
        import dask
        print(json.dumps({"k": dask.config.get("amorsize.model.k"),
                          "recorded": sorted(os.listdir(training))}), flush=True)
""")


@pytest.mark.parametrize("first_items", [10, 400])
def test_dask_loaded_after_a_first_call_finds_the_settings_read_as_dask_reads_them(tmp_path, first_items):
    """After a call that loaded no dask (done in its head, or planned without it), the
    user's ``import dask`` finds the amorsize defaults (hunt 19: KeyError 'amorsize'), and
    DASK_AMORSIZE__TRAINING_DIR was read once, when a call first read the settings, as
    dask reads the environment once (hunt 19: it was obeyed call by call until dask loaded,
    then frozen). A call done in its head reads none and records nothing."""
    script = tmp_path / "later.py"
    script.write_text(LATER_SCRIPT)
    env = {k: v for k, v in os.environ.items() if not k.startswith("DASK_")}
    done = subprocess.run([sys.executable, str(script), str(tmp_path / "t"), str(first_items)], capture_output=True,
                          text=True, timeout=180, env=env, cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert report == {"k": 8, "recorded": ["first" if first_items > 10 else "second"]}, report


DURING_SCRIPT = textwrap.dedent("""
    import json
    import amorsize_dask as ad
    import amorsize_dask.mapping  # the planner loaded: the call is planned, without dask

    def loads_dask(x):
        import dask.config  # the user's code loads dask while the call runs
        return x

    if __name__ == "__main__":
        assert ad.map(loads_dask, range(5)) == list(range(5))
        import dask
        print(json.dumps({"k": dask.config.get("amorsize.model.k", None)}))
""")


def test_dask_loaded_by_the_function_during_a_call_finds_the_settings(tmp_path):
    """The call looked once, at its start, and found nothing to configure it; dask loading
    inside it must still register the amorsize defaults (a KeyError 'model' after the call,
    once the call's look was kept for its length: session 24's review)."""
    script = tmp_path / "during.py"
    script.write_text(DURING_SCRIPT)
    env = {k: v for k, v in os.environ.items() if not k.startswith("DASK_")}
    env["DASK_AMORSIZE__TRAINING_DIR"] = str(tmp_path / "training")
    done = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=120, env=env,
                          cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    assert json.loads(done.stdout.strip().splitlines()[-1]) == {"k": 8}


def test_a_call_looks_for_dasks_settings_once_and_the_next_call_again(tmp_path):
    """Without dask, each look (an environment scan and five stats) cost ~18 us, asked
    ~13 times per call: ~0.25 ms of a warm 10-item call's ~1.1 ms (session 24's profile).
    A call looks once; a DASK_ variable set before the next call is obeyed by it."""
    script = tmp_path / "user.py"
    script.write_text(textwrap.dedent("""
        import json, os, sys
        import amorsize_dask as ad
        import amorsize_dask.mapping
        from amorsize_dask import dask_sources

        looks = []
        real = dask_sources.configured
        dask_sources.configured = lambda: looks.append(1) or real()

        if __name__ == "__main__":
            for _ in range(3):
                assert ad.map(abs, range(-5, 5)) == list(map(abs, range(-5, 5)))
            per_call, unconfigured = len(looks) / 3, "dask" not in sys.modules
            os.environ["DASK_AMORSIZE__MODEL__K"] = "3"
            assert ad.map(abs, range(-5, 5)) == list(map(abs, range(-5, 5)))
            print(json.dumps({"per_call": per_call, "unconfigured": unconfigured, "then_dask": "dask" in sys.modules}))
    """))
    env = {k: v for k, v in os.environ.items() if not k.startswith("DASK_")}
    env["DASK_AMORSIZE__TRAINING_DIR"] = str(tmp_path / "training")
    done = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=120, env=env,
                          cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    assert json.loads(done.stdout.strip().splitlines()[-1]) == {"per_call": 1, "unconfigured": True,
                                                                 "then_dask": True}

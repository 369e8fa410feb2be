"""The ``amorsize`` dask.config namespace: YAML defaults, their schema, env vars, overrides."""

import os
import pathlib
import subprocess
import sys

import dask
import pytest
import yaml

import amorsize_dask as ad
from amorsize_dask import config

_NUMERIC = {"integer": int, "number": (int, float), "string": str, "boolean": bool,
            "null": type(None), "object": dict, "array": list}


def load_schema() -> dict:
    with open(config.SCHEMA_FILE) as f:
        return yaml.safe_load(f)


def load_defaults() -> dict:
    with open(config.DEFAULTS_FILE) as f:
        return yaml.safe_load(f)


def default_keys(tree: dict, prefix: str = "") -> set:
    """Dotted paths of every key (leaves and sections) of a YAML tree."""
    keys = set()
    for key, value in tree.items():
        path = f"{prefix}.{key}" if prefix else key
        keys.add(path)
        if isinstance(value, dict):
            keys |= default_keys(value, path)
    return keys


def schema_keys(node: dict, prefix: str = "") -> set:
    """Dotted paths of every property of a JSON schema."""
    keys = set()
    for key, sub in node.get("properties", {}).items():
        path = f"{prefix}.{key}" if prefix else key
        keys.add(path)
        keys |= schema_keys(sub, path)
    return keys


def test_schema_and_defaults_list_the_same_keys():
    defaults, schema = default_keys(load_defaults()), schema_keys(load_schema())
    assert defaults - schema == set(), "keys of amorsize.yaml missing from amorsize-schema.yaml"
    assert schema - defaults == set(), "keys of amorsize-schema.yaml missing from amorsize.yaml"


def _walk_schema(node: dict, path: str = ""):
    yield path, node
    for key, sub in node.get("properties", {}).items():
        yield from _walk_schema(sub, f"{path}.{key}" if path else key)


def test_every_schema_entry_has_a_type_and_a_description():
    for path, node in _walk_schema(load_schema()):
        if not path:
            continue
        assert "type" in node, path
        assert node.get("description", "").strip(), f"{path} has no description"


def _check(value, node: dict, path: str) -> None:
    """The subset of JSON schema the file uses: type, enum, (exclusive) minimum/maximum."""
    types = node["type"] if isinstance(node["type"], list) else [node["type"]]
    ok = any(isinstance(value, _NUMERIC[t]) and not (t in ("integer", "number")
                                                      and isinstance(value, bool))
             for t in types)
    assert ok, f"{path}: {value!r} is not {types}"
    if "enum" in node:
        assert value in node["enum"], f"{path}: {value!r} not in {node['enum']}"
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        assert value >= node.get("minimum", -float("inf")), path
        assert value <= node.get("maximum", float("inf")), path
        assert value > node.get("exclusiveMinimum", -float("inf")), path
    if isinstance(value, dict):
        props = node.get("properties", {})
        for key, sub_value in value.items():
            _check(sub_value, props[key], f"{path}.{key}")


def test_defaults_satisfy_the_schema_types_and_bounds():
    """Without jsonschema: the keywords this schema uses, checked directly."""
    _check(load_defaults(), {"type": "object", **load_schema()}, "<root>")


def test_defaults_validate_with_jsonschema():
    jsonschema = pytest.importorskip("jsonschema")
    jsonschema.validate(load_defaults(), load_schema())


def test_schema_rejects_a_bad_value_with_jsonschema():
    jsonschema = pytest.importorskip("jsonschema")
    bad = load_defaults()
    bad["amorsize"]["planner"]["max-threads"] = 0
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(bad, load_schema())


def test_the_package_ships_both_files():
    assert config.DEFAULTS_FILE.is_file() and config.SCHEMA_FILE.is_file()
    assert config.SCHEMA_FILE.parent == config.DEFAULTS_FILE.parent


def test_env_var_is_honoured_at_import():
    env = dict(os.environ, DASK_AMORSIZE__PLANNER__MAX_THREADS="8",
               DASK_AMORSIZE__TRAINING_DIR="/tmp/somewhere-else")
    code = ("import amorsize_dask.config as c; "
            "print(repr(c.get('planner.max-threads'))); print(c.default_training_dir())")
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                         text=True, timeout=120, check=True).stdout.split()
    assert out == ["8", "/tmp/somewhere-else"]


def test_defaults_are_registered_with_dask():
    assert config.get("planner.max-threads") == load_defaults()["amorsize"]["planner"]["max-threads"]
    assert dask.config.get("amorsize.model.k") == load_defaults()["amorsize"]["model"]["k"]


def test_overrides_are_read_at_call_time(tmp_path):
    before = config.get("planner.max-threads")
    with dask.config.set({"amorsize.planner.max-threads": 3,
                          "amorsize.training-dir": str(tmp_path / "t")}):
        assert config.get("planner.max-threads") == 3
        assert config.default_training_dir() == tmp_path / "t"
    assert config.get("planner.max-threads") == before


def test_training_dir_expands_the_home_directory(monkeypatch, tmp_path):
    monkeypatch.setenv("HOME", str(tmp_path))
    with dask.config.set({"amorsize.training-dir": "~/runs"}):
        assert config.default_training_dir() == tmp_path / "runs"


def test_default_training_dir_follows_xdg_cache_home(monkeypatch, tmp_path):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    with dask.config.set({"amorsize.training-dir": None}):
        assert config.default_training_dir() == tmp_path / "amorsize_dask" / "training"


def test_a_relative_xdg_cache_home_is_ignored_as_the_spec_says(monkeypatch, tmp_path):
    """``XDG_CACHE_HOME=cache`` put each script's training directory under its working
    directory (one per folder a script ran from); the XDG spec says a relative path is
    invalid and to be ignored."""
    monkeypatch.setenv("XDG_CACHE_HOME", "relative_cache")
    monkeypatch.setenv("HOME", str(tmp_path))
    with dask.config.set({"amorsize.training-dir": None}):
        assert config.default_training_dir() == tmp_path / ".cache" / "amorsize_dask" / "training"


def test_missing_key_gives_the_default():
    assert config.get("no-such-key", default="fallback") == "fallback"


def test_settings_hold_every_planning_learning_and_store_key_read_at_call_time():
    import dataclasses

    from amorsize_dask.settings import Settings

    # Read where they act (the store, the process engine when a pool starts), not per call:
    keys = default_keys(load_defaults()["amorsize"]) - {"training-dir", "start-method", "worker-heap-pad"}
    keys = {k for k in keys if not any(other.startswith(k + ".") for other in keys)}  # leaves
    fields = {f.name for f in dataclasses.fields(Settings)}
    assert {k.split(".")[-1].replace("-", "_") for k in keys} == fields
    with dask.config.set({"amorsize.model.k": 3, "amorsize.store.max-bytes": None}):
        inside = Settings.from_config()
    assert (inside.k, inside.max_bytes) == (3, None)
    assert Settings.from_config().k == load_defaults()["amorsize"]["model"]["k"]
    with pytest.raises(dataclasses.FrozenInstanceError):
        inside.k = 4


def test_defaults_come_back_after_dask_config_is_replaced_wholesale():
    import copy

    import dask

    from amorsize_dask import config

    saved = copy.deepcopy(dask.config.config)
    try:
        dask.config.config.clear()  # as distributed.utils_test's clean-up restores a snapshot
        assert config.get("model.k") == config.DEFAULTS["amorsize"]["model"]["k"]
    finally:
        dask.config.config.clear()
        dask.config.config.update(saved)


@pytest.mark.parametrize("key, value", [
    ("planner.max-threads", "abc"), ("planner.max-threads", 0), ("model.k", "abc"), ("model.k", -1),
    ("model.min-confidence", "abc"), ("sampling.max-seconds", -1), ("planner.min-tasks-per-worker", 0),
    ("store.seal-bytes", -1), ("start-method", "bogus"),
    ("cluster.allow-local", "false"),  # read with bool(): the client ran func (hunt 19)
    ("worker-heap-pad", "abc"), ("worker-heap-pad", -1),  # found only as a pool started (hunt 19)
])
def test_a_bad_setting_is_a_clear_error_before_anything_runs(key, value):
    """It failed deep in the planner (a TypeError about '<' between int and str, a math
    domain error from the store) or was accepted; the error names the setting and value."""
    calls = []
    with dask.config.set({f"amorsize.{key}": value}):
        for call in (lambda: ad.map(calls.append, [1, 2]), lambda: ad.plan(calls.append, [1, 2]),
                     lambda: ad.imap(calls.append, [1, 2]), lambda: ad.bag.map(calls.append, [1, 2])):
            with pytest.raises(ValueError, match=f"amorsize.{key}={value!r}"):
                call()
    assert calls == []


def test_the_settings_checked_at_each_call_are_bounded_as_the_schema_says():
    """``settings.RULES`` repeats the schema's bounds (parsing the schema would cost a
    first call 2-13 ms): they must not drift apart (pickle-items 0, which the schema
    documents as "disables the measurement", was refused for a while)."""
    from amorsize_dask.settings import _KEYS, RULES, START_METHODS

    schema = dict(_walk_schema(load_schema()))
    for name, rule in RULES.items():
        node = schema[f"amorsize.{_KEYS[name]}"]
        assert rule == {k: v for k, v in node.items() if k != "description"}, name
    assert list(START_METHODS) == schema["amorsize.start-method"]["enum"]
    with dask.config.set({"amorsize.sampling.pickle-items": 0, "amorsize.store.keep-per-workload": 0}):
        ad.map(abs, [1, 2])  # the schema allows both


@pytest.mark.parametrize("key, value", [("planner.min-speedup", 0.5), ("sampling.max-seconds", 0),
                                        ("planner.memory-fraction", 0)])
def test_a_setting_below_the_schemas_bound_is_refused(key, value):
    with dask.config.set({f"amorsize.{key}": value}), pytest.raises(ValueError, match=f"amorsize.{key}="):
        ad.map(abs, [1, 2])


def test_an_empty_home_is_not_the_root_directory(monkeypatch):
    """``HOME=`` (set, empty: a service's or cron job's environment) made the default
    training directory ``/.cache/amorsize_dask``, at the root of the file system (unwritable
    for most users); as with HOME unset, the account's home directory is used."""
    import pwd

    monkeypatch.delenv("XDG_CACHE_HOME", raising=False)
    monkeypatch.setenv("HOME", "")
    with dask.config.set({"amorsize.training-dir": None}):
        home = pwd.getpwuid(os.getuid()).pw_dir
        assert config.default_training_dir() == pathlib.Path(home) / ".cache" / "amorsize_dask" / "training"


def test_no_home_at_all_is_not_a_folder_named_tilde(monkeypatch):
    """HOME unset and a uid without a passwd entry (a container run as an arbitrary uid):
    the training directory was the relative ``~/.cache/...``, a folder named ``~`` in each
    working directory (hunt 19). It is in the temporary directory, per user, then."""
    import pwd
    import tempfile

    def no_entry(uid):
        raise KeyError(f"getpwuid(): uid not found: {uid}")

    monkeypatch.delenv("XDG_CACHE_HOME", raising=False)
    monkeypatch.delenv("HOME", raising=False)
    monkeypatch.setattr(pwd, "getpwuid", no_entry)
    with dask.config.set({"amorsize.training-dir": None}):
        found = config.default_training_dir()
    assert found.is_absolute(), found
    assert found.parent == pathlib.Path(tempfile.gettempdir()) / f"amorsize_dask-{os.getuid()}"

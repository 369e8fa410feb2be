"""The package's layout: each module's public names are listed and exist."""

import importlib
import pkgutil

import amorsize_dask


def _modules():
    for info in pkgutil.walk_packages(amorsize_dask.__path__, "amorsize_dask."):
        if ".bench" not in info.name and not info.name.endswith("__main__"):
            yield importlib.import_module(info.name)


def test_every_name_in_all_exists_and_is_public():
    listed = 0
    for module in _modules():
        for name in getattr(module, "__all__", ()):
            assert hasattr(module, name), f"{module.__name__}.__all__ names {name!r}, which it lacks"
            assert not name.startswith("_"), f"{module.__name__}.__all__ lists private {name!r}"
            listed += 1
    assert listed > 100


def test_the_process_workers_module_is_public():
    names = {module.__name__ for module in _modules()}
    assert "amorsize_dask.engines.process_worker" in names
    assert not any(name.rsplit(".", 1)[-1].startswith("_") for name in names - {"amorsize_dask.__init__"})

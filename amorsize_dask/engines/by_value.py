"""The user's modules whose code goes to the process workers by value, not by name.

cloudpickle sends a module's function by reference (its module and name): a worker
imports the module itself. Three kinds of module must travel by value instead (cloudpickle's
``register_pickle_by_value``), as ``__main__``'s code always does:

- one edited on disk since this process imported it (:func:`.worker_start.edited_since_imported`):
  a worker importing it afresh would run other code than the caller;
- one that a worker importing afresh cannot find by name (:func:`not_importable_by_name`, made
  at run time too):
  a script's module loaded by path (``importlib.util.spec_from_file_location``, its folder
  not on ``sys.path``). ``Pool().map`` forks and runs it; the forkserver's workers raised
  ``ModuleNotFoundError: No module named 'helpers'``. Once found, such a module's classes
  go by value in the items too (:func:`registered`);
- while it is being imported, the call made by its body (a table computed at import
  time): a worker importing it by name ran that body again, and its map, whose workers did
  the same (hunt 20: 22.6 s for 1 s of items, or hundreds of processes until killed).

>>> import json
>>> not_importable_by_name(json.dumps)
[]
"""

from __future__ import annotations

import contextlib
import importlib.machinery
import os
import sys
import threading

import cloudpickle

from .module_state import names_read_by
from .worker_start import edited_since_imported

__all__ = ["not_importable_by_name", "items_by_value", "modules_by_value", "registered"]

# Modules of this process found not importable by name (their names); the answers, by
# module name and sys.path.
_NOT_IMPORTABLE: set[str] = set()
_FOUND: dict[tuple, bool] = {}
# cloudpickle's registry is global: one registration at a time.
_REGISTRY_LOCK = threading.Lock()


def not_importable_by_name(func) -> list:
    """The modules whose code a run of ``func`` uses (:func:`.module_state.names_read_by`:
    its own, the user's it reaches) that a worker could not import by their name: loaded
    from a Python file that this ``sys.path`` does not lead to, or made at run time
    (``types.ModuleType`` and ``exec``, no file; hunt 17)."""
    return _not_importable(names_read_by(func))


def items_by_value(chunk) -> list:
    """The modules whose classes a chunk's items must carry by value: every module found not
    importable by name so far, and the module of its first item's class if a worker could
    not import it now (hunt 17: items of a class from a module loaded by path, mapped by a
    function that does not name that module, raised ModuleNotFoundError in the
    forkserver's workers)."""
    first = chunk[0] if isinstance(chunk, list) and chunk else None
    own = _not_importable([getattr(type(first), "__module__", None)]) if first is not None else []
    known = [sys.modules[name] for name in sorted(_NOT_IMPORTABLE) if name in sys.modules]
    return known + [module for module in own if module not in known]


def _not_importable(names) -> list:
    out = []
    path = tuple(sys.path)
    for name in names:
        module = sys.modules.get(name) if name and name not in ("__main__", "builtins") else None
        if module is None:
            continue
        if _being_imported(module):  # not remembered: imported, it is found by name
            out.append(module)
            continue
        key = (name, path)
        if key not in _FOUND:
            _FOUND[key] = _found_by_name(module)
        if not _FOUND[key]:
            _NOT_IMPORTABLE.add(name)
            out.append(module)
    return out


def modules_by_value(func) -> list:
    """The modules ``func``'s pickle must carry by value (both kinds above)."""
    edited = edited_since_imported(func)
    return edited + [module for module in not_importable_by_name(func) if module not in edited]


def _being_imported(module) -> bool:
    """Is ``module``'s body running (what ``import`` calls a partially initialized module)?"""
    return bool(getattr(getattr(module, "__spec__", None), "_initializing", False))


@contextlib.contextmanager
def registered(modules: list):
    """While in it, cloudpickle pickles ``modules`` by value."""
    if not modules:
        yield
        return
    with _REGISTRY_LOCK:
        for module in modules:
            cloudpickle.register_pickle_by_value(module)
        try:
            yield
        finally:
            for module in modules:
                cloudpickle.unregister_pickle_by_value(module)


def _found_by_name(module) -> bool:
    """Would an interpreter with this ``sys.path`` import ``module``'s own file by its name?
    Only modules loaded from a Python source file are asked (others: yes, as before), of
    every finder here (``sys.path``'s, an editable install's; one that the script installed
    and the workers lack makes a module look importable: as before)."""
    spec = getattr(module, "__spec__", None)
    if spec is None:  # made at run time (types.ModuleType): no finder leads to it
        return getattr(module, "__file__", None) is not None
    if not isinstance(spec.loader, importlib.machinery.SourceFileLoader) or not spec.origin:
        return True
    found, search = None, None
    parts = module.__name__.split(".")
    for i in range(len(parts)):
        found = _find(".".join(parts[: i + 1]), search)
        if found is None:
            return False
        search = found.submodule_search_locations
    return found.origin is not None and os.path.realpath(found.origin) == os.path.realpath(spec.origin)


def _find(name: str, search):
    for finder in sys.meta_path:
        find_spec = getattr(finder, "find_spec", None)
        if find_spec is None:
            continue
        try:
            spec = find_spec(name, search)
        except Exception:  # a finder that fails on this name: not found by it
            continue
        if spec is not None:
            return spec
    return None

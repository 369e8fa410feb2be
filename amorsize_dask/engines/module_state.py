"""A function's module state, sent with it to a process pool that did not fork for its run.

cloudpickle sends a function of an importable module by reference: a worker runs it with
the module as the worker has it (imported afresh by a forkserver's worker, or as the
caller had it when the pool forked), not as the caller has it now. A script that set
``jobmod.FACTOR = 5`` between two calls got all 20,000 results of the second call with
the old factor from the running pool (``builtins.map`` uses the new one); so did a
script's own function calling ``jobmod.work`` (1,999 of 2,000 results old, in a
notebook too). So the module-level values the function reads travel with it, and the
worker sets them before each chunk: those of its own module (through the module's own
functions it calls too), and those of the user's modules it reaches, by name
(``jobmod.work``, ``jobmod.FACTOR``, ``from jobmod import work``) or through their
functions. Installed libraries are not followed (their state is theirs). Names that
code of this process added to ``builtins`` (IPython's ``display``) travel too. Modules,
functions, classes and dunder names are code, not state: they stay as the worker has
them (a module edited on disk is another matter: :func:`.worker_start.module_stamps`); so
does a value that cannot be pickled, and a bare ``object()`` (a sentinel, whose identity
is its use).

>>> import json
>>> [(state.module, sorted(state.values)[:2]) for state in states_of(json.dumps)]
[('json', ['_default_encoder'])]
>>> states_of(len)  # a builtin: no module state
[]
"""

from __future__ import annotations

import builtins
import os
import site
import sys
import sysconfig
import types

import cloudpickle

from .pickling import dumps_function

__all__ = ["ModuleState", "WithModuleState", "StatefulFunction", "names_read_by", "function_of", "states_of",
           "with_state", "is_users_module"]

_CODE_KINDS = (types.ModuleType, type, types.FunctionType, types.BuiltinFunctionType, types.MethodType,
               types.BuiltinMethodType)


class ModuleState:
    """The module-level values (pickled) that a function of ``module`` reads."""

    def __init__(self, module: str, values: dict[str, bytes]):
        self.module, self.values = module, values


def states_of(func) -> list[ModuleState]:
    """What ``func`` reads of modules' state, as the caller has it now: its own module's
    (none for ``__main__``: cloudpickle sends that by value), and the user's modules' it
    reaches; empty when it reads none."""
    states = []
    for name, keys in names_read_by(func).items():
        values = _pickled_values(sys.modules[name].__dict__, keys, code_too=name == "builtins")
        if values:
            states.append(ModuleState(name, values))
    return states


def names_read_by(func) -> dict[str, set[str]]:
    """The global names ``func`` reads, by module: of its own module (an importable one)
    and of the user's modules it reaches; the modules whose state and code its run uses.

    >>> sorted(names_read_by(names_read_by))
    ['amorsize_dask.engines.module_state']
    """
    inner = function_of(func)
    return {} if inner is None else _names_read(inner.__code__, inner.__globals__)


def function_of(func) -> types.FunctionType | None:
    """The Python function whose code a call of ``func`` runs: itself, a
    ``functools.partial``'s (or StarCall's) ``func``, a bound method's, a callable
    instance's class's ``__call__``; None for a builtin.

    >>> function_of(len) is None, function_of(function_of) is function_of
    (True, True)
    """
    inner = getattr(func, "func", func)  # functools.partial, StarCall
    inner = getattr(inner, "__func__", inner)  # a bound method
    if not isinstance(inner, types.FunctionType):
        inner = getattr(type(inner), "__call__", None)  # a callable instance: its class's __call__
    return inner if isinstance(inner, types.FunctionType) else None


def _pickled_values(glb: dict, keys, code_too: bool = False) -> dict[str, bytes]:
    values = {}
    for key in sorted(keys):
        value = glb[key]
        if key.startswith("__") or (isinstance(value, _CODE_KINDS) and not code_too) or type(value) is object:
            continue
        try:
            values[key] = dumps_function(value)  # a memmap as its file, as with the function
        except Exception:  # it stays as the worker has it
            continue
    return values


def _names_read(code, glb: dict) -> dict[str, set[str]]:
    """Global names read, by module: by ``code`` (nested code too) and the functions it
    calls, of its own module (an importable one, not ``__main__``) and of the user's
    modules it reaches (:func:`_is_users`), as ``module.name`` or imported names."""
    own = _module_of(glb)
    found: dict[str, set[str]] = {own: set()} if own else {}
    seen: set = set()
    todo = [(code, glb, own)]
    while todo:
        current, names, module = todo.pop()
        if current in seen:
            continue
        seen.add(current)
        todo += [(c, names, module) for c in current.co_consts if isinstance(c, types.CodeType)]
        for key in current.co_names:
            if key not in names:
                if key in _added_builtins():  # IPython's display(): a worker that did not fork lacks it
                    found.setdefault("builtins", set()).add(key)
                continue
            if module is not None:
                found.setdefault(module, set()).add(key)
            todo += _reached(names[key], current.co_names, own, found)
    return found


_ADDED: tuple[int, frozenset] = (0, frozenset())


def _added_builtins() -> frozenset:
    """Names that code of this process added to ``builtins`` (IPython's ``display``), not
    the interpreter's own or ``site``'s."""
    global _ADDED
    names = vars(builtins)
    if _ADDED[0] != len(names):
        added = frozenset(key for key, value in names.items() if not key.startswith("__") and getattr(
            value, "__module__", type(value).__module__) not in ("builtins", "_sitebuiltins", "io"))
        _ADDED = (len(names), added)
    return _ADDED[1]


def _reached(value, attributes, own, found) -> list:
    """The code to follow from a global ``value``: a function of the same module or of a
    user's module; for a user's module, its functions and values named in ``attributes``
    (``jobmod.work``: both names are in the reading code's ``co_names``), which are
    recorded in ``found``."""
    if isinstance(value, types.FunctionType):
        module = _module_of(value.__globals__)
        if module == own or _is_users(module) or (own is None and value.__globals__.get("__name__") == "__main__"):
            if module is not None:
                found.setdefault(module, set())
            return [(value.__code__, value.__globals__, module)]
        return []
    if not isinstance(value, types.ModuleType) or not _is_users(value.__name__):
        return []
    found.setdefault(value.__name__, set())
    todo = []
    for attribute in attributes:
        if attribute not in value.__dict__:
            continue
        found.setdefault(value.__name__, set()).add(attribute)
        inner = value.__dict__[attribute]
        if isinstance(inner, types.FunctionType) and inner.__globals__ is value.__dict__:
            todo.append((inner.__code__, inner.__globals__, value.__name__))
    return todo


def _module_of(glb: dict) -> str | None:
    """The importable module whose namespace ``glb`` is (None for ``__main__`` or code run
    by ``exec``)."""
    name = glb.get("__name__")
    module = sys.modules.get(name) if name and name != "__main__" else None
    return name if module is not None and getattr(module, "__dict__", None) is glb else None


_USERS: dict[str, bool] = {}


def is_users_module(name: str | None) -> bool:
    """Is module ``name`` the user's: ``__main__``, or :func:`_is_users`?"""
    return name == "__main__" or _is_users(name)


def _is_users(name: str | None) -> bool:
    """Is module ``name`` the user's own: a file outside the standard library and the
    installed packages (and not this package)?"""
    if name is None or name == "__main__":
        return False
    known = _USERS.get(name)
    if known is None:
        path = getattr(sys.modules.get(name), "__file__", None)
        known = bool(path) and not name.startswith("amorsize_dask") and not os.path.realpath(path).startswith(
            _library_roots())
        _USERS[name] = known
    return known


_ROOTS: tuple[str, ...] = ()


def _library_roots() -> tuple[str, ...]:
    global _ROOTS
    if not _ROOTS:
        paths = sysconfig.get_paths()
        roots = {paths.get(k) for k in ("stdlib", "platstdlib", "purelib", "platlib")}
        roots |= set(getattr(site, "getsitepackages", list)()) | {getattr(site, "getusersitepackages", str)()}
        _ROOTS = tuple(os.path.realpath(r) + os.sep for r in roots if r)
    return _ROOTS


def with_state(func):
    """``func`` with its modules' state for pickling (:class:`WithModuleState`), or ``func``."""
    states = states_of(func)
    return WithModuleState(func, states) if states else func


class WithModuleState:
    """Pickles as the function and its modules' values; unpickled in a worker, a
    :class:`StatefulFunction`."""

    def __init__(self, func, states: list[ModuleState]):
        self.func, self.states = func, states

    def __reduce__(self):
        return _restored, (self.func, {state.module: state.values for state in self.states})


def _restored(func, values: dict[str, dict[str, bytes]]) -> "StatefulFunction":
    return StatefulFunction(func, {module: {key: cloudpickle.loads(data) for key, data in pickled.items()}
                                   for module, pickled in values.items()})


class StatefulFunction:
    """In a worker: the function, and the caller's module values it runs with (set before
    each chunk: another run may have set others since)."""

    def __init__(self, func, values: dict[str, dict]):
        self.func, self.values = func, values

    def applied(self):
        """The function, its modules' values set as the caller had them."""
        for module, values in self.values.items():
            found = sys.modules.get(module)
            if found is not None:
                found.__dict__.update(values)
        return self.func

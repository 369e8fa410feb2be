"""A module function's state, sent with it to a process pool that did not fork for its run.

cloudpickle sends a function of an importable module by reference: a worker runs it with
the module as the worker has it (imported afresh by a forkserver's worker, or as the
caller had it when the pool forked), not as the caller has it now. A script that set
``jobmod.FACTOR = 5`` between two calls got all 20,000 results of the second call with
the old factor from the running pool (``builtins.map`` uses the new one). So the
module-level values the function reads (through the module's own functions it calls
too) travel with it, and the worker sets them before each chunk. Modules, functions,
classes and dunder names are code, not state: they stay as the worker has them (a module
edited on disk is another matter: :func:`.worker_start.module_stamp`); so does a value
that cannot be pickled, and a bare ``object()`` (a sentinel, whose identity is its use).

>>> import json
>>> state_of(json.dumps).module, sorted(state_of(json.dumps).values)[:2]
('json', ['_default_encoder'])
>>> state_of(len) is None  # a builtin: no module state
True
"""

from __future__ import annotations

import sys
import types

import cloudpickle

__all__ = ["ModuleState", "WithModuleState", "StatefulFunction", "state_of", "with_state"]

_CODE_KINDS = (types.ModuleType, type, types.FunctionType, types.BuiltinFunctionType, types.MethodType,
               types.BuiltinMethodType)


class ModuleState:
    """The module-level values (pickled) that a function of ``module`` reads."""

    def __init__(self, module: str, values: dict[str, bytes]):
        self.module, self.values = module, values


def state_of(func) -> ModuleState | None:
    """What ``func`` reads of its module's state, as the caller has it now; None for a
    function of ``__main__`` (cloudpickle sends it by value, its globals with it), of no
    importable module, or that reads no state."""
    inner = getattr(func, "func", func)  # functools.partial
    if not hasattr(inner, "__code__") and not hasattr(inner, "__func__"):
        inner = getattr(type(inner), "__call__", inner)  # a callable instance: its class's __call__
    inner = getattr(inner, "__func__", inner)  # a bound method
    code, glb = getattr(inner, "__code__", None), getattr(inner, "__globals__", None)
    name = glb.get("__name__") if isinstance(glb, dict) else None
    module = sys.modules.get(name) if name and name != "__main__" else None
    if code is None or module is None or getattr(module, "__dict__", None) is not glb:
        return None
    values = {}
    for key in sorted(_names_read(code, glb)):
        value = glb[key]
        if key.startswith("__") or isinstance(value, _CODE_KINDS) or type(value) is object:
            continue
        try:
            values[key] = cloudpickle.dumps(value)
        except Exception:  # it stays as the worker has it
            continue
    return ModuleState(name, values) if values else None


def _names_read(code, glb: dict) -> set[str]:
    """Global names read by ``code`` (nested code too) and by the functions of the same
    module that it calls, that the module defines."""
    found: set[str] = set()
    seen: set = set()
    todo = [code]
    while todo:
        current = todo.pop()
        if current in seen:
            continue
        seen.add(current)
        todo += [c for c in current.co_consts if isinstance(c, types.CodeType)]
        for key in current.co_names:
            if key not in glb:
                continue
            found.add(key)
            value = glb[key]
            if isinstance(value, types.FunctionType) and value.__globals__ is glb:
                todo.append(value.__code__)
    return found


def with_state(func):
    """``func`` with its module state for pickling (:class:`WithModuleState`), or ``func``."""
    state = state_of(func)
    return func if state is None else WithModuleState(func, state)


class WithModuleState:
    """Pickles as the function (by reference) and its module's values; unpickled in a
    worker, a :class:`StatefulFunction`."""

    def __init__(self, func, state: ModuleState):
        self.func, self.state = func, state

    def __reduce__(self):
        return _restored, (self.func, self.state.module, self.state.values)


def _restored(func, module: str, values: dict[str, bytes]) -> "StatefulFunction":
    return StatefulFunction(func, module, {key: cloudpickle.loads(data) for key, data in values.items()})


class StatefulFunction:
    """In a worker: the function, and the caller's module values it runs with (set before
    each chunk: another run may have set others since)."""

    def __init__(self, func, module: str, values: dict):
        self.func, self.module, self.values = func, module, values

    def applied(self):
        """The function, its module's values set as the caller had them."""
        found = sys.modules.get(self.module)
        if found is not None:
            found.__dict__.update(self.values)
        return self.func

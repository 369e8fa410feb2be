"""Function identity: a key that is equal for the same code in any process.

``function_key`` hashes what decides a function's cost: its bytecode, constants,
defaults, closure values and, recursively, the globals it calls — and, for state that is
not a simple value (a partial's array argument, the attributes of a bound method's
instance), a cheap size signature: type, dtype and ``log2`` size bucket (see
:func:`size_signature`), so that ``partial(f, np.ones(10))`` and ``partial(f,
np.ones(10**7))`` are different workloads, while ``Adder(1)`` and ``Adder(5)`` are one.
It never uses
``id()``, ``hash()`` of strings or memory addresses, so keys match across
processes and interpreter restarts. Names are not part of a Python function's
key (two functions with the same code share one); ``function_name`` is for humans.

>>> function_key(lambda x: x * 2) == function_key(lambda x: x * 2)
True
>>> function_key(lambda x: x * 2) == function_key(lambda x: x * 1000)
False
>>> len(function_key(len)), function_name(len)
(16, 'builtins.len')
"""

from __future__ import annotations

import functools
import gc
import hashlib
import itertools
import logging
import types
import weakref
from typing import Any, Callable

__all__ = ["attribute_values", "function_key", "function_name", "global_names", "workload_key"]

# How many levels of called globals / captured functions enter a key. Deeper
# functions are represented by their own code only.
MAX_DEPTH = 3
# Longest repr of a constant that is kept verbatim (longer ones are hashed).
_MAX_REPR = 4096
_SIMPLE = (type(None), bool, int, float, complex, str, bytes)
# Attributes of an instance whose sizes enter the key of its bound methods / __call__
# (bounded: a key must cost microseconds, whatever the instance holds).
MAX_STATE_ATTRS = 16
_CONTAINERS = (list, tuple, dict, set, frozenset, bytearray, str, bytes)
# co_flags that describe the code itself (generator, varargs, ...); the
# ``from __future__`` bits above them do not change what a function does.
_CODE_FLAGS = 0xFFFF
_C_CALLABLES = (
    types.BuiltinFunctionType,
    types.WrapperDescriptorType,
    types.MethodWrapperType,
    types.MethodDescriptorType,
    types.ClassMethodDescriptorType,
)

_cache: "weakref.WeakKeyDictionary[Any, str]" = weakref.WeakKeyDictionary()


def function_key(func: Callable) -> str:
    """16 lowercase hex chars identifying ``func``'s behaviour, stable across processes.

    Cached per function object (weakly), so a repeated call costs microseconds.
    The cache assumes a function's code, globals and closure are not rebound
    after its first call.
    """
    cacheable = isinstance(func, (types.FunctionType, types.MethodType, functools.partial))
    if cacheable:
        try:
            return _cache[func]
        except KeyError:
            pass
        except TypeError:  # unhashable (e.g. a method of an object with odd __eq__)
            cacheable = False
    key = _digest(_describe(func, 0, ()))
    if cacheable:
        try:
            _cache[func] = key
        except TypeError:
            pass
    return key


def function_name(func: Callable) -> str:
    """``module.qualname`` of ``func`` for humans (<= 200 chars, no control characters).

    >>> function_name(function_name)
    'amorsize_dask.target.workload.function_name'
    """
    if isinstance(func, functools.partial):
        name = f"functools.partial({function_name(func.func)})"
    elif isinstance(func, types.MethodType):
        name = _qualified(func.__func__)
    elif not hasattr(func, "__qualname__") and not hasattr(func, "__name__"):
        name = _qualified(type(func))  # callable instance
    else:
        name = _qualified(func)
    name = "".join(ch for ch in name if ch.isprintable())
    return name[:200]


def _qualified(obj: Any) -> str:
    module = getattr(obj, "__module__", None)
    if module is None and isinstance(getattr(obj, "__self__", None), types.ModuleType):
        module = obj.__self__.__name__
    if module is None and isinstance(obj, types.BuiltinFunctionType) and obj.__self__ is None:
        module = "builtins"
    qualname = getattr(obj, "__qualname__", None) or getattr(obj, "__name__", None)
    qualname = qualname or type(obj).__qualname__
    return f"{module}.{qualname}" if module else str(qualname)


def _digest(parts: Any) -> str:
    return hashlib.sha256(repr(parts).encode("utf-8", "backslashreplace")).hexdigest()[:16]


def _describe(func: Any, depth: int, stack: tuple) -> Any:
    """A nested, deterministic description of ``func`` (hashed by ``_digest``).

    ``stack`` holds the Python functions being described (cycle guard); at
    ``depth == 0`` it is empty, so wrappers may delegate to the cached
    ``function_key`` without changing the result.
    """
    if isinstance(func, types.FunctionType):
        return _describe_function(func, depth, stack)
    if isinstance(func, types.MethodType):
        bound = func.__self__
        owner = bound if isinstance(bound, type) else type(bound)
        state = None if isinstance(bound, type) else state_signature(bound)
        return ("method", _inner(func.__func__, depth, stack), _qualified(owner), state)
    if isinstance(func, functools.partial):
        kwargs = sorted((k, _constant(v)) for k, v in (func.keywords or {}).items())
        args = [_constant(a) for a in func.args]
        return ("partial", _inner(func.func, depth, stack), args, kwargs)
    if isinstance(func, _C_CALLABLES) or _is_ufunc(func):
        return ("c", _qualified(func))
    if isinstance(func, type):
        init = func.__dict__.get("__init__")
        init_key = _inner(init, depth, stack) if isinstance(init, types.FunctionType) else None
        return ("class", _qualified(func), init_key)
    call = getattr(type(func), "__call__", None)
    if isinstance(call, types.FunctionType):
        return ("instance", _inner(call, depth, stack), _qualified(type(func)), state_signature(func))
    return ("object", _qualified(func))


def _inner(func: Any, depth: int, stack: tuple) -> Any:
    return function_key(func) if depth == 0 else _describe(func, depth, stack)


def _is_ufunc(obj: Any) -> bool:
    t = type(obj)
    return t.__name__ == "ufunc" and t.__module__ == "numpy"


def _describe_function(func: types.FunctionType, depth: int, stack: tuple) -> Any:
    for i, seen in enumerate(stack):
        if seen is func:
            return ("cycle", i)
    code = func.__code__
    if depth >= MAX_DEPTH:
        return ("deep", _code(code))
    stack = stack + (func,)
    globals_ = func.__globals__
    refs = []
    for name in sorted(global_names(code)):
        if name in globals_:
            refs.append((name, _reference(globals_[name], depth + 1, stack)))
    cells = []
    for cell in func.__closure__ or ():
        try:
            value = cell.cell_contents
        except ValueError:
            cells.append("<empty>")
            continue
        cells.append(_reference(value, depth + 1, stack))
    defaults = [_constant(d) for d in func.__defaults__ or ()]
    kwdefaults = sorted((k, _constant(v)) for k, v in (func.__kwdefaults__ or {}).items())
    return ("function", _code(code), defaults, kwdefaults, cells, refs)


def global_names(code: types.CodeType) -> set:
    """Names ``code`` and the code nested in it (comprehensions, lambdas) look up: its
    globals among them.

    >>> sorted(global_names((lambda x: [len(y) for y in TABLE[x]]).__code__))
    ['TABLE', 'len']
    """
    names = set(code.co_names)
    for const in code.co_consts:
        if isinstance(const, types.CodeType):
            names |= global_names(const)
    return names


def _reference(value: Any, depth: int, stack: tuple) -> Any:
    """A global or a closure cell: functions recursively, constants by value."""
    if isinstance(value, types.ModuleType):
        return ("module", value.__name__)
    if isinstance(value, (types.FunctionType, types.MethodType, functools.partial)):
        return _describe(value, depth, stack)
    if isinstance(value, _C_CALLABLES) or _is_ufunc(value):
        return ("c", _qualified(value))
    if isinstance(value, type):
        return ("class", _qualified(value))
    return _constant(value)


def _constant(value: Any) -> Any:
    """Simple values (and tuples / frozensets of them) by repr, else the type's name."""
    if isinstance(value, _SIMPLE):
        text = repr(value)
        if len(text) > _MAX_REPR:
            text = "sha256:" + hashlib.sha256(text.encode("utf-8", "backslashreplace")).hexdigest()
        return (type(value).__name__, text)
    if type(value) is tuple:
        return ("tuple", [_constant(v) for v in value])
    if type(value) is frozenset:  # iteration order depends on PYTHONHASHSEED: sort
        return ("frozenset", sorted((_constant(v) for v in value), key=repr))
    if isinstance(value, types.CodeType):
        return _code(value)
    return ("type", _qualified(type(value)), size_signature(value))


def size_signature(value: Any) -> Any:
    """What decides the cost of working on ``value``, cheaply: its size, not its content.

    Arrays (anything with ``shape`` and ``nbytes``, e.g. numpy): dtype, ndim and the
    ``log2`` bucket of their bytes; containers: the ``log2`` bucket of their length;
    anything else: nothing beyond its type (which the caller records).

    >>> import numpy as np
    >>> size_signature(np.ones(10)), size_signature(np.ones(11)), size_signature([1, 2, 3])
    (('array', 'float64', 1, 7), ('array', 'float64', 1, 7), ('len', 2))
    >>> size_signature(np.ones(10_000_000))
    ('array', 'float64', 1, 27)
    """
    kind = type(value)
    if isinstance(value, _CONTAINERS):
        return ("len", len(value).bit_length())
    module = getattr(kind, "__module__", "") or ""
    if module.split(".")[0] in ("numpy", "pandas"):  # never touch other objects' properties
        try:
            nbytes = value.nbytes if hasattr(value, "nbytes") else value.memory_usage(deep=False).sum()
            return ("array", str(getattr(value, "dtype", "")), int(getattr(value, "ndim", 0)),
                    int(nbytes).bit_length())
        except Exception:
            return None
    return None


def state_signature(obj: Any) -> Any:
    """Size signatures of an instance's first attributes (:func:`attribute_values`), or
    None when it has none.

    >>> class Model:
    ...     def __init__(self, n): self.weights, self.name = [0.0] * n, "m"
    >>> state_signature(Model(10)) == state_signature(Model(12)), state_signature(Model(10**5))
    (True, [('list', ('len', 17)), ('str', ('len', 1))])
    """
    values = attribute_values(obj)[:MAX_STATE_ATTRS]
    if not values:
        return None
    return sorted(((type(value).__name__, size_signature(value)) for value in values), key=repr)


def attribute_values(obj: Any) -> list:
    """The values of ``obj``'s attributes (its ``__dict__``'s or its slots'), read without
    asking for ``obj.__dict__``: on CPython 3.11+ that builds the dictionary of an instance
    whose attributes were inline, and every later attribute access on the instance is
    slower (a method reading ``self.table`` in a loop: 40 -> 55 ms for 3,000 items after one
    ``ad.map(index.score, ...)``; tests/test_instance_state.py).

    >>> class Point:
    ...     def __init__(self): self.x, self.y = 1, "a"
    >>> p = Point()
    >>> attribute_values(p), attribute_values(p) == list(vars(p).values())
    ([1, 'a'], True)
    """
    kind = type(obj)
    values = [ref for ref in gc.get_referents(obj) if ref is not kind]
    if len(values) == 1 and type(values[0]) is dict and _is_attribute_dict(obj, values[0]):
        return list(values[0].values())  # its __dict__, built already (by its user, or a pickle)
    return values


def _is_attribute_dict(obj: Any, state: dict) -> bool:
    """Is ``state`` ``obj.__dict__`` (and not the one attribute of ``obj``, a dict)? Its
    first keys name attributes of ``obj`` whose values it holds (looked up without running
    a descriptor)."""
    for key in itertools.islice(state, 3):
        if type(key) is not str or _data_descriptor(type(obj), key):
            return False
        try:
            if object.__getattribute__(obj, key) is not state[key]:
                return False
        except Exception:
            return False
    return True


def _data_descriptor(kind: type, name: str) -> bool:
    for klass in kind.__mro__:
        if name in klass.__dict__:
            attr = type(klass.__dict__[name])
            return hasattr(attr, "__set__") or hasattr(attr, "__delete__")
    return False


def _code(code: types.CodeType) -> Any:
    """Bytecode, constants and names; no file names, line numbers or object names."""
    return (
        "code",
        code.co_code.hex(),
        [_constant(c) for c in code.co_consts],
        list(code.co_names),
        list(code.co_varnames),
        list(code.co_freevars),
        list(code.co_cellvars),
        code.co_argcount,
        code.co_posonlyargcount,
        code.co_kwonlyargcount,
        code.co_flags & _CODE_FLAGS,
    )


def workload_key(func) -> str:
    """The function's key; a function that cannot be keyed gets one from its name."""
    try:
        return function_key(func)
    except Exception as exc:  # an exotic callable must never fail the user's map
        logging.getLogger("amorsize_dask").debug("no function key for %r: %s", func, exc)
        return hashlib.sha256(function_name(func).encode()).hexdigest()[:16]

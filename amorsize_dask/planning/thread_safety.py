"""Which workloads cannot run on threads: those that showed it (this process's memory of
it), and those whose code changes what every thread of a process shares
(:func:`changes_process_state`).

The two-thread probe of :mod:`~amorsize_dask.planning.sampling` runs a function on threads
before any plan is made; an exception seen only there marks the workload here, and its
record carries ``thread_safe: 0`` so that later processes know it too
(:meth:`~amorsize_dask.target.target.Target.thread_safe`).

>>> mark_unsafe("0123456789abcdef"); is_marked_unsafe("0123456789abcdef")
True
>>> is_marked_unsafe("fedcba9876543210")
False
"""

from __future__ import annotations

import dis
import functools
import threading
import types

from ..learning.index import THREAD_SAFE

__all__ = ["FEATURE", "mark_unsafe", "is_marked_unsafe", "changes_process_state"]

# The record feature that says a workload failed on threads (0); records hold numbers only.
# The learner keeps it for the workload whatever records follow.
FEATURE = THREAD_SAFE

_UNSAFE: set[str] = set()
_LOCK = threading.Lock()


def mark_unsafe(workload: str) -> None:
    """Remember that ``workload`` (a function key) raised only when run on threads."""
    with _LOCK:
        _UNSAFE.add(workload)


def is_marked_unsafe(workload: str) -> bool:
    """True when this process saw ``workload`` fail only on threads."""
    with _LOCK:
        return workload in _UNSAFE


# Names whose call changes what every thread of the process shares. Hunt 15: an item that
# os.chdir-ed into its folder (and back) read another item's data in 298 of 300 on threads.
_SHARED = {
    "chdir": "the working directory (chdir)", "fchdir": "the working directory (fchdir)",
    "putenv": "the environment (putenv)", "unsetenv": "the environment (unsetenv)",
    "umask": "the umask", "setlocale": "the locale (setlocale)",
    "redirect_stdout": "sys.stdout (redirect_stdout)", "redirect_stderr": "sys.stderr (redirect_stderr)",
}
# os.environ's methods that change it (reads: get, items, copy, ...).
_ENVIRON_WRITES = {"update", "pop", "popitem", "setdefault", "clear", "__setitem__", "__delitem__"}
# Instructions that load a name (not a string constant that happens to spell one).
_NAME_LOADS = {"LOAD_GLOBAL", "LOAD_NAME", "LOAD_ATTR", "LOAD_METHOD", "LOAD_DEREF", "IMPORT_FROM"}
# After ``environ`` is loaded, these end the expression that used it without writing it.
_ENVIRON_READ_ENDS = {"BINARY_SUBSCR", "CALL", "PRECALL", "RETURN_VALUE", "POP_TOP", "STORE_FAST", "STORE_NAME",
                      "STORE_GLOBAL", "STORE_DEREF", "COMPARE_OP", "CONTAINS_OP", "GET_ITER"}


def changes_process_state(func) -> str | None:
    """What ``func`` changes that every thread of this process shares (the working
    directory, the environment, ...), read from its code and that of the functions of its
    own module it calls; None when nothing. On threads, items would see each other's.

    >>> import os
    >>> changes_process_state(os.getcwd) is None
    True
    """
    inner = getattr(func, "func", func)  # a StarCall or functools.partial
    inner = getattr(inner, "__func__", inner)  # a bound method
    if not isinstance(inner, types.FunctionType):
        inner = getattr(type(inner), "__call__", None)  # a callable instance
    if not isinstance(inner, types.FunctionType):
        return None
    todo, seen = [inner], set()
    while todo:
        current = todo.pop()
        if current.__code__ in seen:
            continue
        seen.add(current.__code__)
        found, names = _changes_in(current.__code__)
        if found:
            return found
        glb = current.__globals__
        todo += [glb[n] for n in names if isinstance(glb.get(n), types.FunctionType) and glb[n].__globals__ is glb]
    return None


@functools.lru_cache(maxsize=1024)
def _changes_in(code) -> tuple[str | None, frozenset]:
    """(what ``code`` and the code nested in it change of the shared state, the global names
    they read)."""
    names, todo = set(), [code]
    while todo:
        current = todo.pop()
        names.update(current.co_names)
        todo += [c for c in current.co_consts if isinstance(c, types.CodeType)]
        instructions = list(dis.get_instructions(current))
        for i, ins in enumerate(instructions):
            if ins.opname in _NAME_LOADS and ins.argval in _SHARED:
                return _SHARED[ins.argval], frozenset()
            if ins.opname == "STORE_ATTR" and ins.argval in ("stdout", "stderr"):
                return f"sys.{ins.argval}", frozenset()
            if ins.opname in _NAME_LOADS and ins.argval == "environ" and _writes(instructions[i + 1:i + 12]):
                return "the environment (os.environ)", frozenset()
    return None, frozenset(names)


def _writes(following) -> bool:
    """Do the instructions after ``environ`` was loaded write it?"""
    for ins in following:
        if ins.opname in ("STORE_SUBSCR", "DELETE_SUBSCR"):
            return True
        if ins.opname in ("LOAD_METHOD", "LOAD_ATTR"):
            return ins.argval in _ENVIRON_WRITES
        if ins.opname in _ENVIRON_READ_ENDS:
            return False
    return False

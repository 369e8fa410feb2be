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


# What changes what every thread of a process shares, by its module and name. Hunt 15: an
# item that os.chdir-ed into its folder (and back) read another item's data in 298 of 300
# on threads. (locale.setlocale is out: called with one argument, it only reads.)
_SHARED = {
    ("os", "chdir"): "the working directory (os.chdir)", ("os", "fchdir"): "the working directory (os.fchdir)",
    ("os", "putenv"): "the environment (os.putenv)", ("os", "unsetenv"): "the environment (os.unsetenv)",
    ("os", "umask"): "the umask (os.umask)", ("contextlib", "chdir"): "the working directory (contextlib.chdir)",
    ("contextlib", "redirect_stdout"): "sys.stdout (redirect_stdout)",
    ("contextlib", "redirect_stderr"): "sys.stderr (redirect_stderr)",
    # A process has one alarm timer (and one of each interval timer), whose signal goes to
    # the main thread: hunt 21's per-item time limits cancelled each other on threads.
    ("signal", "alarm"): "the process's alarm timer (signal.alarm)",
    ("signal", "setitimer"): "the process's interval timers (signal.setitimer)",
    ("signal", "signal"): "the process's signal handlers (signal.signal)",
}
_ENVIRON = "the environment (os.environ)"
# os.environ's methods that change it (reads: get, items, copy, ...).
_ENVIRON_WRITES = {"update", "pop", "popitem", "setdefault", "clear", "__setitem__", "__delitem__", "__ior__"}
_GLOBAL_LOADS = {"LOAD_GLOBAL", "LOAD_NAME", "LOAD_DEREF"}
# After ``environ`` is loaded, these end the expression that used it without writing it.
_ENVIRON_READ_ENDS = {"BINARY_SUBSCR", "CALL", "PRECALL", "RETURN_VALUE", "POP_TOP", "STORE_NAME",
                      "STORE_GLOBAL", "STORE_DEREF", "COMPARE_OP", "CONTAINS_OP", "GET_ITER"}


def changes_process_state(func) -> str | None:
    """What ``func`` changes that every thread of this process shares (the working
    directory, the environment, ...), read from its code and that of the functions it calls
    of its own module and of the user's modules; None when nothing. On threads, items would
    see each other's. A name is resolved to what it holds (``os.chdir``, not a method
    ``chdir`` of the user's own object).

    >>> import os
    >>> changes_process_state(os.getcwd) is None
    True
    """
    from ..engines.module_state import function_of

    inner = function_of(func)
    if inner is None:
        return None
    todo, seen = [inner], set()
    while todo:
        current = todo.pop()
        if current.__code__ in seen:
            continue
        seen.add(current.__code__)
        uses, names = _scan(current.__code__)
        glb = current.__globals__
        found = _resolved(uses, names, glb)
        if found:
            return found
        todo += [glb[n] for n in names if isinstance(glb.get(n), types.FunctionType) and _users(glb[n])]
        todo += [f for f in (_module_function(glb.get(owner), attr) for kind, owner, attr in uses if kind == "attr")
                 if f is not None]
    return None


def _module_function(module, name):
    """``module.name`` when ``module`` is one of the user's and that is a function."""
    value = getattr(module, name, None) if isinstance(module, types.ModuleType) else None
    return value if isinstance(value, types.FunctionType) and _users(value) else None


def _users(func) -> bool:
    """A function of the user's (``__main__``'s or a module outside the installed libraries)."""
    from ..engines.module_state import is_users_module

    return is_users_module(func.__globals__.get("__name__"))


def _resolved(uses, names, glb: dict) -> str | None:
    """What the ``uses`` of :func:`_scan` change, their names resolved in ``glb``."""
    for name in names:  # a function imported by name: from os import chdir
        what = _SHARED.get(_owner_and_name(glb.get(name)))
        if what:
            return what
    for kind, owner, attr in uses:
        module = owner[7:] if owner.startswith("module:") else _module_name(glb.get(owner))
        if kind == "attr" and _SHARED.get((module, attr)):
            return _SHARED[(module, attr)]
        if kind == "environ" and (module == "os" or (attr is None and _is_environ(glb.get(owner)))):
            return _ENVIRON
        if kind == "sys" and module == "sys":
            return f"sys.{attr}"
    return None


def _module_name(value) -> str | None:
    return _as_os(value.__name__) if isinstance(value, types.ModuleType) else None


def _owner_and_name(value) -> tuple:
    return _as_os(getattr(value, "__module__", None)), getattr(value, "__name__", None)


def _as_os(module: str | None) -> str | None:
    """``os`` for the platform module its functions report (``os.chdir.__module__`` is "posix")."""
    return "os" if module in ("posix", "nt") else module


def _is_environ(value) -> bool:
    import os

    return value is os.environ


@functools.lru_cache(maxsize=1024)
def _scan(code) -> tuple[frozenset, frozenset]:
    """(the uses of shared state ``code`` and the code nested in it may make, as
    ``(kind, owner's global name, attribute)``, the global names they read)."""
    uses, names, todo = set(), set(), [code]
    while todo:
        current = todo.pop()
        names.update(current.co_names)
        todo += [c for c in current.co_consts if isinstance(c, types.CodeType)]
        uses |= _uses_in(list(dis.get_instructions(current)))
    return frozenset(uses), frozenset(names)


def _uses_in(instructions) -> set:
    uses, aliases = set(), {}  # local names bound to an owner's environ
    instructions = _imports_as_globals(instructions, uses)
    for i, ins in enumerate(instructions):
        j = i + 1 + (i + 1 < len(instructions) and instructions[i + 1].opname == "COPY")  # os.environ |= ...
        after = instructions[j] if j < len(instructions) else None
        if ins.opname in _GLOBAL_LOADS and after is not None:
            if after.opname in ("LOAD_ATTR", "LOAD_METHOD"):
                uses.add(("attr", ins.argval, after.argval))
                if after.argval == "environ":
                    target = _environ_target(instructions[j + 1:j + 13])
                    if target is True:
                        uses.add(("environ", ins.argval, "environ"))
                    elif target:
                        aliases[target] = ins.argval
            elif after.opname == "STORE_ATTR" and after.argval in ("stdout", "stderr", "environ"):
                uses.add(("environ", ins.argval, "environ") if after.argval == "environ" else ("sys", ins.argval, after.argval))
            elif _environ_target(instructions[i + 1:i + 13]) is True:
                uses.add(("environ", ins.argval, None))  # an alias: from os import environ as ENV
        if ins.opname == "LOAD_FAST" and ins.argval in aliases and _environ_target(instructions[i + 1:i + 13]) is True:
            uses.add(("environ", aliases[ins.argval], "environ"))
        if ins.opname in _GLOBAL_LOADS and ins.argval == "setattr":  # setattr(sys, "stdout", ...)
            following = instructions[i + 1:i + 4]
            owner = next((f.argval for f in following if f.opname in _GLOBAL_LOADS), None)
            attr = next((f.argval for f in following if f.opname == "LOAD_CONST" and f.argval in ("stdout", "stderr")), None)
            if owner and attr:
                uses.add(("sys", owner, attr))
    return uses


def _imports_as_globals(instructions, uses: set) -> list:
    """``instructions`` with the locals that a function-level import bound (``import os``,
    ``from os import chdir``) loaded as the module they name (``module:os``); an import of a
    name from a module is a use of it."""
    modules, out = {}, []
    for i, ins in enumerate(instructions):
        if ins.opname == "IMPORT_NAME" and i + 1 < len(instructions):
            nxt = instructions[i + 1]
            if nxt.opname == "STORE_FAST":
                modules[nxt.argval] = ins.argval.partition(".")[0]
            elif nxt.opname == "IMPORT_FROM":
                for f in instructions[i + 1:]:
                    if f.opname != "IMPORT_FROM":
                        break
                    uses.add(("attr", f"module:{ins.argval}", f.argval))
        if ins.opname == "LOAD_FAST" and ins.argval in modules:
            ins = ins._replace(opname="LOAD_GLOBAL", argval=f"module:{modules[ins.argval]}")
        out.append(ins)
    return out


def _environ_target(following):
    """After ``environ`` was loaded: True when the instructions write it, the local name it
    is stored in (an alias), else None."""
    for ins in following:
        if ins.opname in ("STORE_SUBSCR", "DELETE_SUBSCR"):
            return True
        if ins.opname in ("LOAD_METHOD", "LOAD_ATTR"):
            return True if ins.argval in _ENVIRON_WRITES else None
        if ins.opname == "BINARY_OP" and ins.argrepr.endswith("="):  # os.environ |= {...}
            return True
        if ins.opname == "STORE_FAST":
            return ins.argval
        if ins.opname in _ENVIRON_READ_ENDS:
            return None
    return None

"""How the process engine's workers start: never running the caller's main module, and
knowing when they no longer match the caller.

``multiprocessing`` prepares a spawned or forkserver child by running the parent's main
module again (as ``__mp_main__``), so that functions defined there can be found by
name. Ours travel by value (cloudpickle), so a worker has no use for it — and a script
without ``if __name__ == "__main__":`` would run again, top to bottom, in every worker.
:func:`slim_context` gives a context whose processes are prepared without it: the
preparation data (``multiprocessing.spawn.get_preparation_data``, read by the
forkserver and spawn ``Popen``\\ s when a process starts) loses its ``init_main_from_*``
entries for processes of this context only; the caller's ``sys.path`` and working
directory still go with it. ``fork`` copies the caller and runs nothing: unchanged.

``forkserver`` stays the default even when ``fork`` would be safe at the moment (no other
thread alive): by the time a pool starts, this library's own probe threads usually
exist, the fingerprint's start method would flip between runs, and Python 3.12+ warns
about forking a threaded process. Its children start in ~15 ms (2 workers on a loaded
2-core machine, median of 10 restarts; the forkserver imported this package once, they
import nothing), without the main module in any case.

>>> slim_context("spawn").get_start_method()
'spawn'
>>> caller_state("spawn") == caller_state("spawn")
True
"""

from __future__ import annotations

import multiprocessing
import os
import sys
import threading
from multiprocessing import context as mp_context
from multiprocessing import spawn

_local = threading.local()
_install_lock = threading.Lock()


def _install() -> None:
    """Wrap ``spawn.get_preparation_data`` once; it changes only while ``_local.slim`` is set."""
    with _install_lock:
        original = spawn.get_preparation_data
        if getattr(original, "_amorsize_slim", False):
            return

        def get_preparation_data(name):
            data = original(name)
            if getattr(_local, "slim", False):
                data.pop("init_main_from_name", None)
                data.pop("init_main_from_path", None)
            return data

        get_preparation_data._amorsize_slim = True
        spawn.get_preparation_data = get_preparation_data


def _slim_popen(process_class):
    """``process_class._Popen``, with the main module left out of the preparation data."""

    def _Popen(process_obj):
        _local.slim = True
        try:
            return process_class._Popen(process_obj)
        finally:
            _local.slim = False

    return staticmethod(_Popen)


# Module-level classes: a process object is pickled (by class name) to its child.
class SlimSpawnProcess(mp_context.SpawnProcess):
    _Popen = _slim_popen(mp_context.SpawnProcess)


class _SlimSpawnContext(mp_context.SpawnContext):
    Process = SlimSpawnProcess


_SLIM = {"spawn": _SlimSpawnContext}

if hasattr(mp_context, "ForkServerProcess"):  # POSIX

    class SlimForkServerProcess(mp_context.ForkServerProcess):
        _Popen = _slim_popen(mp_context.ForkServerProcess)

    class _SlimForkServerContext(mp_context.ForkServerContext):
        Process = SlimForkServerProcess

    _SLIM["forkserver"] = _SlimForkServerContext

_CONTEXTS: dict = {}


def slim_context(start_method: str):
    """A multiprocessing context of ``start_method`` whose processes skip the main module
    (``fork`` as it is: a forked child runs nothing, it already is a copy of the caller)."""
    found = _CONTEXTS.get(start_method)
    if found is None:
        if start_method in _SLIM:
            _install()
            found = _SLIM[start_method]()
        else:
            found = multiprocessing.get_context(start_method)
        _CONTEXTS[start_method] = found
    return found


def forkserver_preload(module_name: str) -> list[str]:
    """What the forkserver should import once, so that its children start without imports.

    The forkserver runs ``python -c`` in the caller's working directory, which comes first
    on its ``sys.path`` (Python 3.11 ignores the ``sys_path`` it is given): if that
    directory holds another copy of this package, preloading would import the wrong one
    into every worker. Then nothing is preloaded, and each worker imports after taking
    the caller's ``sys.path``.
    """
    top = module_name.split(".")[0]
    here = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    shadow = os.path.join(os.getcwd(), top)
    if os.path.isdir(shadow) and os.path.realpath(shadow) != os.path.realpath(here):
        return []
    return [module_name]


def caller_state(start_method: str) -> tuple:
    """What workers started now would inherit from the caller: a pool started under a
    different state (working directory, ``sys.path``, environment, start method) runs
    the user's code elsewhere than the caller would, and must not be reused."""
    return (start_method, os.getcwd(), tuple(sys.path), hash(frozenset(os.environ.items())))


def module_stamp(func) -> tuple[str, tuple] | None:
    """``(module name, (mtime_ns, size))`` of the file of the module ``func`` is imported
    from in the workers; None for functions that travel by value (``__main__``) or whose
    module has no file. A changed stamp means the workers hold older code."""
    func = getattr(func, "func", func)  # functools.partial
    name = getattr(func, "__module__", None)
    if not name or name == "__main__":
        return None
    path = getattr(sys.modules.get(name), "__file__", None)
    if not path:
        return None
    try:
        st = os.stat(path)
    except OSError:
        return None
    return name, (st.st_mtime_ns, st.st_size)


__all__ = ["slim_context", "forkserver_preload", "caller_state", "module_stamp"]

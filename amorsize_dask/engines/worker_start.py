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

The default start method, ``auto``, forks when that is safe — no other thread of the
caller is doing anything (the only others alive are idle threads of this library's thread
pools, waiting for work: :func:`fork_is_safe`) — and uses the forkserver otherwise.
A forked pool starts in ~15 ms and its workers already hold every module the caller
imported (a script's pandas, its classes), where a forkserver's start ~0.1 s and its
workers import what the items need (pandas: ~0.4 s each) before the first item runs
(``amorsize-dask bench --fresh``, its pool start line). The forkserver's children start
without the main module, as any slim process.

>>> slim_context("spawn").get_start_method()
'spawn'
>>> caller_state("spawn") == caller_state("spawn")
True
"""

from __future__ import annotations

import contextlib
import gc
import io
import multiprocessing
import os
import sys
import threading
import types
from multiprocessing import context as mp_context
from multiprocessing import spawn

from ..target.machine import native_thread_ids

from . import caller_settings
from .module_state import is_users_module, names_read_by

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


AUTO = "auto"  # fork when :func:`fork_is_safe`, else the forkserver


def fork_is_safe() -> bool:
    """True when a fork now copies no thread in the middle of something: on Linux, every
    other live thread is an idle thread of this library's thread pools (Python 3.12+, which
    warns about forking a process with threads: no other thread at all), and no OpenMP
    runtime has threads running (:func:`openmp_threads_running`)."""
    if not sys.platform.startswith("linux") or "fork" not in multiprocessing.get_all_start_methods():
        return False
    if openmp_threads_running():
        return False
    me = threading.current_thread()
    others = [t for t in threading.enumerate() if t is not me]
    if not others:
        return True
    if sys.version_info >= (3, 12):
        return False
    from .threads import only_idle_pool_threads

    return only_idle_pool_threads(others)


# Shared libraries of the OpenMP runtimes (GNU, Intel, LLVM), as named in /proc/self/maps:
# torch, numba's ``parallel=True``, scikit-learn and conda's MKL bring one of them.
_OPENMP_LIBRARIES = ("libgomp", "libiomp", "libomp")
_openmp_seen = False
_maps_read_at: tuple = ()  # (modules imported, threads) when /proc/self/maps was last read


def openmp_threads_running() -> bool:
    """Does this process run native threads (more than ``threading`` knows) beside a loaded
    OpenMP runtime? A child forked after GNU OpenMP ran inherits its pool's state but
    none of its threads, and its first parallel region waits for them for ever: a torch
    script's pool hung, numba ``parallel=True`` aborted its workers, ``Pool().map`` hangs
    too (hunt 12; tests/test_native_threads.py). Threads of a pthreads BLAS beside an
    OpenMP runtime that never ran count too: told apart by nothing cheap, they cost a
    forkserver start instead of a fork."""
    global _openmp_seen, _maps_read_at
    native = native_thread_ids()
    if not native:
        return False
    # A runtime once loaded stays loaded; until then the maps (~1 ms with pandas loaded)
    # are read again only after an import or a new thread.
    now = (len(sys.modules), len(native))
    if not _openmp_seen and now != _maps_read_at:
        _maps_read_at = now
        try:
            with open("/proc/self/maps") as maps:
                text = maps.read()
        except OSError:
            return False
        _openmp_seen = any(name in text for name in _OPENMP_LIBRARIES)
    return _openmp_seen


def resolve_start_method(start_method: str) -> str:
    """The method a pool started now uses: ``auto`` becomes fork or forkserver."""
    if start_method != AUTO:
        return start_method
    return "fork" if fork_is_safe() else "forkserver"


@contextlib.contextmanager
def forking(start_method: str):
    """Around the start of a pool's workers: if they fork, the script's open files flushed
    (:func:`flush_script_files`) and the heap frozen (:func:`heap_frozen`)."""
    if start_method == "fork":
        flush_script_files()
    with heap_frozen(start_method):
        yield


def flush_script_files() -> None:
    """Flush the files the script (``__main__``) and the user's modules hold open for
    writing in their globals: a forked worker inherits a copy of each unwritten buffer, and
    writes it again with its own lines (hunt 15: a global ``OUT = open(..., "a")`` that the
    sample's items wrote to came out with their lines twice or more). ``multiprocessing``
    flushes sys.stdout and sys.stderr only."""
    modules = [module for name, module in list(sys.modules.items()) if is_users_module(name)]
    for value in [value for module in modules for value in list(vars(module).values())]:
        if isinstance(value, io.IOBase) and not value.closed:
            try:
                if value.writable():
                    value.flush()
            except (OSError, ValueError):  # a pipe closed at the other end: as it is
                continue


@contextlib.contextmanager
def heap_frozen(start_method: str):
    """While workers fork, the caller's objects are frozen out of the garbage collector's
    reach (``gc.freeze``), and thawed in the caller after: in the workers they stay frozen.

    A forked worker shares the caller's memory until it writes to it, and a collection of
    the oldest generation writes to every object it visits: each worker then copied the
    pages of all the caller's objects (dask, numpy, the script's data) as it ran. The
    function of bench --fresh family alloc (a dict of 2,000 lists per item), 600 items on
    a fork ``Pool(2)`` whose parent imported this package: 164-181 ms unfrozen, 108-117 ms
    frozen (3 runs each). A caller that froze its heap itself (``gc.get_freeze_count()``)
    keeps it as it is.
    """
    if start_method != "fork" or gc.get_freeze_count():
        yield
        return
    gc.freeze()
    try:
        yield
    finally:
        gc.unfreeze()


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
    different state (working directory, ``sys.path``, environment and the other
    :mod:`.caller_settings`, start method) runs
    the user's code elsewhere than the caller would, and must not be reused."""
    return (start_method, os.getcwd(), tuple(sys.path), caller_settings.key_now())


def package_changed(start_method: str) -> list[str]:
    """This package's modules whose files changed on disk since this process first started
    a pool (an upgrade under a running service), when workers of ``start_method`` would
    import them afresh (not ``fork``, which copies the caller's). Such workers run other
    code than the caller: a spawn pool's chunks all failed (``AttributeError`` of a
    renamed field) where ``Pool().map`` ran (its worker code is the standard library)."""
    now = {name: _file_stamp(module) for name, module in list(sys.modules.items())
           if name == _PACKAGE or name.startswith(_PACKAGE + ".")}
    for name, stamp in now.items():
        _PACKAGE_STAMPS.setdefault(name, stamp)
    if start_method == "fork":
        return []
    return sorted(name for name, stamp in now.items() if stamp != _PACKAGE_STAMPS[name])


def _file_stamp(module) -> tuple | None:
    path = getattr(module, "__file__", None)
    try:
        st = os.stat(path) if path else None
    except OSError:
        return None
    return None if st is None else (st.st_mtime_ns, st.st_size)


# This package's modules as the first pool start found their files.
_PACKAGE = __name__.split(".")[0]
_PACKAGE_STAMPS: dict[str, tuple | None] = {}


def module_stamps(func) -> list[tuple[str, tuple]]:
    """``(module name, (mtime_ns, size))`` of the files of the modules whose code a run
    of ``func`` uses in the workers (:func:`.module_state.names_read_by`: its own, unless
    it travels by value as ``__main__``'s, and the user's modules it reaches). A changed
    stamp means the workers hold older code. The first stamp seen of each module is kept
    (:func:`edited_since_imported`)."""
    stamps = []
    for name in names_read_by(func):
        path = getattr(sys.modules.get(name), "__file__", None)
        try:
            st = os.stat(path) if path else None
        except OSError:
            st = None
        if st is not None:
            stamp = (st.st_mtime_ns, st.st_size)
            _FIRST_STAMPS.setdefault(name, stamp)
            stamps.append((name, stamp))
    return stamps


# The first stamp seen of each module (its file as this process imported it, as far as
# this package can tell), and whether each later version holds other code than it runs.
_FIRST_STAMPS: dict[str, tuple] = {}
_EDITED: dict[tuple, bool] = {}


def edited_since_imported(func) -> list:
    """The modules of :func:`module_stamps` whose file was edited since this process
    imported it while this process still runs the code it imported (no
    ``importlib.reload``).

    Workers importing such a module afresh would run the new file, the caller the code it
    holds, as ``builtins.map`` does: 28-33 of 3,000 results old (the sample), the rest
    new. Its functions go to the workers by value. Compiling the file once per version
    tells an edit the caller has not reloaded from one it has.
    """
    edited = []
    for stamp in module_stamps(func):
        if _FIRST_STAMPS.get(stamp[0]) == stamp[1]:
            continue
        module = sys.modules.get(stamp[0])
        if _EDITED.get(stamp) is None:
            _EDITED[stamp] = not _runs_the_file(module)
        if _EDITED[stamp]:
            edited.append(module)
    return edited


def _runs_the_file(module) -> bool:
    """Does ``module`` run the code its file holds now (each function's bytecode and
    constants as compiled from it)?"""
    try:
        with open(module.__file__, "rb") as fh:
            compiled = compile(fh.read(), module.__file__, "exec")
    except (OSError, SyntaxError, ValueError):
        return True  # nothing to compare with: as before
    in_file = {}
    todo = [compiled]
    while todo:
        code = todo.pop()
        in_file[code.co_qualname] = code
        todo += [c for c in code.co_consts if isinstance(c, types.CodeType)]
    for value in list(vars(module).values()):
        code = getattr(value, "__code__", None)
        if code is None or getattr(value, "__module__", None) != module.__name__:
            continue
        found = in_file.get(code.co_qualname)
        if found is None or found.co_code != code.co_code or _consts(found) != _consts(code):
            return False
    return True


def _consts(code) -> tuple:
    return tuple(c for c in code.co_consts if not isinstance(c, types.CodeType))


__all__ = ["AUTO", "fork_is_safe", "resolve_start_method", "slim_context", "forking", "heap_frozen", "forkserver_preload",
           "caller_state", "module_stamps", "edited_since_imported"]

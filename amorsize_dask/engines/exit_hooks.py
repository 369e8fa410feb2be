"""Stopping the process engine's workers when this interpreter exits, leaving nothing running.

At exit no map waits for anything still running (speculated items of a call that raised,
a stream a daemon thread still consumes): the workers are stopped, not waited for.
concurrent.futures joins its executors (waiting for their running tasks) in a
``threading`` exit hook that runs before ``atexit``; the stop is hooked there too
(registered later, it runs first), unless a non-daemon thread is in a map
(:func:`waited_for`), which the interpreter waits for. A run still going in a daemon
thread then finds its pool gone: :func:`interpreter_exiting` tells it that this is the
exit, not a worker that died.

>>> interpreter_exiting()
False
"""

from __future__ import annotations

import atexit
import concurrent.futures
import contextlib
import functools
import multiprocessing.process
import multiprocessing.util
import threading

__all__ = ["stop_at_exit", "mapping_here", "waited_for", "interpreter_exiting", "refused_at_exit", "submit_or_run_here",
           "disown", "exiting_error"]

_EXITING = threading.Event()


def stop_at_exit(engine) -> None:
    """Stop ``engine``'s workers at this interpreter's exit, without waiting for them; in
    a ``multiprocessing`` child too, which runs no ``atexit`` hooks but joins its own
    children first (the idle workers never exit by themselves: the child would hang)."""
    _at_threading_exit(_stop_unless_threads_remain, engine)
    atexit.register(_stop, engine)
    _stop_before_children_join(engine)
    # A child forked by multiprocessing starts with no finalizers: hooked there again.
    multiprocessing.util.register_after_fork(engine, _stop_before_children_join)


# Finalizers of this priority or more run before a multiprocessing child joins its children.
_BEFORE_JOINING_CHILDREN = 0


def _stop_before_children_join(engine) -> None:
    multiprocessing.util.Finalize(None, _stop, args=(engine,), exitpriority=_BEFORE_JOINING_CHILDREN)


def _stop(engine) -> None:
    _EXITING.set()
    engine.shutdown(kill=True)


def _stop_unless_threads_remain(engine) -> None:
    """The main thread returned: stop now, unless a non-daemon thread is mapping, which
    the interpreter waits for (its map goes on, as with ``builtins.map`` and
    ``Pool().map``: the workers stop in ``atexit``, once it is done)."""
    _EXITING.set()
    current = threading.current_thread()
    with _MAPPING_LOCK:
        waited_for = [t for t in _MAPPING if t is not current and not t.daemon and t.is_alive()]
    if not waited_for:
        engine.shutdown(kill=True)


# The threads in a map now (how many maps deep), and their lock.
_MAPPING: dict[threading.Thread, int] = {}
_MAPPING_LOCK = threading.Lock()


@contextlib.contextmanager
def mapping_here():
    """While in it, this thread maps: if it is a non-daemon thread, the exit that waits for
    it leaves the pools up (:func:`_stop_unless_threads_remain`); a daemon thread's map
    that the exit broke raises nothing (the exit ends the thread)."""
    me = threading.current_thread()
    with _MAPPING_LOCK:
        _MAPPING[me] = _MAPPING.get(me, 0) + 1
    try:
        yield
    except BaseException:
        if me.daemon and interpreter_exiting():
            # The exit stopped the workers under a daemon thread's map (a stream it still
            # consumes) and ends the thread anyway, silently, as in builtins.map: raised, the
            # error's traceback was printed and cut off mid-line by the exit (hunt 13).
            threading.Event().wait()
        raise
    finally:
        with _MAPPING_LOCK:
            _MAPPING[me] -= 1
            if not _MAPPING[me]:
                del _MAPPING[me]


def waited_for(func):
    """Decorator: ``func`` (a map) runs :func:`mapping_here`."""
    @functools.wraps(func)
    def mapping(*args, **kwargs):
        with mapping_here():
            return func(*args, **kwargs)
    return mapping


def interpreter_exiting() -> bool:
    """Is this interpreter exiting (its ``threading`` exit hooks have run, or this module
    was imported after them)? Then pools refuse work (concurrent.futures: "cannot schedule
    new futures after interpreter shutdown") and the workers are being stopped: a map run
    from an ``atexit`` handler runs serially, as ``builtins.map`` would."""
    return _EXITING.is_set()


def refused_at_exit(exc: BaseException) -> bool:
    """Is ``exc`` a pool refusing new work because the interpreter is exiting (the main
    thread returned while another thread maps)?"""
    return isinstance(exc, RuntimeError) and "cannot schedule new futures" in str(exc) and interpreter_exiting()


def submit_or_run_here(submit, run_here) -> concurrent.futures.Future:
    """``submit()``'s future; once the main thread returned while this (non-daemon) thread
    maps, pools take no new work: then ``run_here()`` runs in this thread, as
    ``builtins.map`` would, its result a done future (``ran_here``). Work submitted before
    the refusal goes on in the pool: nothing runs twice.

    >>> submit_or_run_here(lambda: None, lambda: 1)  # not refused: submit's answer
    """
    try:
        return submit()
    except RuntimeError as exc:
        if not refused_at_exit(exc):
            raise
    done = concurrent.futures.Future()
    done.set_result(run_here())
    done.ran_here = True
    return done


def disown(processes) -> None:
    """In a child the user forked (``os.fork``): ``processes``, the parent's workers, are no
    children of this one; ``multiprocessing``'s exit would join them and print
    ``AssertionError: can only join a child process`` (hunt 13)."""
    children = getattr(multiprocessing.process, "_children", None)
    for process in processes if isinstance(children, set) else ():
        children.discard(process)


def exiting_error(label: str, func_name: str) -> RuntimeError:
    """The error of a run whose workers the exit stopped (a daemon thread's stream, say):
    not a worker that died (``WorkerLostError`` said the function may crash the interpreter)."""
    return RuntimeError(f"amorsize_dask: the interpreter is exiting: its worker processes were stopped "
                        f"while {label} of {func_name} ran")


def _at_threading_exit(func, *args) -> bool:
    """Run ``func(*args)`` in ``threading``'s exit hooks (before ``atexit``, where
    concurrent.futures joins its executors); False when the interpreter is exiting already."""
    register = getattr(threading, "_register_atexit", None)
    if register is None:  # another Python: atexit alone
        return True
    try:
        register(func, *args)
    except RuntimeError:  # "can't register atexit after shutdown"
        return False
    return True


if not _at_threading_exit(_EXITING.set):  # this module imported while the interpreter exits
    _EXITING.set()

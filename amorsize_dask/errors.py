"""Exceptions raised by a user's function, re-raised with the item that caused them.

The original exception type is kept (``except ValueError`` still works); a note names
the item's index and carries the original traceback text when it ran in another process.

>>> try:
...     reraise_with_item(ValueError("bad"), 7, abs)
... except ValueError as e:
...     print(e.__notes__[0])
amorsize_dask: raised by builtins.abs on item 7
"""

from __future__ import annotations

import errno
import logging
import os
import sys
import warnings


__all__ = ["ItemError", "WorkerLostError", "PackageChanged", "WorkerStartError", "NoWorkersYet", "reraise_with_item",
           "warn_once", "warn_running_serially"]


class ItemError(RuntimeError):
    """Stands in for an exception that could not travel back from a worker."""


class WorkerLostError(RuntimeError):
    """A worker process died repeatedly on the same items (named in the message); they
    are never run in the caller, whose process they would end too."""


class PackageChanged(RuntimeError):
    """amorsize_dask's files changed on disk since this process imported it: new worker
    processes would run other code than this process does."""

    def __init__(self, modules: list[str]):
        shown = ", ".join(modules[:3]) + (f" and {len(modules) - 3} more" if len(modules) > 3 else "")
        super().__init__(f"amorsize_dask changed on disk since this process imported it ({shown}: an upgrade?); "
                         "restart this process, or set DASK_AMORSIZE__START_METHOD=fork (workers then run "
                         "this process's code)")


class WorkerStartError(RuntimeError):
    """Worker processes could not start (no resources, a broken interpreter environment,
    the package upgraded under this process)."""

    def __init__(self, cause: BaseException | None = None):
        full = isinstance(cause, OSError) and cause.errno == errno.ENOSPC
        super().__init__(
            "amorsize_dask: worker processes failed to start"
            + (f" ({type(cause).__name__}: {cause})" if cause else "")
            + ("; multiprocessing keeps its semaphores in /dev/shm: free space there" if full else "")
            + ("" if isinstance(cause, PackageChanged) else
               "; check the process and memory limits of this machine, or use engine='threads'")
        )


class NoWorkersYet(RuntimeError):
    """The cluster has no workers yet, and the caller cannot wait for one (a Bag being
    built: its ``compute()`` may come after the cluster scales up)."""


def reraise_with_item(exc: BaseException, index: int, func, remote_traceback: str | None = None):
    """Raise ``exc`` again with a note naming ``index`` (and the remote traceback); never
    returns. (Not annotated ``NoReturn``: ``typing`` would load with a script's first call,
    ~2 ms of it, for a call its head runs: :mod:`.planning.head`.)"""
    from .target.workload import function_name  # its hashing loads only when a name is needed

    note = f"amorsize_dask: raised by {function_name(func)} on item {index}"
    if remote_traceback:
        note += f"\n--- original traceback (in the worker) ---\n{remote_traceback.rstrip()}"
    if note not in getattr(exc, "__notes__", ()):  # the same object raised again: one note
        exc.add_note(note)
    raise exc


_WARNED: set[str] = set()


def warn_once(message: str, stacklevel: int | None = None) -> None:
    """A RuntimeWarning (and a log line, where logging is set up) the first time ``message``
    is seen in this process. With no handler anywhere, logging's last resort prints the
    line to stderr beside the warning: a script saw every such message twice.
    ``stacklevel`` None: the warning points at the caller's line that called into this
    package (as ``warnings.warn``'s ``skip_file_prefixes`` would, from Python 3.12)."""
    if message in _WARNED:
        return
    _WARNED.add(message)
    logger = logging.getLogger("amorsize_dask")
    if logger.hasHandlers():
        logger.warning(message)
    warnings.warn(message, RuntimeWarning, stacklevel=stacklevel or _outside_the_package())


def _outside_the_package() -> int:
    """The ``stacklevel`` of the first frame outside this package, for a warning issued
    by :func:`warn_once` (itself the first level)."""
    package = os.path.dirname(os.path.abspath(__file__)) + os.sep
    frame, level = sys._getframe(2), 2  # the caller of warn_once is level 2
    while frame is not None and frame.f_code.co_filename.startswith(package):
        frame, level = frame.f_back, level + 1
    return level


def warn_running_serially(exc: "WorkerStartError") -> None:
    """The one warning when workers cannot start and ``engine="auto"`` runs the items here."""
    warn_once(f"{exc} — running serially instead", stacklevel=4)


class LostTasksError(RuntimeError):
    """Tasks of a dask run were lost (cancelled by ``client.restart()``, a lost scheduler)
    and could not be run again."""

    @classmethod
    def of(cls, bounds, first_index: int, func, rounds: int) -> "LostTasksError":
        """The error naming the chunks ``bounds`` (``[(lo, hi), ...]``) that were lost."""
        from .target.workload import function_name

        n_items = sum(hi - lo for lo, hi in bounds)
        first = ", ".join(f"{first_index + lo}..{first_index + hi - 1}" for lo, hi in bounds[:5])
        more = f" and {len(bounds) - 5} more" if len(bounds) > 5 else ""
        return cls(
            f"amorsize_dask: {len(bounds)} task(s) of {function_name(func)} ({n_items} items: {first}{more}) "
            f"were lost {rounds} time(s): their futures were cancelled (client.restart(), the "
            "scheduler went away, or its workers did). Run the map again once the cluster is back "
            "(client.wait_for_workers())"
        )

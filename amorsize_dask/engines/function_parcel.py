"""How one run's function reaches the process pool's workers: inherited, or pickled once.

cloudpickle sends a function of the caller's ``__main__`` by value, with every global it
reads: a script whose function reads a 30 MB module-level table pickled the table for
the planner's check, for the run, and sent it with every chunk; its first call took 7x
its serial time where ``Pool().map`` (fork) took 0.7x (its workers read their own copy).
So a run registers its function (:data:`.process_worker.INHERITED`) while it runs: a pool
forked meanwhile holds it as the caller has it then, and its chunks send a token. A pool
that was running before gets the function pickled, once per run: the caller's data may
have changed since that pool forked (a notebook's table edited, a function redefined).
A function whose pickle is large is remembered (:meth:`FunctionParcel.known_large`): an
idle pool forks again for it rather than pickle and send it (:meth:`FunctionParcel.make_ready`);
a Dask run sends it to each worker once, not with every task (:func:`pickles_large`).

>>> from amorsize_dask.engines import shared_engine
>>> with FunctionParcel(shared_engine(), abs) as parcel:
...     parcel.token in process_worker.INHERITED
True
"""

from __future__ import annotations

import atexit
import hashlib
import itertools
import os
import tempfile
import sys
import weakref
from multiprocessing import resource_tracker

from ..errors import warn_once
from . import process_worker, transport
from .pickling import track_unnamed_classes
from .fork_copy import copied_bytes
from .worker_start import AUTO

__all__ = ["FunctionParcel", "LARGE_PICKLE_BYTES", "LIKELY_LARGE_COPIED_BYTES", "forks_for", "likely_large",
           "pickles_large", "remember_if_large", "travels"]

_TOKENS = itertools.count()

# A function whose pickle is larger than this is sent by forking an idle pool again: sent
# with each of four chunks, 1 MiB takes ~18 ms at the calibrated 224 MiB/s to the workers,
# more than a forked pool's start (10 ms; both from bench --fresh's pool start line and
# calibration, session 13). bench --fresh big-global (a 30 MB table): warm calls pickled
# it every call and ran at 2.5-4x serial.
LARGE_PICKLE_BYTES = 1 << 20

# A function whose pickle would carry this many bytes of the caller's objects (estimated:
# :func:`.fork_copy.copied_bytes`) is taken as large without pickling it. Pickles carry
# 0.15-0.28 of the bytes estimated (a script's tables of 100k-1M strings, ints, float
# lists, tuples, dataclasses; session 14), so 8 MiB pickles to 1.2 MiB at least. A notebook
# cell run again (a new function) pickled big-global's table to find it large: 76-138 ms
# of planning per call, 9-10 ms without.
LIKELY_LARGE_COPIED_BYTES = 8 << 20

# Functions whose last pickle was larger than LARGE_PICKLE_BYTES (weakly: they may go).
_LARGE: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()


class FunctionParcel:
    """One run's function, registered for the pools forked while it runs (a context
    manager: the registration ends with the run)."""

    def __init__(self, engine, func, func_bytes: bytes | None = None):
        self.engine, self.func = engine, func
        self.token = f"inherited-{os.getpid()}-{next(_TOKENS)}".encode()
        self._bytes = func_bytes
        self._entered = False
        self._file = None  # a large pickle's file, while the parcel is open
        self._key: bytes | None = None  # the pickle's hash (a parcel pickles its function once)

    def __enter__(self) -> "FunctionParcel":
        process_worker.INHERITED[self.token] = self.func
        self._entered = True
        return self

    def __exit__(self, *exc) -> None:
        process_worker.INHERITED.pop(self.token, None)
        if self._file is not None:
            _remove(self._file.path)
            self._file = None

    def pickled(self) -> bytes:
        """The function as cloudpickle bytes, pickled at most once (a TypeError names it)."""
        if self._bytes is None:
            self._bytes = self.engine.function_bytes(self.func)
        return self._bytes

    @property
    def large(self) -> bool:
        """Is the pickle of the function large: now, the last time it was pickled, or by
        the estimate of what it carries (:func:`likely_large`)?"""
        if self._bytes is not None:
            return len(self._bytes) > LARGE_PICKLE_BYTES
        return likely_large(self.func)

    @staticmethod
    def known_large(func) -> bool:
        """Was ``func``'s last pickle larger than :data:`LARGE_PICKLE_BYTES`?"""
        try:
            return func in _LARGE
        except TypeError:  # not weakly referable: never remembered
            return False

    @classmethod
    def open(cls, engine, func, n_workers: int) -> "FunctionParcel":
        """``func`` registered for the pools of ``n_workers`` forked from now on, ready to
        send (:meth:`make_ready`); the caller closes it (``__exit__``): a stream's."""
        parcel = cls(engine, func).__enter__()
        try:
            parcel.make_ready(n_workers)
        except BaseException:
            parcel.__exit__()
            raise
        return parcel

    def make_ready(self, n_workers: int) -> None:
        """Make sure the function reaches the engine's pool of ``n_workers``: inherited by a
        pool forked for the run, else pickled (a TypeError names it). A function that cannot
        be pickled, or whose pickle is large, is inherited by an idle pool forked again (as
        ``Pool().map`` with fork would run it); when the pool is busy, or cannot fork, it is
        pickled."""
        if self.engine.will_inherit(n_workers):
            if _of_no_module(self.func):
                self._track_classes()
            else:
                track_unnamed_classes(self.func)
            return
        try:
            if not self.large:
                self.pickled()  # and it may turn out large
        except TypeError as exc:
            if self._fork_again(n_workers):
                return
            if self.engine.start_method == AUTO and self.engine.next_start_method() != "fork":
                raise TypeError(f"{exc}; a pool forked now would inherit it, as multiprocessing.Pool's workers do, "
                                "but another thread of this process is busy, so pools start by forkserver: set "
                                "DASK_AMORSIZE__START_METHOD=fork (dask config amorsize.start-method) if that "
                                "thread holds no lock the workers need") from exc.__cause__
            raise
        if self.large and not self._fork_again(n_workers):
            self.pickled()

    def _track_classes(self) -> None:
        """Pickle the function once before its pool forks: cloudpickle then tracks the
        classes of its namespace it sends by value, and a worker's results and exceptions
        of those classes come back as the caller's own. (Code run by ``exec`` in a namespace
        of its own: a pool forked for the run returned 0 of 2,000 results as the caller's
        class, and ``except ns["CellError"]`` missed its error; ``__main__``'s classes
        travel by name instead: :mod:`.pickling`.)"""
        try:
            self.pickled()
        except TypeError:  # it does not pickle: the workers inherit it all the same
            pass

    def _fork_again(self, n_workers: int) -> bool:
        """Stop the engine's idle pool of ``n_workers``, so that the run forks one that
        inherits the function; False when that pool is busy or a new one would not fork."""
        return self.engine.stop_if_idle(n_workers, wait=True) and self.engine.will_inherit(n_workers)

    def for_pool(self, entry) -> tuple[bytes, object]:
        """``(key, payload)`` for the chunks sent to the pool ``entry``: its workers' token
        and None when they inherited the function, else its hash and its pickle (a large
        one in a file while the parcel is open: :class:`.process_worker.FunctionFile`)."""
        if self.token in entry.inherited:
            self.engine.modules_sent.add(getattr(self.func, "__module__", None) or "")
            return self.token, None
        payload = self.pickled()
        if self._key is None:
            self._key = hashlib.blake2b(payload, digest_size=16).digest()
        key = self._key
        if len(payload) <= LARGE_PICKLE_BYTES or not self._entered:
            return key, payload
        if self._file is None:  # written once, read once by each worker: not sent with each chunk
            path = _written(payload)
            if path is None:
                return key, payload
            self._file = process_worker.FunctionFile(path)
        return key, self._file


def _written(payload: bytes) -> str | None:
    """A new file holding ``payload``: in ``/dev/shm`` (memory) where it can be, else in
    the temp dir; None when neither takes it (a full /dev/shm and /tmp, a file size
    limit): the pickle then goes with each chunk, with one warning. A file cut short is
    removed at once (a 2 MB /dev/shm kept every call's, filled)."""
    shm = "/dev/shm" if os.path.isdir("/dev/shm") and os.access("/dev/shm", os.W_OK) else None
    failures = []
    for folder in dict.fromkeys([shm, None]):
        try:
            fd, path = tempfile.mkstemp(prefix="amorsize-function-", dir=folder)
        except OSError as exc:
            failures.append(exc)
            continue
        _FILES[path] = os.getpid()
        try:
            with os.fdopen(fd, "wb") as fh:
                fh.write(payload)
        except OSError as exc:
            failures.append(exc)
            _remove(path)
            continue
        if folder == shm:
            _track(path)
        return path
    warn_once(f"amorsize_dask: a function's {len(payload) / 2**20:.1f} MiB pickle goes to the workers with each "
              f"chunk: no file could hold it ({failures[-1]}); free space in /dev/shm or the temp dir")
    return None


def _track(path: str) -> None:
    """Have multiprocessing's resource tracker remove the file in /dev/shm should this
    process end without its exit handlers (SIGTERM: ``docker stop``, systemd, ``timeout``;
    SIGKILL), as it does for ``multiprocessing.shared_memory``; it prints that it did."""
    resource_tracker.register(_shm_name(path), "shared_memory")
    _TRACKED.add(path)


def _shm_name(path: str) -> str:
    return "/" + os.path.basename(path)


def _remove(path: str) -> None:
    _FILES.pop(path, None)
    try:
        os.unlink(path)
    except OSError:
        pass
    if path in _TRACKED:
        _TRACKED.discard(path)
        resource_tracker.unregister(_shm_name(path), "shared_memory")


# The files of open parcels, by the process that wrote them: removed at its exit too (a
# parcel a Ctrl-C left open), not at a forked child's, whose parent may still need them.
_FILES: dict[str, int] = {}
_TRACKED: set[str] = set()  # those the resource tracker knows of (in /dev/shm)
atexit.register(lambda: [_remove(path) for path, pid in list(_FILES.items()) if pid == os.getpid()])


def _of_no_module(func) -> bool:
    """Is ``func`` defined in a namespace that is neither ``__main__`` nor an imported
    module (code run by ``exec``)?"""
    module = getattr(getattr(func, "func", func), "__module__", None) or ""
    return module != "__main__" and module not in sys.modules


def forks_for(engine, func, n_workers: int, *, find_out: bool = False) -> bool:
    """Would a run of ``func`` on ``n_workers`` fork its pool (whose workers then copy the
    pages of this process's objects they read: :mod:`.fork_copy`)? Yes when no pool of
    them runs and the engine forks, or when ``func``'s pickle is large (an idle pool forks
    again for it: :meth:`FunctionParcel.make_ready`): known, or with ``find_out``,
    estimated (:func:`likely_large`) or else pickled to learn it (the run then does not
    pickle it again)."""
    if engine.will_inherit(n_workers):
        return True
    # A running pool's own threads rule out a fork while it runs; stopped, it forks again as it did.
    if not engine.is_warm(n_workers) or engine.last_start_method != "fork":
        return False
    return pickles_large(func) if find_out else FunctionParcel.known_large(func)


def likely_large(func) -> bool:
    """Is ``func`` known large, or would its pickle carry over :data:`LIKELY_LARGE_COPIED_BYTES`
    of this process's objects (then remembered as large, without pickling it)?"""
    if FunctionParcel.known_large(func):
        return True
    if copied_bytes(func, pickled_only=True) < LIKELY_LARGE_COPIED_BYTES:
        return False
    _remember_large(func)
    return True


def travels(func) -> bool:
    """Can ``func`` be pickled for the workers (a large pickle is not made again, and one
    made here is remembered)?"""
    return _checked(func)[0]


def pickles_large(func) -> bool:
    """Is ``func``'s pickle larger than :data:`LARGE_PICKLE_BYTES`? Pickled to find out
    (a function that cannot be pickled is not), remembered when it is (a Dask run then
    sends it to each worker once: :mod:`.dask`)."""
    return _checked(func)[1]


def _checked(func) -> tuple[bool, bool]:
    """(can ``func`` be pickled, is its pickle large): pickled unless known or estimated to
    be large (:func:`likely_large`; then taken as picklable: a pool forks again for it,
    and where none can, the run's own pickle tells)."""
    if likely_large(func):
        return True, True
    try:
        payload = transport.dump_function(func)
    except TypeError:
        return False, False
    return True, remember_if_large(func, payload)


def remember_if_large(func, payload: bytes) -> bool:
    """Is ``payload``, ``func``'s pickle, large? Remembered when it is (every pickle of a
    function for the workers passes here)."""
    if len(payload) <= LARGE_PICKLE_BYTES:
        return False
    _remember_large(func)
    return True


def _remember_large(func) -> None:
    try:
        _LARGE[func] = True
    except TypeError:  # not weakly referable
        pass

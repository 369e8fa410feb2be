"""cloudpickle, or cloudpickle that sends the caller's ``__main__`` classes and functions by name.

cloudpickle sends what a script defines by value, and a class sent from the caller comes
back as the caller's own (it tracks the classes it sent). A worker that inherited the
run's function by fork (:mod:`.function_parcel`) never received those classes: it holds
the caller's ``__main__`` as it was when it forked, in this very call. Between the two,
``__main__``'s classes and functions travel by name, so that a ``Point`` made there is
the caller's ``Point`` here and ``except MyError`` catches what a worker raised.

Kept free of the rest of the package: worker processes import it.

>>> import pickle
>>> pickle.loads(dumps([1, "a"], by_name=True))
[1, 'a']
"""

from __future__ import annotations

import collections
import functools
import io
import os
import pickle
import sys
import types

import cloudpickle

__all__ = ["dumps", "dumps_function", "CachedCall", "found_by_name", "track_unnamed_classes", "hold_in_main"]


def dumps(obj, *, by_name: bool = False) -> bytes:
    """``obj`` as cloudpickle bytes; ``by_name``: ``__main__``'s classes and functions by
    their name (both sides hold the same ``__main__``: a fork of one process in one call)."""
    if not by_name:
        return cloudpickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL)
    buffer = io.BytesIO()
    _MainByName(buffer, protocol=pickle.HIGHEST_PROTOCOL).dump(obj)
    return buffer.getvalue()


class _MainByName(cloudpickle.Pickler):
    def reducer_override(self, obj):
        if isinstance(obj, (type, types.FunctionType)) and _named_in_main(obj):
            return NotImplemented  # pickle's own: by module and name
        return super().reducer_override(obj)


def dumps_function(func) -> bytes:
    """``func`` (or a value it reads) as cloudpickle bytes for workers that never imported
    the caller's ``__main__`` (a forkserver's, a Dask worker's): a ``functools.lru_cache``'d
    function of ``__main__``, which pickle sends by name, goes by value (:class:`CachedCall`);
    a ``numpy.memmap`` as its file (:func:`_reduce_memmap`)."""
    numpy = sys.modules.get("numpy")
    if numpy is not None and not _FILE_MAPS:
        _FILE_MAPS[numpy.memmap] = _reduce_memmap
    buffer = io.BytesIO()
    _WorkerPickler(buffer, protocol=pickle.HIGHEST_PROTOCOL).dump(func)
    return buffer.getvalue()


# Filled once numpy is imported (this module must not import it: workers import this one).
_FILE_MAPS: dict = {}


def _reduce_memmap(obj):
    """A ``numpy.memmap`` over a file, opened again over that file in the worker, as a
    forked ``Pool``'s workers hold it: writes to an ``"r+"`` map reach the file (pickled as
    its contents, they went to each worker's private copy: 0 of 2,000 on disk, hunt 15), and
    a 400 MB read-only map is not copied. A map written privately (``"c"``), or a view
    that is not one block of the file, goes as its contents, as pickle sends it."""
    place = _place_in_file(obj)
    if place is None:
        return obj.__reduce_ex__(pickle.HIGHEST_PROTOCOL)
    return _open_memmap, place


def _place_in_file(obj) -> tuple | None:
    """(file, dtype, mode, offset, shape, order) of the block of its file that ``obj`` is."""
    import mmap  # here: a worker's pickling of results never needs it

    numpy = sys.modules["numpy"]
    mapped, filename = getattr(obj, "_mmap", None), getattr(obj, "filename", None)
    if mapped is None or not filename or obj.mode not in ("r", "r+", "w+") or obj.size == 0 or obj.ndim == 0:
        return None
    order = "C" if obj.flags.c_contiguous else "F" if obj.flags.f_contiguous else None
    if order is None:
        return None
    try:
        mapped_at = numpy.frombuffer(mapped, dtype=numpy.uint8).ctypes.data
    except (ValueError, TypeError):  # closed
        return None
    start = obj.offset - obj.offset % mmap.ALLOCATIONGRANULARITY  # the file position mapped_at holds
    position = start + obj.ctypes.data - mapped_at
    if not _still_the_mapped_file(filename, mapped_at):
        return None
    mode = "r+" if obj.mode == "w+" else obj.mode  # "w+" would empty the file
    return filename, obj.dtype, mode, position, obj.shape, order


def _still_the_mapped_file(filename: str, mapped_at: int) -> bool:
    """Is the file at ``filename`` the one mapped at ``mapped_at`` (its device and inode, in
    /proc/self/maps)? Replaced since it was mapped (``os.replace`` of a new version) or
    deleted, the worker would read another file or none (hunt 17: the new version's values,
    FileNotFoundError): then the contents go. (A file truncated since is still the one
    mapped: reading its contents here would end this process with SIGBUS, as reading past
    the end anywhere does; the worker's map raises ValueError instead.) Not Linux: no way to
    tell, the contents go."""
    try:
        st = os.stat(filename)
        with open("/proc/self/maps") as fh:
            for line in fh:
                fields = line.split()
                low, high = (int(x, 16) for x in fields[0].split("-"))
                if low <= mapped_at < high:
                    device = f"{os.major(st.st_dev):02x}:{os.minor(st.st_dev):02x}"
                    return fields[3] == device and int(fields[4]) == st.st_ino
    except (OSError, ValueError, IndexError):
        pass
    return False


def _open_memmap(filename, dtype, mode, offset, shape, order):
    import numpy

    return numpy.memmap(filename, dtype=dtype, mode=mode, offset=offset, shape=shape, order=order)


_CACHE_WRAPPER = type(functools.lru_cache()(len))


def _reduce_cached(obj):
    """A cached function of ``__main__`` by value, made first and filled after (its
    function may read it back through a global: ``fib``); any other by name, as pickle does."""
    if getattr(obj, "__module__", None) != "__main__":
        return obj.__qualname__
    params = obj.cache_parameters()
    return CachedCall, (params["maxsize"], params["typed"]), obj.__wrapped__, None, None, CachedCall.fill


_CODE_REDUCE = cloudpickle.Pickler.dispatch_table.get(types.CodeType)
_DYNAMIC_CODE = "<dynamic-code>"  # what cloudpickle names every code object's file


def _reduce_code(code):
    """cloudpickle's reduction of ``code``, but with its file's name kept: a traceback
    from a worker said ``File "<dynamic-code>", line 9, in parse`` with no source line,
    where ``Pool`` (fork) showed the script's file and line."""
    rebuild, args = _CODE_REDUCE(code)
    return rebuild, tuple(code.co_filename if arg == _DYNAMIC_CODE else arg for arg in args)


class _WorkerPickler(cloudpickle.Pickler):
    # Dispatch entries, not a reducer_override: asked for those types only (an override,
    # asked for every object, made a 30 MB table's pickle 5-7% slower). The pickler reads
    # them when made: a class attribute.
    dispatch_table = collections.ChainMap(
        _FILE_MAPS, {_CACHE_WRAPPER: _reduce_cached, **({types.CodeType: _reduce_code} if _CODE_REDUCE else {})},
        cloudpickle.Pickler.dispatch_table)


class CachedCall:
    """A ``functools.lru_cache``'d function of the caller's ``__main__``, cached again in
    the worker (a cache per worker, as each of a forked ``Pool``'s workers has its own).

    >>> square = CachedCall(None, False)
    >>> CachedCall.fill(square, lambda x: x * x)
    >>> square(4), square.cache_info().hits, square(4), square.cache_info().hits
    (16, 0, 16, 1)
    """

    def __init__(self, maxsize, typed):
        self.maxsize, self.typed, self._cached = maxsize, typed, None

    @staticmethod
    def fill(shell: "CachedCall", func) -> None:
        """Cache ``func`` in ``shell``; the globals that held the shell now hold the cached
        function itself, so that a recursive call (``fib``) runs no frame of the shell's:
        each level took two frames, and ``fib(299)`` from an empty cache overflowed the
        stack where the caller's ran."""
        shell._cached = functools.lru_cache(maxsize=shell.maxsize, typed=shell.typed)(func)
        shell.__wrapped__ = func
        glb = getattr(func, "__globals__", {})
        for name, value in list(glb.items()):
            if value is shell:
                glb[name] = shell._cached

    def __call__(self, *args, **kwargs):
        return self._cached(*args, **kwargs)

    def cache_info(self):
        return self._cached.cache_info()


def _named_in_main(obj) -> bool:
    """Is ``obj`` what ``__main__`` holds under its qualified name here?"""
    return getattr(obj, "__module__", None) == "__main__" and found_by_name(obj)


def found_by_name(obj) -> bool:
    """Is ``obj`` what its module holds under its qualified name (so that pickle can send
    it by name)?

    >>> found_by_name(dumps), found_by_name(lambda x: x)
    (True, False)
    """
    found = sys.modules.get(getattr(obj, "__module__", None) or "")
    for part in getattr(obj, "__qualname__", "<>").split("."):
        found = getattr(found, part, None)
    return found is obj


def track_unnamed_classes(func) -> None:
    """Give each class that ``func``'s code reads (its own, and that of the functions of
    its module it calls) and that cannot travel by name (made inside a function:
    ``make.<locals>.Record``) cloudpickle's tracking id, before a pool forks for its run.
    A worker holding the class by fork then sends it by value under that id, and the
    caller's unpickling finds its own class: results and exceptions of such classes came
    back as new classes of the same name (``isinstance`` False, ``except`` missed)."""
    track = getattr(getattr(cloudpickle, "cloudpickle", None), "_get_or_create_tracker_id", None)
    inner = getattr(func, "func", func)  # a StarCall or functools.partial
    glb = getattr(inner, "__globals__", None)
    if track is None or not isinstance(glb, dict):
        return
    todo, seen = [inner.__code__], set()
    while todo:
        code = todo.pop()
        if code in seen:
            continue
        seen.add(code)
        todo += [c for c in code.co_consts if isinstance(c, types.CodeType)]
        for value in (glb[name] for name in code.co_names if name in glb):
            if isinstance(value, type) and not found_by_name(value):
                track(value)
            elif isinstance(value, types.FunctionType) and value.__globals__ is glb:
                todo.append(value.__code__)



def hold_in_main(func) -> None:
    """In a worker, after ``func`` came by value: the caller's ``__main__`` classes and
    functions it reaches (and itself), put in this process's ``__main__`` under their names.
    Reached: through the globals its code names, its defaults and closure, and the small
    containers among those (hunt 17: a class in a dict global, a default ``cls=Point``).
    stdlib ``pickle`` sends them by name: in an item, ``pickle.dumps(Point(x))`` raised
    "it's not the same object as __main__.Point" on a pool forked before the call (whose
    ``__main__`` holds the caller's older objects) and "attribute lookup Point on __main__
    failed" from the forkserver's (hunt 15); so did an item's own ``ProcessPoolExecutor``."""
    main = sys.modules.get("__main__")
    if main is None:
        return
    inner = getattr(func, "func", func)  # a StarCall or functools.partial
    todo, seen = [inner if isinstance(inner, (type, types.FunctionType)) else type(inner)], set()
    while todo:
        value = todo.pop()
        if id(value) in seen:
            continue
        seen.add(id(value))
        if isinstance(value, (type, types.FunctionType)) and getattr(value, "__module__", None) == "__main__":
            name = getattr(value, "__qualname__", "")
            if name.isidentifier():  # top level: not "<lambda>", not "make.<locals>.Record"
                setattr(main, name, value)
        glb = getattr(value, "__globals__", None)
        if isinstance(value, types.FunctionType) and isinstance(glb, dict) and glb.get("__name__") == "__main__":
            todo += [glb[key] for key in _names_in(value.__code__) if key in glb]
            todo += [*(value.__defaults__ or ()), *(value.__kwdefaults__ or {}).values(),
                     *(cell.cell_contents for cell in value.__closure__ or () if _filled(cell))]
        elif isinstance(value, (dict, list, tuple, set, frozenset)) and len(value) <= _CONTAINER_ITEMS:
            todo += list(value.values() if isinstance(value, dict) else value)  # {"point": Point}, [func]


# A global container is looked into for classes and functions up to this many entries (a
# registry of a few; a table of data is no place for them).
_CONTAINER_ITEMS = 100


def _filled(cell) -> bool:
    try:
        cell.cell_contents
    except ValueError:  # an empty cell
        return False
    return True


def _names_in(code) -> set:
    """The global names ``code`` and the code nested in it read."""
    names, todo = set(), [code]
    while todo:
        current = todo.pop()
        names.update(current.co_names)
        todo += [c for c in current.co_consts if isinstance(c, types.CodeType)]
    return names

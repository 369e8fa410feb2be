"""The iterables of a ``map`` call as ``builtins.map`` reads them: one sized sequence of items.

Items are what ``iter(obj)`` yields — values of a pandas Series, column labels of a
DataFrame, rows of a 2-D array, keys of a dict — never what ``obj[i]`` looks up. Several
iterables are zipped (stopping at the shortest) into argument tuples, applied by a
:class:`StarCall`, so that every engine still runs a function of one item.

>>> as_sequence(range(3)), as_sequence(x for x in "ab")
(range(0, 3), ['a', 'b'])
>>> call, items, _ = prepare(pow, ([2, 3, 4], [2, 2]))
>>> items, [call(args) for args in items]
([(2, 2), (3, 2)], [4, 9])
"""

from __future__ import annotations

import builtins
import operator
import sys

__all__ = ["as_sequence", "is_one_shot", "length_hint", "prepare", "StarCall"]

# Types whose iteration is positional indexing and whose slices are of the same kind.
_POSITIONAL = (list, tuple, range, str, bytes)


def as_sequence(iterable):
    """A sized, sliceable view of ``iterable`` whose ``[i]`` is its i-th item in iteration order.

    list, tuple, range, str, bytes and numpy ndarrays (exactly these types) are used as
    they are; anything else (pandas objects, dicts, sets, subclasses, generators) is read
    once with ``iter`` into a list, as ``builtins.map`` would read it.
    """
    return iterable if _used_as_is(iterable) else builtins.list(iter(iterable))


def _used_as_is(iterable) -> bool:
    """Is ``iterable`` a sequence whose ``[i]`` is its i-th item (:func:`as_sequence`)?"""
    if type(iterable) in _POSITIONAL:
        return True
    numpy = sys.modules.get("numpy")
    return numpy is not None and type(iterable) is numpy.ndarray and iterable.ndim >= 1


def is_one_shot(iterable) -> bool:
    """True for an iterator (a generator, ``iter(x)``, a ``map`` object): reading it uses it up.

    >>> is_one_shot(iter([1])), is_one_shot([1])
    (True, False)
    """
    return hasattr(type(iterable), "__next__")  # not iter(x) is x: iter may hand items over only once


def length_hint(iterables) -> int:
    """The number of items the iterables will give (0 when any of them cannot say).

    >>> length_hint((iter([1, 2, 3]), range(2))), length_hint(((x for x in [1]),))
    (2, 0)
    """
    hints = [operator.length_hint(it, 0) for it in iterables]
    return min(hints) if hints and all(hints) else 0


def prepare(func, iterables: tuple):
    """(the function of one item, the items, what reading them raised or None): ``func``
    itself over one iterable; over several, a :class:`StarCall` of ``func`` over their
    zipped argument tuples. An iterable that raises gives the items read before it: the
    caller maps them first, as ``builtins.map`` would have called ``func`` on each, and an
    exception of ``func`` there is raised before the input's.

    >>> def broken():
    ...     yield 1
    ...     raise OSError("gone")
    >>> prepare(abs, (broken(),))[1:]
    ([1], OSError('gone'))
    """
    if len(iterables) == 1:
        call, source = func, iterables[0]
        if _used_as_is(source):
            # A list as it is now, as Pool().map and Client.map read it: a worker process
            # appends to its own copy, so items func appends are not mapped on any engine
            # (read live, the caller's appends were: 3,001 results of 3,003, run by run).
            return call, source[:] if type(source) is list else source, None
    else:
        call, source = StarCall(func), zip(*iterables)
    items: list = []
    try:
        items.extend(iter(source))  # what was read stays when the input raises
    except Exception as exc:
        return call, items, exc
    return call, items, None


class StarCall:
    """``StarCall(f)(args) == f(*args)``: the one-argument function of a multi-iterable map.

    It travels with its function (cloudpickle pickles ``f`` by value when ``f`` is defined
    in a script) and reads as ``f`` in messages: ``__module__``, ``__qualname__`` and
    ``__name__`` are ``f``'s.

    >>> StarCall(divmod)((7, 2)), StarCall(divmod).__qualname__
    ((3, 1), 'divmod')
    """

    def __init__(self, func):
        self.func = func
        self.__dict__.update(_names(func))

    def __call__(self, args):
        return self.func(*args)

    def __getstate__(self):
        return {"func": self.func}

    def __setstate__(self, state):
        self.__init__(state["func"])

    def __repr__(self) -> str:
        return f"StarCall({self.func!r})"


def _names(func) -> dict:
    """The naming attributes of ``func`` (its type's when it has none)."""
    qualname = getattr(func, "__qualname__", None) or getattr(func, "__name__", None) or type(func).__qualname__
    module = getattr(func, "__module__", None)
    if module is None and not hasattr(func, "__qualname__"):
        module = type(func).__module__
    return {"__module__": module, "__qualname__": qualname, "__name__": getattr(func, "__name__", qualname)}
